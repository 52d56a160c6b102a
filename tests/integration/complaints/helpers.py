"""Shared helpers for the complaints tests: tokens, second-scale policies, a manual clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from claimdesk.auth import issue_token
from claimdesk.clock import ManualClock
from claimdesk.events.base import Event
from claimdesk.events.dispatch import SurveyCompleted
from claimdesk.eventstore import ANY, EventStore
from claimdesk.kafka import ensure_topics, make_producer
from claimdesk.outbox import OutboxRelay
from claimdesk.settings import Settings
from claimdesk.testing.plugin import TEST_SECRET, RunningService, eventually
from complaints.domain import stream_id

from tests.support import store_in_schema

MONDAY_10_SHANGHAI = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)


def clock() -> ManualClock:
    return ManualClock(MONDAY_10_SHANGHAI)


def auth(role: str = "agent", number: str = "A001") -> dict[str, str]:
    token, _ = issue_token(
        TEST_SECRET,
        subject=number,
        role=role,  # type: ignore[arg-type]
        now=datetime.now(UTC),
        ttl=timedelta(hours=2),
        name=number,
        number=number,
    )
    return {"Authorization": f"Bearer {token}"}


AGENT = auth()
LEAD = auth("supervisor", "S001")


def fast_policy(**over: Any) -> dict[str, Any]:
    """Second-scale clocks on wall time: answer in 10 s (warn 4 s before), resolve in 60 s,
    regulatory 120 s (extendable to 240 s), re-escalate every 5 s after a breach."""
    body: dict[str, Any] = {
        "description": "test policy",
        "clocks": {
            "first_response": {"duration": {"seconds": 10}, "warn_before": {"seconds": 4}},
            "resolution": {"duration": "60s", "warn_before": "10s"},
            "regulatory": {"duration": 120, "warn_before": 20, "max_extended": 240},
        },
        "re_escalate_after": {"seconds": 5},
    }
    body.update(over)
    return body


def complaint_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "case_id": "C-1",
        "category": "delay",
        "severity": "high",
        "channel": "phone",
        "caller_name": "王先生",
        "caller_phone": "13800138000",
        "matter": "查勘员迟到三个小时，电话也不接",
        "surveyor_id": "S017",
    }
    body.update(over)
    return body


async def put_policy(client: httpx.AsyncClient, name: str, body: dict[str, Any]) -> int:
    r = await client.put(f"/v1/sla-policies/{name}", json=body, headers=LEAD)
    assert r.status_code == 200, r.text
    return int(r.json()["version"])


async def file(client: httpx.AsyncClient, **over: Any) -> str:
    r = await client.post("/v1/complaints", json=complaint_body(**over), headers=AGENT)
    assert r.status_code == 201, r.text
    return str(r.json()["complaint_id"])


async def get(client: httpx.AsyncClient, complaint_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/complaints/{complaint_id}", headers=AGENT)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def events_of(view: dict[str, Any], event_type: str) -> list[dict[str, Any]]:
    return [h for h in view["history"] if h["event_type"] == event_type]


def clock_of(view: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in view["clocks"] if c["clock"] == name)


async def wait_for_events(
    client: httpx.AsyncClient, complaint_id: str, event_type: str, n: int, timeout: float = 10
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        v = await get(client, complaint_id)
        return v if len(events_of(v, event_type)) >= n else None

    result: dict[str, Any] = await eventually(check, timeout=timeout, interval=0.1)
    return result


class Producer:
    """Another service's event store + outbox relay, publishing on its real topic."""

    def __init__(self, store: EventStore, pool: Any) -> None:
        self.store = store
        self.pool = pool

    async def emit(self, stream: str, *events: Event) -> None:
        async with self.pool.acquire() as conn:
            await self.store.append(conn, stream, list(events), ANY)


@asynccontextmanager
async def producing(settings: Settings, service: str) -> AsyncIterator[Producer]:
    await ensure_topics(settings)
    async with store_in_schema(settings, service) as (pool, store):
        relay = OutboxRelay(
            pool,
            lambda: make_producer(settings, f"t-{service}"),
            topic_for=settings.topic,
            service=service,
            lock_key=f"relay:{settings.schema_name(service)}",
            poll_s=0.01,
        )
        task = asyncio.create_task(relay.run())
        try:
            yield Producer(store, pool)
        finally:
            task.cancel()


async def case_known(svc: Any, case_id: str) -> None:
    async def known() -> bool:
        async with svc.runtime.pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT 1 FROM cases WHERE case_id = $1", case_id))

    await eventually(known, timeout=15)


def survey(case_id: str, job: str | None = None, surveyor: str = "S017") -> SurveyCompleted:
    return SurveyCompleted(job_id=job or f"J-{case_id}", case_id=case_id, surveyor_id=surveyor)


async def assert_keyed_by_case(svc: RunningService, complaint_id: str, case_id: str) -> None:
    """Every event of the complaint carries one partition key, its case's: one partition holds
    them in order, and analytics' fold members never fold the complaint's row at once (the
    invariant docs/analytics.md, "Scaling the fold", rests on)."""
    async with svc.runtime.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT DISTINCT key FROM events WHERE stream_id = $1", stream_id(complaint_id)
        )
    assert [r["key"] for r in rows] == [case_id]
