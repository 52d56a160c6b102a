"""/metrics over real HTTP: every family the Grafana dashboard reads exists and moves.

A probe service (a ServiceDefinition built in this test, on real Postgres and the real
broker) appends events from a route, schedules deadlines, and consumes its own topic with a
handler that rejects one marked event, so every family gets real samples: HTTP counters and
latency histograms by status, events appended and published, outbox backlog, consumer lag
per topic and partition, events consumed by outcome, dead letters and open deadlines.
Then each of the four real services is started and scraped for its HTTP families.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import httpx
import pytest
from claimdesk import SERVICES
from claimdesk.cli import service_definition
from claimdesk.consumer import ConsumerSpec
from claimdesk.events.base import Envelope
from claimdesk.service import ServiceDefinition
from claimdesk.testing.plugin import eventually
from claimdesk.timers import Timer, schedule
from fastapi import APIRouter, Request
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

from tests.support import case_reported

PROBE = "opsprobe"
POISON = "C-POISON"

router = APIRouter()


class ProbeIn(BaseModel):
    case_id: str = Field(min_length=3, max_length=30)


@router.post("/v1/probe", status_code=201)
async def probe(body: ProbeIn, request: Request) -> dict[str, str]:
    rt = request.app.state.runtime
    async with rt.pool.acquire() as conn, conn.transaction():
        await rt.store.append(conn, body.case_id, [case_reported(body.case_id)], 0)
        await schedule(
            conn, f"probe:{body.case_id}", "probe", rt.clock.now() + timedelta(days=1), {}
        )
    return {"case_id": body.case_id}


async def handle(conn: asyncpg.Connection, env: Envelope) -> None:
    if env.stream_id == POISON:
        raise ValueError("probe: this event is rejected on purpose")


async def never_due(conn: asyncpg.Connection, timer: Timer, now: object) -> None:
    raise AssertionError("probe timers are due tomorrow")


DEFINITION = ServiceDefinition(
    name=PROBE,
    title="ops probe",
    description="metrics probe",
    routers=[router],
    consumers=lambda rt: [ConsumerSpec("probe-sink", [rt.topic("intake")], handle)],
    timers=lambda rt: {"probe": never_due},
)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient) -> tuple[set[str], Samples]:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    families: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        families.add(family.name)
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, samples


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        v
        for (n, lbls), v in samples.items()
        if n == name and all(dict(lbls).get(k) == want for k, want in labels.items())
    )


def series(samples: Samples, name: str, **labels: str) -> list[dict[str, str]]:
    return [
        dict(lbls)
        for (n, lbls) in samples
        if n == name and all(dict(lbls).get(k) == want for k, want in labels.items())
    ]


async def test_every_dashboard_family_exists_and_moves(start_service, settings) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        c = svc.client
        _, before = await scrape(c)
        cases = [f"C-M{i}" for i in range(5)]
        for case in [*cases, POISON]:
            r = await c.post("/v1/probe", json={"case_id": case})
            assert r.status_code == 201, r.text
        assert (await c.post("/v1/probe", json={"case_id": "x"})).status_code == 422
        assert (await c.get("/no/such/route")).status_code == 404
        appended = len(cases) + 1

        async def caught_up() -> bool:
            _, now = await scrape(c)
            consumed = total(now, "claimdesk_events_consumed_total", service=PROBE) - total(
                before, "claimdesk_events_consumed_total", service=PROBE
            )
            return consumed >= appended

        await eventually(caught_up, timeout=30)

        async def deadlines_counted() -> bool:  # the gauge is refreshed every few seconds
            _, now = await scrape(c)
            return total(now, "claimdesk_open_timers", service=PROBE) == appended

        await eventually(deadlines_counted, timeout=15, interval=0.2)
        await c.get("/readyz")  # readiness refreshes the dead-letter gauge
        families, after = await scrape(c)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert {
        "claimdesk_http_requests",
        "claimdesk_http_request_duration_seconds",
        "claimdesk_events_appended",
        "claimdesk_events_published",
        "claimdesk_outbox_backlog",
        "claimdesk_events_consumed",
        "claimdesk_consumer_lag",
        "claimdesk_dead_letters",
        "claimdesk_open_timers",
        "claimdesk_timers_fired",
    } <= families
    # HTTP: counted by the route template and status, timed in a histogram.
    route = "/v1/probe"
    req = "claimdesk_http_requests_total"
    assert delta(req, service=PROBE, route=route, method="POST", status="201") == appended
    assert delta(req, service=PROBE, route=route, status="422") == 1
    assert delta(req, service=PROBE, route="unmatched", status="404") == 1
    hist = "claimdesk_http_request_duration_seconds"
    assert delta(f"{hist}_count", service=PROBE, route=route) == appended + 1
    assert delta(f"{hist}_sum", service=PROBE, route=route) > 0
    assert delta(f"{hist}_bucket", service=PROBE, route=route, le="+Inf") == appended + 1
    assert len(series(after, f"{hist}_bucket", service=PROBE, route=route)) >= 10
    # Events: appended, published by the relay, consumed (one dead-lettered).
    assert delta("claimdesk_events_appended_total", service=PROBE) == appended
    assert delta("claimdesk_events_published_total", service=PROBE) == appended
    assert total(after, "claimdesk_outbox_backlog", service=PROBE) == 0
    consumed = "claimdesk_events_consumed_total"
    assert delta(consumed, service=PROBE, consumer="probe-sink", outcome="handled") == len(cases)
    assert delta(consumed, service=PROBE, consumer="probe-sink", outcome="dead_letter") == 1
    assert total(after, "claimdesk_dead_letters", service=PROBE) == 1
    # Lag per topic and partition, for the partitions that got messages.
    lag = series(after, "claimdesk_consumer_lag", service=PROBE, consumer="probe-sink")
    assert lag, "no consumer lag samples"
    assert {s["topic"] for s in lag} == {settings.topic("intake")}
    assert {s["partition"] for s in lag} <= {str(p) for p in range(settings.kafka_partitions)}
    assert all(
        total(after, "claimdesk_consumer_lag", service=PROBE, partition=s["partition"]) == 0
        for s in lag
    )
    # Deadlines: every probe scheduled one, none is due.
    assert total(after, "claimdesk_open_timers", service=PROBE) == appended


@pytest.mark.parametrize("name", SERVICES)
async def test_each_service_serves_its_metrics(start_service, name: str) -> None:  # type: ignore[no-untyped-def]
    async with start_service(service_definition(name)) as svc:
        for _ in range(3):
            assert (await svc.client.get("/healthz")).status_code == 200
        _, samples = await scrape(svc.client)
    assert total(samples, "claimdesk_http_requests_total", service=name, route="/healthz") >= 3
    assert (
        total(
            samples, "claimdesk_http_request_duration_seconds_count", service=name, route="/healthz"
        )
        >= 3
    )
