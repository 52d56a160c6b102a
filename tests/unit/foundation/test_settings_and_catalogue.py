"""Settings fail with one clear line; the event catalogue document is current."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from claimdesk.catalogue import render_markdown
from claimdesk.settings import Settings, describe_error
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CLAIMDESK_INTAKE_PORT": "eighty"}, "CLAIMDESK_INTAKE_PORT"),
        ({"CLAIMDESK_KAFKA_PARTITIONS": "0"}, "CLAIMDESK_KAFKA_PARTITIONS"),
        ({"CLAIMDESK_ENVIRONMENT": "staging"}, "CLAIMDESK_ENVIRONMENT"),
    ],
)
def test_bad_setting_gives_one_line_and_nonzero_exit(env: dict[str, str], named: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "claimdesk.cli", "serve", "intake"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(f"claimdesk: invalid setting {named}:"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_production_refuses_weak_or_missing_secrets() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(environment="prod", admin_token="changeme", token_secret="x" * 40)
    assert describe_error(info.value) == (
        "invalid settings: CLAIMDESK_ADMIN_TOKEN must be set to a strong secret in production"
    )
    ok = Settings(environment="prod", admin_token="a" * 32, token_secret="b" * 32)
    assert ok.environment == "prod"


def test_event_catalogue_document_is_current() -> None:
    doc = ROOT / "docs" / "events.md"
    assert doc.exists(), "run `make docs`"
    assert doc.read_text() == render_markdown(), "docs/events.md is stale: run `make docs`"


def test_sweep_stops_a_server_whose_owner_died(tmp_path: Path) -> None:
    from claimdesk.embedded import OWNER_FILE, EmbeddedPostgres, port_open  # noqa: F401

    dead = subprocess.Popen(["true"])
    dead.wait()
    live_dir, stale_dir = tmp_path / "claimdesk-live", tmp_path / "claimdesk-stale"
    stale = EmbeddedPostgres(stale_dir / "pg")
    stale.start()
    pid = int((stale_dir / "pg" / "postmaster.pid").read_text().splitlines()[0])
    (stale_dir / OWNER_FILE).write_text(str(dead.pid))  # as if its test run had been killed
    stale._server = None
    live_dir.mkdir()
    (live_dir / OWNER_FILE).write_text(str(os.getpid()))
    assert EmbeddedPostgres.sweep_stale(tmp_path) == [stale_dir]
    assert not stale_dir.exists()
    assert live_dir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
