"""`claimdesk run` (what `make run` calls) as a user runs it: a real process tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
from claimdesk import SERVICES
from claimdesk.clock import SystemClock
from claimdesk.db import create_pool
from claimdesk.embedded import free_port, port_open
from claimdesk.eventstore import EventStore

from tests.support import case_reported

pytestmark = pytest.mark.slow


def start(data_dir: Path, ports: dict[str, int]) -> tuple[subprocess.Popen[str], list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMDESK_")}
    env.update({f"CLAIMDESK_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    env["CLAIMDESK_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "claimdesk.cli", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 20
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        chunk = proc.stdout.readline()
        if chunk:
            lines.append(chunk.rstrip())
            if "Ctrl-C stops everything" in chunk:
                return proc, lines
        elif proc.poll() is not None:
            break
        else:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("not ready within 20 s:\n" + "\n".join(lines))


def stop(proc: subprocess.Popen[str], ports: dict[str, int]) -> list[str]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    for port in ports.values():
        assert not port_open("127.0.0.1", port), f"port {port} still open after stop"
    return out.splitlines()


async def test_make_run_starts_everything_and_keeps_data(tmp_path: Path) -> None:
    ports = {name: free_port() for name in [*SERVICES, "kafka"]}
    proc, lines = start(tmp_path / "data", ports)
    try:
        text = "\n".join(lines)
        for name in SERVICES:
            assert f"http://127.0.0.1:{ports[name]}" in text
            r = httpx.get(f"http://127.0.0.1:{ports[name]}/readyz", timeout=5)
            assert r.status_code == 200, r.text
    finally:
        out = stop(proc, ports)
    assert "stopped." in out

    # Write an event straight into the embedded database, then restart: the data is still
    # there and the fresh in-memory broker is refilled from the store.
    from claimdesk.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(tmp_path / "data" / "pg")
    url = pg.start()
    try:
        pool = await create_pool(url, "intake")
        async with pool.acquire() as conn:
            await EventStore("intake", SystemClock(), lambda c: f"claimdesk.{c}").append(
                conn, "case-kept", [case_reported("case-kept")], 0
            )
        await pool.close()
    finally:
        pg.stop()

    proc, lines = start(tmp_path / "data", ports)
    try:
        assert any("refilled with" in line for line in lines), lines
        conn = await asyncpg.connect(url)
        try:
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM intake.events WHERE stream_id = 'case-kept'"
                )
                == 1
            )
        finally:
            await conn.close()
    finally:
        stop(proc, ports)
