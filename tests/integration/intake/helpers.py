"""Helpers for intake tests: register insurers and staff over the admin API, sample bodies."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import uvicorn
from claimdesk.embedded import free_port
from claimdesk.testing.plugin import TEST_ADMIN, eventually
from fastapi import FastAPI, Request, Response

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def add_insurer(client: httpx.AsyncClient, code: str, name: str | None = None) -> str:
    r = await client.post(
        "/v1/admin/insurers", json={"code": code, "name": name or f"{code} 财产保险"}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    key: str = r.json()["api_key"]
    assert key.startswith("cdk_")
    return key


async def add_staff(
    client: httpx.AsyncClient, number: str, role: str, team: str = "坐席一组"
) -> str:
    r = await client.post(
        "/v1/admin/staff",
        json={"number": number, "name": f"员工{number}", "role": role, "team": team},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


def report_no() -> str:
    return f"RPT{uuid.uuid4().hex[:12].upper()}"


def case_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "report_no": report_no(),
        "policy_no": "PDAA202631010000012345",
        "plate": "沪A12345",
        "loss_type": "vehicle_own_damage",
        "loss_time": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "loss_address": "上海市浦东新区世纪大道100号",
        "loss_lat": 31.2353,
        "loss_lon": 121.5058,
        "description": "两车追尾,前车后保险杠受损",
        "reporter_name": "张伟",
        "reporter_phone": "13812345678",
        "insured_name": "张伟",
        "insured_phone": "13812345678",
        "survey_place": "scene",
        "injuries": False,
        "priority": "normal",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def phone_body(insurer_code: str, **overrides: Any) -> dict[str, Any]:
    body = case_body()
    body.pop("report_no")
    body.update(
        insurer_code=insurer_code,
        caller_name="张伟",
        caller_phone="13812345678",
        callback_promised_at=(datetime.now(UTC) + timedelta(minutes=30)).isoformat(),
    )
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


async def publish_dispatch(settings: Any, events: list[Any]) -> None:
    """Publish dispatch events to the dispatch topic as the dispatch service's relay would."""
    from claimdesk.events.base import Envelope
    from claimdesk.kafka import ensure_topics, make_producer

    await ensure_topics(settings)
    producer = make_producer(settings, "test-dispatch")
    await producer.start()
    try:
        for n, e in enumerate(events, 1):
            now = datetime.now(UTC)
            env = Envelope(
                event_id=uuid.uuid4(),
                event_type=e.event_type,
                schema_version=e.schema_version,
                stream_id=f"job-{e.case_id}",
                sequence=n,
                occurred_at=now,
                recorded_at=now,
                producer="dispatch",
                correlation_id=uuid.uuid4(),
                key=e.case_id,
                payload=e,
            )
            await producer.send_and_wait(
                settings.topic("dispatch"),
                env.to_json_bytes(),
                key=e.case_id.encode(),
                headers=env.headers(),
            )
    finally:
        await producer.stop()


def assigned(case_id: str, surveyor: str = "SV001") -> Any:
    from claimdesk.events.dispatch import SurveyorAssigned

    return SurveyorAssigned(
        job_id=f"J-{case_id}",
        case_id=case_id,
        surveyor_id=surveyor,
        policy_version="test",
        reason="nearest",
        ack_due_at=datetime.now(UTC) + timedelta(minutes=5),
    )


def step(kind: str, case_id: str, surveyor: str = "SV001") -> Any:
    from claimdesk.events import dispatch as d

    if kind == "arrived":
        return d.SurveyorArrived(job_id=f"J-{case_id}", case_id=case_id, surveyor_id=surveyor)
    if kind == "completed":
        return d.SurveyCompleted(
            job_id=f"J-{case_id}", case_id=case_id, surveyor_id=surveyor, loss_estimate=3200.0
        )
    return d.CaseClosed(job_id=f"J-{case_id}", case_id=case_id, closed_by="D001")


class Receiver:
    """An insurer's endpoint: fails the first `fail_first` calls with 503, records every call."""

    def __init__(self, fail_first: int = 0, hang: bool = False) -> None:
        self.fail_first = fail_first
        self.hang = hang
        self.calls: list[dict[str, Any]] = []
        self.app = FastAPI()

        @self.app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.body()
            self.calls.append({"headers": dict(request.headers), "body": body, "at": time.time()})
            if self.hang:
                await asyncio.sleep(30)
            if len(self.calls) <= self.fail_first:
                return Response(status_code=503)
            return Response(status_code=204)


@contextlib.asynccontextmanager
async def running(receiver: Receiver) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(receiver.app, host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, timeout=10, interval=0.01)
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.should_exit = True
        server.force_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=5)
