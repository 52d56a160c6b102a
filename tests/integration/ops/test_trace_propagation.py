"""Trace context through stored deadlines, in one process with an in-memory span exporter.

A request schedules a timer due at once; the scheduler fires it later, on its own task. The
handler must run in the request's trace (a `timer <kind>` span under the request), see
exactly the payload it was given (the stored trace context is not part of it), and events it
appends must carry that trace on to consumers.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from claimdesk.consumer import ConsumerSpec
from claimdesk.events.base import Envelope
from claimdesk.service import ServiceDefinition
from claimdesk.settings import Settings
from claimdesk.testing.plugin import eventually
from claimdesk.timers import Timer, schedule
from fastapi import APIRouter, Request
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support import case_reported

router = APIRouter()
seen: dict[str, object] = {}


@router.post("/v1/deadline/{case_id}", status_code=202)
async def set_deadline(case_id: str, request: Request) -> dict[str, str]:
    rt = request.app.state.runtime
    async with rt.pool.acquire() as conn, conn.transaction():
        await schedule(conn, f"dl:{case_id}", "probe", rt.clock.now(), {"case_id": case_id, "n": 1})
    return {"trace_id": format(trace.get_current_span().get_span_context().trace_id, "032x")}


async def on_deadline(conn: asyncpg.Connection, timer: Timer, now: datetime) -> None:
    seen["payload"] = timer.payload
    seen["trace_id"] = format(trace.get_current_span().get_span_context().trace_id, "032x")
    from claimdesk.eventstore import EventStore

    store: EventStore = seen["store"]  # type: ignore[assignment]
    case_id = str(timer.payload["case_id"])
    await store.append(conn, case_id, [case_reported(case_id)], 0)


async def on_event(conn: asyncpg.Connection, env: Envelope) -> None:
    seen.setdefault("consumed", []).append(env)  # type: ignore[union-attr]


def definition() -> ServiceDefinition:
    def timers(rt):  # type: ignore[no-untyped-def]
        seen["store"] = rt.store
        return {"probe": on_deadline}

    return ServiceDefinition(
        name="opstimer",
        title="t",
        description="t",
        routers=[router],
        timers=timers,
        consumers=lambda rt: [ConsumerSpec("opstimer-sink", [rt.topic("intake")], on_event)],
    )


async def test_a_deadline_fires_in_the_trace_that_scheduled_it(
    settings: Settings, start_service
) -> None:  # type: ignore[no-untyped-def]
    exporter = InMemorySpanExporter()
    seen.clear()
    async with start_service(definition(), span_processor=SimpleSpanProcessor(exporter)) as svc:
        r = await svc.client.post("/v1/deadline/C-DL1")
        assert r.status_code == 202
        request_trace = r.json()["trace_id"]
        await eventually(lambda: seen.get("consumed"), timeout=20)

    assert seen["payload"] == {"case_id": "C-DL1", "n": 1}  # the stored context is not payload
    assert seen["trace_id"] == request_trace
    spans = [
        s
        for s in exporter.get_finished_spans()
        if format(s.context.trace_id, "032x") == request_trace
    ]
    by_id = {s.context.span_id: s for s in spans}
    timer_span = next(s for s in spans if s.name == "timer probe")
    assert timer_span.attributes is not None
    assert timer_span.attributes["claimdesk.timer.id"] == "dl:C-DL1"
    # Its ancestors lead up to the request's server span.
    ancestors = []
    parent = timer_span.parent
    while parent is not None:
        ancestors.append(by_id[parent.span_id])
        parent = by_id[parent.span_id].parent
    assert any(
        a.kind == trace.SpanKind.SERVER and a.name == "POST /v1/deadline/{case_id}"
        for a in ancestors
    ), [a.name for a in ancestors]
    # What the handler appended travels on in the same trace, to the consumer.
    (env,) = seen["consumed"]  # type: ignore[misc]
    assert env.trace_context["traceparent"].split("-")[1] == request_trace
    consume = next(s for s in spans if s.name == "consume CaseReported")
    publish = next(s for s in spans if s.name == "publish CaseReported")
    assert consume.parent is not None and publish.parent is not None
    assert consume.parent.span_id == timer_span.context.span_id
    assert publish.parent.span_id == timer_span.context.span_id


async def test_a_deadline_scheduled_outside_any_trace_fires_in_a_fresh_one(
    settings: Settings, start_service
) -> None:  # type: ignore[no-untyped-def]
    exporter = InMemorySpanExporter()
    seen.clear()
    async with start_service(definition(), span_processor=SimpleSpanProcessor(exporter)) as svc:
        async with svc.runtime.pool.acquire() as conn:
            await schedule(conn, "dl:C-DL2", "probe", svc.runtime.clock.now(), {"case_id": "C-DL2"})
        await eventually(lambda: seen.get("consumed"), timeout=20)
    assert seen["payload"] == {"case_id": "C-DL2"}
    timer_span = next(s for s in exporter.get_finished_spans() if s.name == "timer probe")
    assert timer_span.parent is None
