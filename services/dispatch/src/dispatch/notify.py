"""Push channels: the SMS gateway interface, signed team webhooks, and the live-feed hub.

The feed hub wakes SSE streams after commit without polling: every feed row is written with
`pg_notify(<schema>_feed, surveyor_id)` in the same transaction, Postgres delivers the
notification only once that transaction commits, and one LISTEN connection per process fans
it out to the streams of that surveyor, which then read their new rows from `job_feed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, TextIO

import asyncpg

log = logging.getLogger(__name__)


class SmsGateway(Protocol):
    """Sends one text message; returns a delivery detail, raises on failure."""

    async def send(self, to: str, text: str) -> str: ...


class LogSmsGateway:
    """The default gateway: writes each text to a log file (and keeps the last ones in memory)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.sent: deque[tuple[str, str]] = deque(maxlen=5000)
        self._file: TextIO | None = None  # opened on the first text, kept open (appending)

    async def send(self, to: str, text: str) -> str:
        self.sent.append((to, text))
        line = f"SMS to {to}: {text}"
        log.info(line)
        if self.path is not None:
            if self._file is None or self._file.closed:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(line.replace("\n", " ") + "\n")
            self._file.flush()
        return f"logged to {self.path}" if self.path else "logged"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def job_sms_text(job: Mapping[str, Any]) -> str:
    """The surveyor's text, like the dispatcher's SMS in the manual: plate first."""
    contact = " ".join(p for p in (job.get("contact_name"), job.get("contact_phone")) if p)
    parts = [
        "【ClaimDesk调度】新查勘任务",
        f"车牌:{job.get('plate') or '无'}",
        f"地点:{job['loss_address']}",
        f"委托:{job['insurer_code']}",
        f"联系人:{contact or '见案件'}",
        f"案件:{job['case_id']}",
    ]
    if job.get("priority") == "urgent":
        parts.insert(1, "[加急]")
    parts.append("请在App点'收到'确认 (please acknowledge in the app)")
    return " ".join(parts)


def customer_sms_text(job: Mapping[str, Any], surveyor: Mapping[str, Any]) -> str:
    return (
        f"【ClaimDesk】您好,查勘员{surveyor['name']}({surveyor['phone']})已出发前往"
        f"{job['loss_address']},请保持电话畅通。车牌:{job.get('plate') or '无'}。"
        " Your surveyor is on the way."
    )


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over `<timestamp>.<body>` (header X-ClaimDesk-Signature)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def feed_channel(schema: str) -> str:
    return f"{schema}_feed"[:63]


class FeedHub:
    """In-process fan-out of 'surveyor X has new feed rows' to that surveyor's open streams."""

    def __init__(self) -> None:
        self._subs: dict[str, set[asyncio.Event]] = {}
        self.listening = False
        self.closing = asyncio.Event()

    def subscribe(self, surveyor_id: str) -> asyncio.Event:
        ev = asyncio.Event()
        self._subs.setdefault(surveyor_id, set()).add(ev)
        return ev

    def unsubscribe(self, surveyor_id: str, ev: asyncio.Event) -> None:
        subs = self._subs.get(surveyor_id)
        if subs is not None:
            subs.discard(ev)
            if not subs:
                self._subs.pop(surveyor_id, None)

    def wake(self, surveyor_id: str) -> None:
        for ev in self._subs.get(surveyor_id, ()):
            ev.set()

    def wake_all(self) -> None:
        for subs in self._subs.values():
            for ev in subs:
                ev.set()

    def subscribers(self, surveyor_id: str) -> int:
        return len(self._subs.get(surveyor_id, ()))

    async def listen(self, database_url: str, schema: str) -> None:
        """Hold one LISTEN connection; reconnect and wake everyone (catch-up) when it drops."""
        channel = feed_channel(schema)

        def on_notify(_c: object, _pid: int, _ch: str, payload: str) -> None:
            self.wake(payload)

        backoff = 0.2
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(database_url)
                await conn.add_listener(channel, on_notify)
                self.listening = True
                backoff = 0.2
                self.wake_all()  # anything committed while we were not listening
                while not conn.is_closed():  # noqa: ASYNC110 - asyncpg has no close event
                    await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("feed listener failed", extra={"cd_error": repr(exc)})
            finally:
                self.listening = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), timeout=2)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
