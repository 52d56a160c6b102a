"""One case's journey is one trace, with spans from every service it touched.

The four services run as real processes (`python -m claimdesk.cli serve <service>`, the way
containers run them), each with OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP/HTTP receiver
this test runs on 127.0.0.1. The receiver decodes the protobuf `ExportTraceServiceRequest`s,
so each span carries the `service.name` of the process that made it.

Journey: an insurer posts a case to intake (HTTP) -> CaseReported in intake's store -> the
outbox relay publishes it -> dispatch consumes it, opens a job, assigns the surveyor and
pushes the job (JobOpened, SurveyorAssigned, JobNotified) -> its relay publishes those ->
intake consumes them (case status), complaints consumes the case, analytics folds all of it.
Every one of those spans must share the trace id of the intake request and hang from it
(one root, no orphan), and a second case must be a different trace.

Then the surveyor works the job (ack, en-route, arrived, complete: new requests, so a new
trace): the completion request in dispatch, SurveyCompleted, the callback complaints
schedules for it (CallbackScheduled) and the analytics fold are again one connected trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from claimdesk import SERVICES
from claimdesk.embedded import free_port
from claimdesk.settings import Settings
from claimdesk.testing.plugin import TEST_ADMIN, TEST_SECRET, eventually
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.integration.intake.helpers import case_body

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN}"}
KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass(frozen=True)
class Span:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    attributes: dict[str, Any] = field(hash=False, compare=False)


class OtlpReceiver:
    """A minimal OTLP/HTTP trace receiver (POST /v1/traces, protobuf, optionally gzip)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.requests = 0
        self.port = free_port()
        self.app = Starlette(routes=[Route("/v1/traces", self.traces, methods=["POST"])])

    async def traces(self, request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        assert request.headers["content-type"] == "application/x-protobuf"
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        self.requests += 1
        for rs in message.resource_spans:
            resource = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.append(
                        Span(
                            service=resource.get("service.name", "?"),
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            name=s.name,
                            kind=KINDS.get(s.kind, str(s.kind)),
                            attributes={a.key: _value(a.value) for a in s.attributes},
                        )
                    )
        return Response(
            ExportTraceServiceResponse().SerializeToString(),
            media_type="application/x-protobuf",
        )

    def trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.spans if s.trace_id == trace_id]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[OtlpReceiver]:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        try:
            await eventually(lambda: server.started, timeout=10)
            yield self
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=10)


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@contextlib.contextmanager
def service_processes(settings: Settings, otlp_port: int) -> Iterator[dict[str, str]]:
    """Start the four services as separate processes; yield their base URLs."""
    ports = {name: free_port() for name in SERVICES}
    logs = Path(tempfile.mkdtemp(prefix="claimdesk-trace-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAIMDESK_", "OTEL_"))}
    assert settings.database_url and settings.kafka_bootstrap
    env.update(
        {
            "CLAIMDESK_ENVIRONMENT": "test",
            "CLAIMDESK_HOST": "127.0.0.1",
            "CLAIMDESK_DATABASE_URL": settings.database_url,
            "CLAIMDESK_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "CLAIMDESK_SCHEMA_PREFIX": settings.schema_prefix,
            "CLAIMDESK_TOPIC_PREFIX": settings.topic_prefix,
            "CLAIMDESK_TOKEN_SECRET": TEST_SECRET,
            "CLAIMDESK_ADMIN_TOKEN": TEST_ADMIN,
            "CLAIMDESK_DEMO": "false",
            "CLAIMDESK_DATA_DIR": str(logs),
            "CLAIMDESK_KAFKA_PARTITIONS": str(settings.kafka_partitions),
            "CLAIMDESK_DB_POOL_MAX": "4",
            "CLAIMDESK_LOG_LEVEL": "WARNING",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "PYTHONDONTWRITEBYTECODE": "1",
            **{f"CLAIMDESK_{n.upper()}_PORT": str(p) for n, p in ports.items()},
        }
    )
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in SERVICES:
            with (logs / f"{name}.log").open("wb") as out:
                procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "claimdesk.cli", "serve", name],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
        yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in procs.items():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.returncode not in (0, -signal.SIGTERM):
                sys.stderr.write((logs / f"{name}.log").read_text()[-4000:])


async def wait_ready(client: httpx.AsyncClient, url: str, timeout: float = 60) -> None:
    async def ready() -> bool:
        try:
            return (await client.get(f"{url}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    await eventually(ready, timeout=timeout, interval=0.2)


async def test_one_case_is_one_trace_across_all_services(settings: Settings) -> None:
    receiver = OtlpReceiver()
    async with receiver.running(), httpx.AsyncClient(timeout=10) as client:
        with service_processes(settings, receiver.port) as urls:
            await asyncio.gather(*(wait_ready(client, u) for u in urls.values()))
            r = await client.post(
                f"{urls['intake']}/v1/admin/insurers",
                json={"code": "PICC", "name": "中国人保财险"},
                headers=ADMIN,
            )
            assert r.status_code == 201, r.text
            insurer = {"Authorization": f"Bearer {r.json()['api_key']}"}
            r = await client.post(
                f"{urls['dispatch']}/v1/surveyors",
                json={
                    "name": "王建国",
                    "phone": "13800138001",
                    "team": "浦东一组",
                    "skills": ["vehicle"],
                    "regions": [],
                    "base_lat": 31.2404,
                    "base_lon": 121.4837,
                    "capacity": 3,
                    "shifts": [],
                },
                headers=ADMIN,
            )
            assert r.status_code == 201, r.text
            surveyor = {"Authorization": f"Bearer {r.json()['token']}"}

            traces: list[tuple[str, str]] = []
            known: set[str] = set()
            for _ in range(2):
                r = await client.post(
                    f"{urls['intake']}/v1/cases", json=case_body(), headers=insurer
                )
                assert r.status_code == 201, r.text
                case_id = r.json()["case_id"]
                traces.append((case_id, await root_trace_of(receiver, known)))

            case_id, trace_id = traces[0]

            def journey_done() -> list[Span] | None:
                spans = receiver.trace(trace_id)
                names = {(s.service, s.name) for s in spans}
                wanted = {
                    ("intake", "POST /v1/cases"),
                    ("intake", "publish CaseReported"),
                    ("dispatch", "consume CaseReported"),
                    ("dispatch", "publish SurveyorAssigned"),
                    ("dispatch", "publish JobNotified"),
                    ("complaints", "consume CaseReported"),
                    ("intake", "consume SurveyorAssigned"),
                }
                analytics = any(s.service == "analytics" and s.kind == "CONSUMER" for s in spans)
                return spans if wanted <= names and analytics else None

            try:
                spans = await eventually(journey_done, timeout=30, interval=0.2)
            except AssertionError:
                got = sorted({(s.service, s.kind, s.name) for s in receiver.trace(trace_id)})
                pytest.fail(f"trace {trace_id} of case {case_id} is incomplete: {got}")

            # The surveyor finishes the job: a new request, so a new trace, which must run
            # through dispatch, complaints (the callback it schedules) and analytics.
            r = await client.get(
                f"{urls['dispatch']}/v1/jobs", params={"case_id": case_id}, headers=ADMIN
            )
            assert r.status_code == 200 and r.json(), r.text
            job_id = r.json()[0]["job_id"]
            for step in ("ack", "en-route", "arrived", "complete"):
                r = await client.post(
                    f"{urls['dispatch']}/v1/jobs/{job_id}/{step}", headers=surveyor
                )
                assert r.status_code == 200, f"{step}: {r.text}"

            def completion_done() -> list[Span] | None:
                roots = [
                    s
                    for s in receiver.spans
                    if s.name == "POST /v1/jobs/{job_id}/complete" and not s.parent_id
                ]
                if len(roots) != 1:
                    return None
                found = receiver.trace(roots[0].trace_id)
                names = {(s.service, s.name) for s in found}
                wanted = {
                    ("dispatch", "publish SurveyCompleted"),
                    ("complaints", "consume SurveyCompleted"),
                    ("complaints", "publish CallbackScheduled"),
                    ("analytics", "consume CallbackScheduled"),
                }
                return found if wanted <= names else None

            try:
                completion = await eventually(completion_done, timeout=30, interval=0.2)
            except AssertionError:
                got = sorted(
                    {(s.service, s.kind, s.name) for s in receiver.spans if "complete" in s.name}
                )
                pytest.fail(f"survey completion trace incomplete: {got}")

    # Every service the case touched appears, each from its own process.
    assert {s.service for s in spans} == set(SERVICES)
    # One tree: a single root (intake's HTTP server span), every other span's parent is in it.
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if not s.parent_id]
    assert [(r.service, r.kind, r.name) for r in roots] == [("intake", "SERVER", "POST /v1/cases")]
    orphans = [(s.service, s.name) for s in spans if s.parent_id and s.parent_id not in ids]
    assert not orphans, f"spans whose parent is outside the trace: {orphans}"
    # Producers and consumers say which topic and which consumer group.
    for s in spans:
        if s.kind == "PRODUCER":
            assert str(s.attributes["messaging.destination.name"]).startswith(settings.topic_prefix)
        if s.kind == "CONSUMER":
            assert str(s.attributes["messaging.consumer.group.name"]).startswith(s.service)
    # The consumers' spans hang below the spans that caused them, across processes.
    by_id = {s.span_id: s for s in spans}
    dispatch_consume = next(
        s for s in spans if s.name == "consume CaseReported" and s.service == "dispatch"
    )
    assert by_id[dispatch_consume.parent_id].service == "intake"
    intake_consume = next(
        s for s in spans if s.name == "consume SurveyorAssigned" and s.service == "intake"
    )
    assert by_id[intake_consume.parent_id].service == "dispatch"
    # The push runs from a stored timer, and still belongs to the case's trace.
    pushed = next(s for s in spans if s.name == "publish JobNotified")
    timer = by_id[pushed.parent_id]
    assert timer.service == "dispatch" and timer.name.startswith("timer "), timer
    analytics = [s for s in spans if s.service == "analytics" and s.kind == "CONSUMER"]
    assert {by_id[s.parent_id].service for s in analytics} >= {"intake", "dispatch"}
    # The completion: one tree too, rooted at the surveyor's request in dispatch.
    ids = {s.span_id for s in completion}
    roots = [s for s in completion if not s.parent_id]
    assert [(r.service, r.kind) for r in roots] == [("dispatch", "SERVER")]
    assert not [s.name for s in completion if s.parent_id and s.parent_id not in ids]
    assert {"dispatch", "complaints", "analytics"} <= {s.service for s in completion}
    assert completion[0].trace_id != trace_id
    # The second case is its own trace; no span mixes the two.
    other_case, other_trace = traces[1]
    assert other_trace != trace_id
    assert not any(s.trace_id == other_trace for s in spans)
    assert other_case != case_id


async def root_trace_of(receiver: OtlpReceiver, known: set[str]) -> str:
    """The trace of the intake request just made: the one new root `POST /v1/cases` span."""

    def find() -> str | None:
        new = {
            s.trace_id
            for s in receiver.spans
            if s.service == "intake" and s.name == "POST /v1/cases" and not s.parent_id
        } - known
        assert len(new) <= 1, [
            (x.attributes, x.span_id)
            for x in receiver.spans
            if x.trace_id in new and not x.parent_id
        ] + [known]
        return new.pop() if new else None

    trace_id = str(await eventually(find, timeout=20, interval=0.1))
    known.add(trace_id)
    return trace_id
