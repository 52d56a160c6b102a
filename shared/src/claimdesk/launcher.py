"""`make run`: embedded Postgres and broker (unless external ones are set), the four services,
their URLs, and a clean stop on Ctrl-C or SIGTERM (children stopped, ports freed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import httpx

from claimdesk import SERVICES
from claimdesk.embedded import EmbeddedPostgres, TansuBroker, port_open
from claimdesk.settings import Settings

READY_TIMEOUT_S = 60.0


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def dev_secrets(data_dir: Path) -> dict[str, str]:
    """Secrets for an embedded run, kept in the data dir so tokens survive a restart."""
    path = data_dir / "secrets.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    values = {"token_secret": secrets.token_urlsafe(32), "admin_token": secrets.token_urlsafe(24)}
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return values


class Launcher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.postgres: EmbeddedPostgres | None = None
        self.broker: TansuBroker | None = None
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}

    def start_infrastructure(self) -> None:
        s = self.settings
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        env = dict(os.environ)
        if s.database_url:
            say(f"postgres   external ({_redact(s.database_url)})")
            db_url = s.database_url
        else:
            self.postgres = EmbeddedPostgres(self.data_dir / "pg")
            db_url = self.postgres.start()
            say(f"postgres   embedded, data in {self.data_dir / 'pg'}")
        if s.kafka_bootstrap:
            bootstrap = s.kafka_bootstrap
            say(f"kafka      external ({bootstrap})")
        else:
            self.broker = TansuBroker(s.kafka_port, self.data_dir / "logs" / "broker.log")
            bootstrap = self.broker.start()
            say(f"kafka      embedded Tansu broker at {bootstrap} (log kept in memory)")
        env["CLAIMDESK_DATABASE_URL"] = db_url
        env["CLAIMDESK_KAFKA_BOOTSTRAP"] = bootstrap
        env["CLAIMDESK_DATA_DIR"] = str(self.data_dir)
        if s.token_secret is None or s.admin_token is None:
            generated = dev_secrets(self.data_dir)
            if s.token_secret is None:
                env["CLAIMDESK_TOKEN_SECRET"] = generated["token_secret"]
            if s.admin_token is None:
                env["CLAIMDESK_ADMIN_TOKEN"] = generated["admin_token"]
                say(
                    f"admin      token {generated['admin_token']} (kept in {self.data_dir / 'secrets.json'})"
                )
        self.env = env

    def refill_broker(self) -> None:
        """The embedded broker starts empty: publish the stores' history again."""
        if self.broker is None:
            return
        from claimdesk.cli import republish_all

        settings = Settings(
            database_url=self.env["CLAIMDESK_DATABASE_URL"],
            kafka_bootstrap=self.env["CLAIMDESK_KAFKA_BOOTSTRAP"],
            schema_prefix=self.settings.schema_prefix,
            topic_prefix=self.settings.topic_prefix,
            kafka_partitions=self.settings.kafka_partitions,
        )
        n = asyncio.run(republish_all(settings, list(SERVICES), 0, quiet=True))
        if n:
            say(f"kafka      refilled with {n} stored events")

    def start_services(self) -> None:
        for name in SERVICES:
            port = self.settings.port(name)
            if port_open("127.0.0.1", port):
                raise RuntimeError(
                    f"port {port} for {name} is taken; set CLAIMDESK_{name.upper()}_PORT"
                )
            log = open(self.data_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115
            self.children[name] = subprocess.Popen(
                [sys.executable, "-m", "claimdesk.cli", "serve", name],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        pending = set(SERVICES)
        reasons: dict[str, str] = {}
        with httpx.Client(timeout=2.0) as client:
            while pending and time.monotonic() < deadline:
                for name in sorted(pending):
                    proc = self.children[name]
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"{name} exited with status {proc.returncode}; see {self.data_dir}/logs/{name}.log"
                        )
                    try:
                        r = client.get(f"{self.settings.url(name)}/readyz")
                        if r.status_code == 200:
                            pending.discard(name)
                        else:
                            reasons[name] = "; ".join(r.json().get("reasons", []))
                    except httpx.HTTPError as exc:
                        reasons[name] = repr(exc)
                time.sleep(0.2)
        if pending:
            detail = ", ".join(f"{n}: {reasons.get(n, '?')}" for n in sorted(pending))
            raise RuntimeError(f"not ready after {READY_TIMEOUT_S:.0f} s: {detail}")

    def print_urls(self, started: float) -> None:
        say(f"\nClaimDesk is ready ({time.monotonic() - started:.1f} s):")
        for name in SERVICES:
            url = self.settings.url(name)
            say(f"  {name:<11} {url}   docs {url}/docs")
        say(f"  dashboard   {self.settings.url('analytics')}/")
        for name in SERVICES:  # intake first: it owns the staff the others refer to
            creds = self.data_dir / f"credentials-{name}.txt"
            if creds.exists():
                say("\n" + creds.read_text().rstrip())
        say(f"\nlogs in {self.data_dir / 'logs'}; Ctrl-C stops everything.")

    def watch(self) -> int:
        while True:
            for name, proc in self.children.items():
                if proc.poll() is not None:
                    say(
                        f"{name} stopped unexpectedly (status {proc.returncode}); see {self.data_dir}/logs/{name}.log"
                    )
                    return 1
            time.sleep(0.5)

    def stop(self) -> None:
        for proc in self.children.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.children.values():
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.children.clear()
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()


class _Stop(Exception):
    pass


def _raise_stop(signum: int, _: types.FrameType | None) -> None:
    raise _Stop(signum)


def _redact(url: str) -> str:
    if "@" in url and ":" in url.split("@", maxsplit=1)[0]:
        head, tail = url.split("@", 1)
        return head.rsplit(":", 1)[0] + ":***@" + tail
    return url


def run(settings: Settings) -> int:
    started = time.monotonic()
    launcher = Launcher(settings)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    code = 0
    try:
        launcher.start_infrastructure()
        launcher.refill_broker()
        launcher.start_services()
        launcher.wait_ready()
        launcher.print_urls(started)
        code = launcher.watch()
    except _Stop:
        say("\nstopping…")
    except RuntimeError as exc:
        say(f"claimdesk: {exc}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        launcher.stop()
        say("stopped.")
    return code
