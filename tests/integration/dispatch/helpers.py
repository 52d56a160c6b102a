"""Dispatch test helpers: a stand-in intake that publishes through a real outbox relay."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from claimdesk.events.base import Event
from claimdesk.eventstore import EventStore
from claimdesk.kafka import ensure_topics, make_producer
from claimdesk.outbox import OutboxRelay
from claimdesk.settings import Settings

from tests.support import case_reported, store_in_schema

SHANGHAI = (31.2304, 121.4737)


@dataclass
class FakeIntake:
    """Appends intake events to an intake-schema event store; a real relay publishes them."""

    pool: asyncpg.Pool
    store: EventStore
    relay: OutboxRelay

    async def publish(self, stream: str, events: list[Event], expected: int = -1) -> None:
        async with self.pool.acquire() as conn:
            await self.store.append(conn, stream, events, expected)

    async def report(self, case_id: str | None = None, **kw: Any) -> str:
        case_id = case_id or f"C-{uuid.uuid4().hex[:8]}"
        kw.setdefault("loss_lat", SHANGHAI[0])
        kw.setdefault("loss_lon", SHANGHAI[1])
        await self.publish(f"case-{case_id}", [case_reported(case_id, **kw)], 0)
        return case_id


@contextlib.asynccontextmanager
async def fake_intake(settings: Settings) -> AsyncIterator[FakeIntake]:
    await ensure_topics(settings)
    async with store_in_schema(settings, "intake") as (pool, store):
        extra: dict[str, Any] = {}
        if "topic_for" in inspect.signature(OutboxRelay).parameters:
            extra["topic_for"] = settings.topic
        relay = OutboxRelay(
            pool,
            lambda: make_producer(settings, "test-intake-relay"),
            **extra,
            service="intake",
            lock_key=f"relay:{settings.schema_prefix}intake-test",
            poll_s=0.01,
        )
        task = asyncio.create_task(relay.run())
        try:
            yield FakeIntake(pool, store, relay)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def surveyor_body(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "王建国",
        "phone": "13800138001",
        "team": "浦东一组",
        "skills": ["vehicle"],
        "regions": [],
        "base_lat": SHANGHAI[0] + 0.01,
        "base_lon": SHANGHAI[1] + 0.01,
        "capacity": 3,
        "shifts": [],
    }
    body.update(kw)
    return body


async def add_surveyor(
    client: httpx.AsyncClient, admin: dict[str, str], **kw: Any
) -> dict[str, Any]:
    r = await client.post("/v1/surveyors", json=surveyor_body(**kw), headers=admin)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def job_for_case(
    client: httpx.AsyncClient, admin: dict[str, str], case_id: str
) -> dict[str, Any] | None:
    r = await client.get("/v1/jobs", params={"case_id": case_id}, headers=admin)
    assert r.status_code == 200, r.text
    jobs = r.json()
    if not jobs:
        return None
    full = await client.get(f"/v1/jobs/{jobs[0]['job_id']}", headers=admin)
    assert full.status_code == 200, full.text
    out: dict[str, Any] = full.json()
    return out


@dataclass
class SseEvent:
    event: str
    id: str | None
    data: str
    comments: int = 0


class SseReader:
    """Reads server-sent events from an httpx streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()
        self.pings = 0

    async def next(self, timeout: float = 10.0) -> SseEvent:
        async def read() -> SseEvent:
            event, eid, data = "message", None, []
            async for line in self.lines:
                if line == "":
                    if data or eid is not None:
                        return SseEvent(event, eid, "\n".join(data))
                    continue
                if line.startswith(":"):
                    self.pings += 1
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    event = value
                elif field == "id":
                    eid = value
                elif field == "data":
                    data.append(value)
            raise EOFError("stream ended")

        return await asyncio.wait_for(read(), timeout)

    async def next_job(self, timeout: float = 10.0) -> dict[str, Any]:
        import json

        ev = await self.next(timeout)
        while ev.event != "job":
            ev = await self.next(timeout)
        out: dict[str, Any] = json.loads(ev.data)
        out["_id"] = ev.id
        return out
