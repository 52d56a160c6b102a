"""Insurer webhooks: case updates from dispatch are queued in a table by the consumer (in its
transaction) and delivered by a background worker, signed, retried with backoff, logged.

Per webhook and case, deliveries go out in the order the updates happened: a later one waits
while an earlier one is pending (retrying), until it is delivered or has failed for good.

Signature: `X-ClaimDesk-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>` with
`X-ClaimDesk-Timestamp: <unix seconds>`; see docs/intake.md for the receiver's recipe.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
from claimdesk.auth import Principal
from claimdesk.errors import NotFound
from claimdesk.events.base import Envelope
from claimdesk.events.dispatch import (
    CaseClosed,
    SurveyCompleted,
    SurveyorArrived,
    SurveyorAssigned,
    SurveyorReassigned,
)
from claimdesk.service import Runtime
from fastapi.exceptions import RequestValidationError

from intake.domain import advance_status
from intake.handlers import isettings
from intake.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_LATENCY

log = logging.getLogger(__name__)

STEP = {
    SurveyorAssigned.event_type: "assigned",
    SurveyorReassigned.event_type: "assigned",
    SurveyorArrived.event_type: "surveyor_arrived",
    SurveyCompleted.event_type: "survey_completed",
    CaseClosed.event_type: "closed",
}
CONSUMED = frozenset(STEP)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float,
    tolerance_s: int = 300,
) -> bool:
    """What a receiver does (also used by our tests)."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


async def on_dispatch_event(rt: Runtime, conn: asyncpg.Connection, env: Envelope) -> None:
    """Case status follows dispatch; subscribed insurers get a delivery queued."""
    step = STEP.get(env.event_type)
    payload: Any = env.payload
    case_id = getattr(payload, "case_id", None)
    if step is None or case_id is None:
        return
    row = await conn.fetchrow(
        "SELECT insurer_code, report_no, status FROM cases WHERE case_id = $1 FOR UPDATE", case_id
    )
    if row is None:
        return  # not a case of ours (or of this deployment)
    surveyor = getattr(payload, "surveyor_id", None) or getattr(payload, "to_surveyor_id", None)
    new = advance_status(row["status"], step)
    patch: dict[str, Any] = {}
    if surveyor and step == "assigned":
        patch["surveyor_id"] = surveyor
    if new is not None:
        patch["status"] = new
    if patch:
        await conn.execute(
            "UPDATE cases SET status = coalesce($2, status), data = data || $3::jsonb, "
            "updated_at = $4 WHERE case_id = $1",
            case_id,
            new,
            patch,
            rt.clock.now(),
        )
    event = f"case.{step}"
    body = json.dumps(
        {
            "event": event,
            "event_id": str(env.event_id),
            "occurred_at": env.occurred_at.isoformat(),
            "case_id": case_id,
            "report_no": row["report_no"],
            "insurer_code": row["insurer_code"],
            "status": new or row["status"],
            "surveyor_id": surveyor,
            "detail": {
                k: v
                for k, v in payload.model_dump(mode="json").items()
                if k in ("job_id", "attempt", "reason", "loss_estimate", "photo_count", "notes")
            },
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    await conn.execute(
        """INSERT INTO webhook_deliveries (delivery_id, webhook_id, event_id, event, case_id, body,
                                           next_attempt_at, created_at)
           SELECT 'dlv_' || substr(md5(random()::text || w.webhook_id), 1, 14), w.webhook_id,
                  $1, $2, $3, $4, $5, $5
           FROM webhooks w
           WHERE w.insurer_code = $6 AND w.deleted_at IS NULL AND $2 = ANY (w.events)
           ON CONFLICT (webhook_id, event_id) DO NOTHING""",
        env.event_id,
        event,
        case_id,
        body,
        rt.clock.now(),
        row["insurer_code"],
    )


_CLAIM = """
UPDATE webhook_deliveries d SET next_attempt_at = $1::timestamptz + $3::interval
FROM webhooks w
WHERE d.delivery_id IN (
    SELECT delivery_id FROM webhook_deliveries p
    WHERE p.status = 'pending' AND p.next_attempt_at <= $1
      AND NOT EXISTS (  -- per webhook and case, in order: an earlier one still pending waits
          SELECT 1 FROM webhook_deliveries e
          WHERE e.webhook_id = p.webhook_id AND e.case_id = p.case_id
            AND e.status = 'pending' AND e.seq < p.seq)
    ORDER BY p.next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
  AND w.webhook_id = d.webhook_id AND w.deleted_at IS NULL
RETURNING d.delivery_id, d.event, d.body, d.attempts, w.url, w.secret
"""


async def deliver_once(rt: Runtime, client: httpx.AsyncClient, r: asyncpg.Record) -> None:
    s = isettings(rt)
    attempt = r["attempts"] + 1
    ts = int(rt.clock.now().timestamp())
    body = r["body"].encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "ClaimDesk-Webhooks/1",
        "X-ClaimDesk-Event": r["event"],
        "X-ClaimDesk-Delivery": r["delivery_id"],
        "X-ClaimDesk-Attempt": str(attempt),
        "X-ClaimDesk-Timestamp": str(ts),
        "X-ClaimDesk-Signature": sign(r["secret"], ts, body),
    }
    started = time.perf_counter()
    code: int | None = None
    error: str | None = None
    try:
        resp = await client.post(r["url"], content=body, headers=headers)
        code = resp.status_code
        if not 200 <= code < 300:
            error = f"HTTP {code}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
    elapsed = time.perf_counter() - started
    WEBHOOK_LATENCY.observe(elapsed)
    ms = int(elapsed * 1000)
    now = rt.clock.now()
    if error is None:
        status, next_at = "delivered", None
    elif attempt >= s.webhook_max_attempts:
        status, next_at = "failed", None
    else:
        delay = min(s.webhook_backoff_s * 2 ** (attempt - 1), s.webhook_backoff_max_s)
        status, next_at = "pending", now + timedelta(seconds=delay)
    WEBHOOK_ATTEMPTS.labels("retry" if status == "pending" else status).inc()
    async with rt.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, error, "
            "duration_ms) VALUES ($1, $2, $3, $4, $5, $6)",
            r["delivery_id"],
            attempt,
            now,
            code,
            error,
            ms,
        )
        await conn.execute(
            "UPDATE webhook_deliveries SET attempts = $2, status = $3, next_attempt_at = $4, "
            "last_status_code = $5, last_error = $6, delivered_at = $7 WHERE delivery_id = $1",
            r["delivery_id"],
            attempt,
            status,
            next_at,
            code,
            error,
            now if status == "delivered" else None,
        )


async def run_worker(rt: Runtime) -> None:
    """Deliver due webhooks until cancelled; never touches the request path."""
    s = isettings(rt)
    lease = timedelta(seconds=s.webhook_timeout_s + 10)
    async with httpx.AsyncClient(timeout=s.webhook_timeout_s, follow_redirects=False) as client:
        while True:
            try:
                rows = await rt.pool.fetch(_CLAIM, rt.clock.now(), s.webhook_concurrency, lease)
                if rows:
                    await asyncio.gather(*(deliver_once(rt, client, r) for r in rows))
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhook worker error", extra={"cd_error": repr(exc)})
            await asyncio.sleep(s.webhook_poll_s)


# -- subscriptions ------------------------------------------------------------------------------


def private_host(url: str) -> bool:
    """Whether the URL names a loopback, private, link-local or unspecified address."""
    host = (urlsplit(url).hostname or "").lower()
    if host in ("localhost", "") or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_unspecified


async def create_webhook(
    rt: Runtime, who: Principal, url: str, events: list[str]
) -> dict[str, Any]:
    allow = isettings(rt).webhook_allow_private
    if allow is None:
        allow = rt.settings.environment != "prod"
    if not allow and private_host(url):
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "url"),
                    "msg": "must be a public address (private and loopback hosts are refused)",
                    "type": "value_error",
                }
            ]
        )
    wid = f"wh_{secrets.token_hex(6)}"
    secret = f"whsec_{secrets.token_urlsafe(32)}"
    now = rt.clock.now()
    await rt.pool.execute(
        "INSERT INTO webhooks (webhook_id, insurer_code, url, events, secret, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        wid,
        who.insurer_code,
        url,
        sorted(set(events)),
        secret,
        now,
    )
    return {
        "webhook_id": wid,
        "url": url,
        "events": sorted(set(events)),
        "created_at": now,
        "secret": secret,
    }


async def _own(conn: asyncpg.Connection, who: Principal, wid: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM webhooks WHERE webhook_id = $1 AND deleted_at IS NULL", wid
    )
    if row is None or (who.role == "insurer" and row["insurer_code"] != who.insurer_code):
        raise NotFound(f"no webhook {wid}")
    return row


async def list_webhooks(rt: Runtime, who: Principal) -> list[dict[str, Any]]:
    rows = await rt.pool.fetch(
        "SELECT webhook_id, url, events, created_at FROM webhooks WHERE insurer_code = $1 "
        "AND deleted_at IS NULL ORDER BY created_at",
        who.insurer_code,
    )
    return [dict(r) for r in rows]


async def delete_webhook(rt: Runtime, who: Principal, wid: str) -> None:
    async with rt.pool.acquire() as conn:
        await _own(conn, who, wid)
        async with conn.transaction():
            await conn.execute(
                "UPDATE webhooks SET deleted_at = $2 WHERE webhook_id = $1", wid, rt.clock.now()
            )
            await conn.execute(
                "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, "
                "last_error = 'webhook deleted' WHERE webhook_id = $1 AND status = 'pending'",
                wid,
            )


async def deliveries(rt: Runtime, who: Principal, wid: str, limit: int) -> list[dict[str, Any]]:
    async with rt.pool.acquire() as conn:
        await _own(conn, who, wid)
        rows = await conn.fetch(
            "SELECT * FROM webhook_deliveries WHERE webhook_id = $1 "
            "ORDER BY created_at DESC, delivery_id LIMIT $2",
            wid,
            limit,
        )
        attempts = await conn.fetch(
            "SELECT delivery_id, attempt, at, status_code, error, duration_ms "
            "FROM webhook_attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt",
            [r["delivery_id"] for r in rows],
        )
    logs: dict[str, list[dict[str, Any]]] = {}
    for a in attempts:
        logs.setdefault(a["delivery_id"], []).append(
            {k: a[k] for k in ("attempt", "at", "status_code", "error", "duration_ms")}
        )
    return [{**dict(r), "log": logs.get(r["delivery_id"], [])} for r in rows]
