"""The shared service runtime over real HTTP: health, readiness, errors, limits, tracing."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from claimdesk.consumer import ConsumerSpec
from claimdesk.db import Migration
from claimdesk.errors import Conflict
from claimdesk.events.base import Envelope
from claimdesk.service import ServiceDefinition
from claimdesk.settings import Settings
from claimdesk.testing.plugin import eventually, make_settings
from fastapi import APIRouter, Request
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel, Field

from tests.support import case_reported

router = APIRouter()


class ReportIn(BaseModel):
    case_id: str = Field(min_length=3, max_length=20)
    plate: str = Field(pattern=r"^[\u4e00-\u9fa5][A-Z][A-Z0-9]{5,6}$")


@router.post("/v1/reports", status_code=201)
async def report(body: ReportIn, request: Request) -> dict[str, str]:
    rt = request.app.state.runtime
    async with rt.pool.acquire() as conn, conn.transaction():
        if await rt.store.stream_version(conn, body.case_id):
            raise Conflict(f"case {body.case_id} exists", case_id=body.case_id)
        await rt.store.append(
            conn, body.case_id, [case_reported(body.case_id, plate=body.plate)], 0
        )
    return {"case_id": body.case_id}


SOURCE = ServiceDefinition(name="intake", title="t", description="t", routers=[router])


def sink(seen: list[Envelope]) -> ServiceDefinition:
    async def handle(conn: asyncpg.Connection, env: Envelope) -> None:
        await conn.execute("INSERT INTO seen VALUES ($1)", env.event_id)
        seen.append(env)

    return ServiceDefinition(
        name="analytics",
        title="t",
        description="t",
        migrations=[
            Migration("analytics", 1, "seen", "CREATE TABLE seen (event_id uuid PRIMARY KEY)")
        ],
        consumers=lambda rt: [ConsumerSpec("sink", [rt.topic("intake")], handle)],
    )


async def test_health_ready_docs_and_metrics(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(SOURCE) as svc:
        assert (await svc.client.get("/healthz")).json()["status"] == "ok"
        assert (await svc.client.get("/readyz")).json()["status"] == "ready"
        assert (await svc.client.get("/docs")).status_code == 200
        spec = (await svc.client.get("/openapi.json")).json()
        assert "/v1/reports" in spec["paths"]
        assert "claimdesk_http_requests_total" in (await svc.client.get("/metrics")).text


async def test_bad_input_is_a_clear_4xx_never_a_500(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(SOURCE) as svc:
        r = await svc.client.post("/v1/reports", json={"case_id": "x", "plate": "ABC"})
        assert r.status_code == 422
        fields = {f["field"] for f in r.json()["fields"]}
        assert fields == {"case_id", "plate"}
        r = await svc.client.post(
            "/v1/reports", content=b"{broken", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422
        r = await svc.client.post(
            "/v1/reports", content=b"case_id=1", headers={"content-type": "text/plain"}
        )
        assert r.status_code == 415
        r = await svc.client.post(
            "/v1/reports",
            content=b"{" + b" " * 70_000 + b"}",
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413
        ok = {"case_id": "C-1001", "plate": "沪A12345"}
        assert (await svc.client.post("/v1/reports", json=ok)).status_code == 201
        r = await svc.client.post("/v1/reports", json=ok)
        assert r.status_code == 409
        assert r.json() == {
            "error": "conflict",
            "message": "case C-1001 exists",
            "details": {"case_id": "C-1001"},
        }


async def test_not_ready_when_broker_unreachable(
    pg_url: str, names: dict[str, str], start_service
) -> None:  # type: ignore[no-untyped-def]
    dead = make_settings(pg_url, "127.0.0.1:1", names)
    async with start_service(SOURCE, dead, wait_ready=False) as svc:
        r = await svc.client.get("/readyz")
        assert r.status_code == 503
        assert any("broker unreachable" in reason for reason in r.json()["reasons"])
        assert (await svc.client.get("/healthz")).status_code == 200


async def test_one_trace_from_request_through_kafka_to_consumer(
    settings: Settings, start_service
) -> None:  # type: ignore[no-untyped-def]
    exporter = InMemorySpanExporter()
    seen: list[Envelope] = []
    correlation = uuid.uuid4()
    async with (
        start_service(SOURCE, span_processor=SimpleSpanProcessor(exporter)) as source,
        start_service(sink(seen)),
    ):
        traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
        r = await source.client.post(
            "/v1/reports",
            json={"case_id": "C-trace", "plate": "沪B54321"},
            headers={"traceparent": traceparent, "x-correlation-id": str(correlation)},
        )
        assert r.status_code == 201
        await eventually(lambda: seen, timeout=20)
    trace_id = traceparent.split("-")[1]
    env = seen[0]
    assert env.correlation_id == correlation
    assert env.trace_context["traceparent"].split("-")[1] == trace_id
    await asyncio.sleep(0)
    spans = [
        s for s in exporter.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id
    ]
    names = {s.name for s in spans}
    assert "POST /v1/reports" in names
    assert "publish CaseReported" in names
    assert "consume CaseReported" in names
