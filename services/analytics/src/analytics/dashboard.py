"""Ops dashboard at GET /: live feed, today's cases, waiting jobs, complaint deadlines, dispatch
latency chart, surveyor ranking. Pushed over server-sent events whenever the fold commits
(Postgres NOTIFY from the fold's transaction, so every replica's page updates)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from importlib.resources import files
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import asyncpg
from claimdesk.auth import (
    REVALIDATE_S,
    STAFF_ROLES,
    AnyStaff,
    Principal,
    principal_for_token,
    refusal,
    require_roles,
    revoked_sse,
)
from claimdesk.errors import Forbidden, Unauthorized
from claimdesk.service import Runtime
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sse_starlette.sse import EventSourceResponse

from analytics import queries
from analytics.consumers import notify_channel
from analytics.settings import AnalyticsSettings

router = APIRouter()


class Broadcast:
    """A version counter and an event replaced on every change."""

    def __init__(self) -> None:
        self.version = 0
        self._changed = asyncio.Event()

    def bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, seen: int, timeout: float) -> int:
        if self.version == seen:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
        return self.version


def broadcast(runtime: Runtime) -> Broadcast:
    b = runtime.extras.get("broadcast")
    if b is None:
        b = runtime.extras["broadcast"] = Broadcast()
    assert isinstance(b, Broadcast)
    return b


def background_jobs(runtime: Runtime) -> Sequence[Callable[[], Awaitable[None]]]:
    async def listen() -> None:
        """Hold a LISTEN connection; reconnect when Postgres goes away."""
        b = broadcast(runtime)
        while True:
            try:
                conn = await asyncpg.connect(runtime.settings.database_url)
                try:
                    await conn.add_listener(notify_channel(runtime), lambda *_: b.bump())
                    while not conn.is_closed():  # noqa: ASYNC110 - keep the listener alive
                        await asyncio.sleep(1.0)
                finally:
                    with contextlib.suppress(Exception):
                        await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(1.0)

    return [listen]


def _tz(runtime: Runtime) -> ZoneInfo:
    s = runtime.extras.get("analytics_settings") or AnalyticsSettings()
    return ZoneInfo(s.timezone)


async def snapshot(runtime: Runtime) -> dict[str, Any]:
    tz = _tz(runtime)
    now = runtime.clock.now()
    today = now.astimezone(tz).date()
    async with runtime.pool.acquire() as conn:
        feed = await conn.fetch(
            """SELECT event_type, coalesce(case_id, subject) AS subject, actor, producer,
                      occurred_at, recorded_at
               FROM case_events ORDER BY recorded_at DESC, event_id LIMIT 50"""
        )
        per_insurer = await conn.fetch(
            """SELECT coalesce(insurer_code, '') AS insurer_code, count(*)::int AS cases,
                      count(cancelled_at)::int AS cancelled
               FROM cases WHERE report_day = $1 GROUP BY 1 ORDER BY 2 DESC, 1""",
            today,
        )
        unassigned = await conn.fetch(
            """SELECT c.case_id, c.insurer_code, c.reported_at,
                      (SELECT min(queued_at) FROM jobs j WHERE j.case_id = c.case_id) AS queued_at
               FROM cases c
               WHERE c.cancelled_at IS NULL AND c.reported_at > $1::timestamptz - interval '3 days'
                 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.case_id = c.case_id
                                 AND j.surveyor_id IS NOT NULL)
               ORDER BY c.reported_at LIMIT 20""",
            now,
        )
        unacked = await conn.fetch(
            """SELECT job_id, case_id, surveyor_id, assigned_at, ack_due_at FROM jobs
               WHERE surveyor_id IS NOT NULL AND NOT coalesce(current_acked, false)
                 AND arrived_at IS NULL AND closed_at IS NULL AND cancelled_at IS NULL
                 AND assigned_at > $1::timestamptz - interval '3 days'
               ORDER BY ack_due_at NULLS LAST LIMIT 20""",
            now,
        )
        deadlines = await conn.fetch(
            """SELECT complaint_id, case_id, category, severity, answer_due_at,
                      (SELECT max(level) FROM complaint_escalations e
                       WHERE e.complaint_id = c.complaint_id) AS level
               FROM complaints c
               WHERE resolved_at IS NULL AND closed_at IS NULL AND received_at IS NOT NULL
                 AND coalesce(valid, true) AND answer_due_at < $1::timestamptz + interval '2 hours'
               ORDER BY answer_due_at LIMIT 20""",
            now,
        )
        latency = await conn.fetch(
            """SELECT extract(hour FROM c.reported_at AT TIME ZONE $2)::int AS hour,
                      count(*)::int AS jobs,
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM
                          j.first_assigned_at - c.reported_at)) AS p50,
                      percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM
                          j.first_assigned_at - c.reported_at)) AS p90
               FROM jobs j JOIN cases c USING (case_id)
               WHERE c.report_day = $1 AND j.first_assigned_at IS NOT NULL
               GROUP BY 1 ORDER BY 1""",
            today,
            str(tz),
        )
        ranking = await queries.surveyor_scores(conn, None, None)

    def iso(v: Any) -> Any:
        return v.isoformat() if isinstance(v, datetime) else v

    return {
        "now": now.isoformat(),
        "today": today.isoformat(),
        "feed": [{k: iso(v) for k, v in dict(r).items()} for r in feed],
        "cases_today": [dict(r) for r in per_insurer],
        "waiting_assignment": [{k: iso(v) for k, v in dict(r).items()} for r in unassigned],
        "waiting_acknowledgement": [
            {
                **{k: iso(v) for k, v in dict(r).items()},
                "overdue": r["ack_due_at"] is not None and r["ack_due_at"] < now,
            }
            for r in unacked
        ],
        "complaint_deadlines": [
            {
                **{k: iso(v) for k, v in dict(r).items()},
                "past": r["answer_due_at"] < now,
                "minutes_left": round((r["answer_due_at"] - now) / timedelta(minutes=1)),
            }
            for r in deadlines
        ],
        "latency_by_hour": [
            {
                "hour": r["hour"],
                "jobs": r["jobs"],
                "p50_min": round(r["p50"] / 60, 1),
                "p90_min": round(r["p90"] / 60, 1),
            }
            for r in latency
        ],
        "ranking": [
            {k: s[k] for k in ("rank", "surveyor_id", "name", "team", "score", "completed")}
            for s in ranking[:10]
        ],
        "rebuild": runtime.extras.get("rebuild"),
    }


async def shared_snapshot(runtime: Runtime, version: int) -> str:
    """One snapshot per change for every connected page (not one query set per client);
    refreshed at least every 5 s for the clock-driven parts (deadlines, today)."""
    lock = runtime.extras.setdefault("snapshot_lock", asyncio.Lock())
    async with lock:
        cached = runtime.extras.get("snapshot_cache")
        if cached and cached[0] == version and time.monotonic() - cached[1] < 5.0:
            return str(cached[2])
        data = json.dumps(await snapshot(runtime))
        runtime.extras["snapshot_cache"] = (version, time.monotonic(), data)
        return data


def token_principal(
    request: Request, token: str | None, roles: Sequence[str] = STAFF_ROLES
) -> Principal:
    """EventSource and printable pages send no headers: accept `?token=` or the bearer header."""
    if token is None:
        return require_roles(*roles)(request)
    if not token.strip():
        raise Unauthorized("empty token")
    principal = principal_for_token(request.app.state.runtime, token)
    if principal.role not in (*roles, "admin"):
        raise Forbidden(f"role {principal.role} may not do this; allowed: {sorted(roles)}")
    return principal


@router.get(
    "/",
    tags=["dashboard"],
    summary="Ops dashboard page (运营看板)",
    description="Plain HTML and a little JavaScript; asks for a staff token once (kept in the "
    "browser) or takes `?token=`; updates itself over server-sent events.",
    response_class=HTMLResponse,
)
async def page() -> HTMLResponse:
    html = files("analytics").joinpath("static/dashboard.html").read_text(encoding="utf-8")
    return HTMLResponse(html)


@router.get(
    "/v1/dashboard/snapshot",
    tags=["dashboard"],
    summary="What the dashboard shows, as JSON",
    description="The same snapshot the page receives over server-sent events (staff token).",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "today": "2026-11-26",
                        "cases_today": [{"insurer_code": "PICC", "cases": 12, "cancelled": 0}],
                        "waiting_assignment": [],
                        "waiting_acknowledgement": [],
                        "complaint_deadlines": [],
                        "latency_by_hour": [{"hour": 9, "jobs": 4, "p50_min": 3.5, "p90_min": 8}],
                        "ranking": [{"rank": 1, "surveyor_id": "S-007", "score": 92.5}],
                        "feed": [],
                    }
                }
            }
        }
    },
)
async def dashboard_snapshot(request: Request, _: AnyStaff) -> dict[str, Any]:
    return await snapshot(request.app.state.runtime)


@router.get(
    "/v1/dashboard/stream",
    tags=["dashboard"],
    summary="Dashboard updates as server-sent events",
    description="Sends `snapshot` events: one at once, then one after every committed fold "
    "(debounced 100 ms) and at least every 15 s. Staff token as bearer or `?token=`; once it "
    "is revoked, one `revoked` event {reason} ends the stream.",
    responses={
        200: {"content": {"text/event-stream": {"example": "event: snapshot\ndata: {...}\n\n"}}}
    },
)
async def dashboard_stream(
    request: Request,
    token: Annotated[
        str | None, Query(description="staff token (EventSource sends no headers)")
    ] = None,
) -> EventSourceResponse:
    principal = token_principal(request, token)
    runtime: Runtime = request.app.state.runtime
    b = broadcast(runtime)

    async def events() -> AsyncIterator[dict[str, str]]:
        seen = b.version
        yield {"event": "snapshot", "data": await shared_snapshot(runtime, seen)}
        sent = time.monotonic()
        while True:
            now = await b.wait(seen, REVALIDATE_S)
            if (refused := refusal(runtime, principal)) is not None:
                yield revoked_sse(refused)  # the token was revoked meanwhile: the stream ends
                return
            if now == seen and time.monotonic() - sent < 15.0:
                continue
            await asyncio.sleep(0.1)  # debounce bursts of commits
            seen = b.version
            yield {"event": "snapshot", "data": await shared_snapshot(runtime, seen)}
            sent = time.monotonic()

    return EventSourceResponse(events(), ping=10)
