"""Insurer webhooks against a local receiver on 127.0.0.1: signature, retry with backoff, log,
tenancy, and a dead endpoint never slowing intake."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from claimdesk.embedded import free_port
from claimdesk.settings import Settings
from claimdesk.testing.plugin import eventually
from intake.bootstrap import DEFINITION
from intake.webhooks import verify

from tests.integration.intake.helpers import (
    Receiver,
    add_insurer,
    assigned,
    bearer,
    case_body,
    publish_dispatch,
    running,
    step,
)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAIMDESK_INTAKE_WEBHOOK_BACKOFF_S", "0.2")
    monkeypatch.setenv("CLAIMDESK_INTAKE_WEBHOOK_MAX_ATTEMPTS", "4")
    monkeypatch.setenv("CLAIMDESK_INTAKE_WEBHOOK_TIMEOUT_S", "1")
    monkeypatch.setenv("CLAIMDESK_INTAKE_WEBHOOK_POLL_S", "0.05")


async def test_signed_delivery_retried_with_backoff_and_logged(
    settings: Settings, start_service, fast_retries: None
) -> None:  # type: ignore[no-untyped-def]
    receiver = Receiver(fail_first=2)
    async with running(receiver) as url, start_service(DEFINITION) as svc:
        c = svc.client
        picc = await add_insurer(c, "PICC")
        cpic = await add_insurer(c, "CPIC")
        r = await c.post(
            "/v1/webhooks",
            json={"url": url, "events": ["case.assigned", "case.closed"]},
            headers=bearer(picc),
        )
        assert r.status_code == 201
        hook = r.json()
        secret = hook["secret"]
        assert secret.startswith("whsec_")
        listed = (await c.get("/v1/webhooks", headers=bearer(picc))).json()
        assert [h["webhook_id"] for h in listed] == [hook["webhook_id"]]
        assert "secret" not in listed[0] or listed[0]["secret"] is None
        assert (await c.get("/v1/webhooks", headers=bearer(cpic))).json() == []
        bad = await c.post(
            "/v1/webhooks", json={"url": "ftp://x", "events": ["case.eaten"]}, headers=bearer(picc)
        )
        assert {f["field"] for f in bad.json()["fields"]} == {"url", "events.0"}

        body = case_body()
        cid = (await c.post("/v1/cases", json=body, headers=bearer(picc))).json()["case_id"]
        other = (await c.post("/v1/cases", json=case_body(), headers=bearer(cpic))).json()[
            "case_id"
        ]
        # assigned (subscribed), arrived (not subscribed), other insurer's case (not ours)
        await publish_dispatch(settings, [assigned(cid), step("arrived", cid), assigned(other)])

        await eventually(lambda: len(receiver.calls) >= 3, timeout=20)
        calls = receiver.calls
        assert len(calls) == 3  # two failures, then the delivery
        times = [call["at"] for call in calls]
        assert times[2] - times[1] >= times[1] - times[0] - 0.05  # backoff grows
        assert times[1] - times[0] >= 0.15
        last = calls[-1]
        h = last["headers"]
        assert verify(
            secret,
            h["x-claimdesk-timestamp"],
            last["body"],
            h["x-claimdesk-signature"],
            now=time.time(),
        )
        assert not verify(
            "whsec_wrong",
            h["x-claimdesk-timestamp"],
            last["body"],
            h["x-claimdesk-signature"],
            now=time.time(),
        )
        assert not verify(
            secret,
            h["x-claimdesk-timestamp"],
            last["body"] + b" ",
            h["x-claimdesk-signature"],
            now=time.time(),
        )
        payload = json.loads(last["body"])
        assert payload["event"] == "case.assigned" == h["x-claimdesk-event"]
        assert payload["case_id"] == cid and payload["report_no"] == body["report_no"]
        assert payload["status"] == "assigned" and payload["surveyor_id"] == "SV001"
        assert h["x-claimdesk-attempt"] == "3"
        assert len({call["headers"]["x-claimdesk-delivery"] for call in calls}) == 1

        async def delivered() -> Any:
            r = await c.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", headers=bearer(picc))
            items = r.json()
            return items if items and items[0]["status"] == "delivered" else None

        items = await eventually(delivered, timeout=10)
        assert len(items) == 1
        d = items[0]
        assert d["attempts"] == 3 and d["last_status_code"] == 204
        assert [a["status_code"] for a in d["log"]] == [503, 503, 204]
        assert d["log"][0]["error"] == "HTTP 503"
        r = await c.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", headers=bearer(cpic))
        assert r.status_code == 404
        metrics = (await c.get("/metrics")).text
        assert 'claimdesk_intake_webhook_attempts_total{outcome="delivered"}' in metrics
        assert 'claimdesk_intake_cases_total{channel="insurer_api",outcome="created"}' in metrics

        # closed: delivered once more; unsubscribing stops deliveries
        await publish_dispatch(settings, [step("closed", cid)])
        await eventually(lambda: len(receiver.calls) >= 4, timeout=15)
        assert json.loads(receiver.calls[-1]["body"])["event"] == "case.closed"
        r = await c.delete(f"/v1/webhooks/{hook['webhook_id']}", headers=bearer(picc))
        assert r.status_code == 204
        assert (await c.get("/v1/webhooks", headers=bearer(picc))).json() == []
        r = await c.delete(f"/v1/webhooks/{hook['webhook_id']}", headers=bearer(picc))
        assert r.status_code == 404
        before = len(receiver.calls)
        await publish_dispatch(settings, [assigned(cid, "SV099")])  # subscribed type
        await eventually(lambda: _surveyor_is(c, picc, cid, "SV099"), timeout=15)
        await asyncio.sleep(0.5)
        assert len(receiver.calls) == before  # unsubscribed: nothing more arrives


async def test_a_dead_endpoint_fails_after_max_attempts_and_never_slows_intake(
    settings: Settings, start_service, fast_retries: None
) -> None:  # type: ignore[no-untyped-def]
    hanging = Receiver(hang=True)
    async with running(hanging) as slow_url, start_service(DEFINITION) as svc:
        c = svc.client
        picc = await add_insurer(c, "PICC")
        dead_url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
        for url in (dead_url, slow_url):
            r = await c.post(
                "/v1/webhooks", json={"url": url, "events": ["case.assigned"]}, headers=bearer(picc)
            )
            assert r.status_code == 201
        hooks = (await c.get("/v1/webhooks", headers=bearer(picc))).json()
        cids = [
            (await c.post("/v1/cases", json=case_body(), headers=bearer(picc))).json()["case_id"]
            for _ in range(5)
        ]
        await publish_dispatch(settings, [assigned(cid) for cid in cids])
        await eventually(lambda: len(hanging.calls) >= 3, timeout=15)
        # deliveries hang and fail meanwhile; intake answers as fast as ever
        latencies = []
        for _ in range(20):
            t0 = time.perf_counter()
            r = await c.post("/v1/cases", json=case_body(), headers=bearer(picc))
            latencies.append(time.perf_counter() - t0)
            assert r.status_code == 201
        assert max(latencies) < 0.5, latencies

        dead = next(h for h in hooks if h["url"] == dead_url)

        async def all_failed() -> Any:
            r = await c.get(f"/v1/webhooks/{dead['webhook_id']}/deliveries", headers=bearer(picc))
            items = r.json()
            return (
                items if len(items) == 5 and all(i["status"] == "failed" for i in items) else None
            )

        items = await eventually(all_failed, timeout=30)
        for d in items:
            assert d["attempts"] == 4 and len(d["log"]) == 4
            assert d["last_status_code"] is None and "Connect" in d["last_error"]


async def _surveyor_is(client, key: str, case_id: str, surveyor: str) -> bool:  # type: ignore[no-untyped-def]
    r = await client.get(f"/v1/cases/{case_id}", headers=bearer(key))
    return bool(r.json()["surveyor_id"] == surveyor)


async def test_private_webhook_urls_refused_when_not_allowed(
    start_service, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CLAIMDESK_INTAKE_WEBHOOK_ALLOW_PRIVATE", "false")
    async with start_service(DEFINITION) as svc:
        key = await add_insurer(svc.client, "PICC")
        for url in (
            "http://127.0.0.1:8001/x",
            "http://169.254.169.254/latest",
            "http://localhost/",
        ):
            r = await svc.client.post(
                "/v1/webhooks", json={"url": url, "events": ["case.closed"]}, headers=bearer(key)
            )
            assert r.status_code == 422, url
            assert r.json()["fields"][0]["field"] == "url"
        r = await svc.client.post(
            "/v1/webhooks",
            json={"url": "https://claims.example-insurer.cn/hook", "events": ["case.closed"]},
            headers=bearer(key),
        )
        assert r.status_code == 201


async def test_deliveries_of_one_case_keep_their_order_through_retries(
    settings: Settings, start_service, fast_retries: None
) -> None:  # type: ignore[no-untyped-def]
    receiver = Receiver(fail_first=2)
    async with running(receiver) as url, start_service(DEFINITION) as svc:
        c = svc.client
        picc = await add_insurer(c, "PICC")
        everything = [
            "case.assigned",
            "case.surveyor_arrived",
            "case.survey_completed",
            "case.closed",
        ]
        r = await c.post(
            "/v1/webhooks", json={"url": url, "events": everything}, headers=bearer(picc)
        )
        assert r.status_code == 201
        cid = (await c.post("/v1/cases", json=case_body(), headers=bearer(picc))).json()["case_id"]
        await publish_dispatch(
            settings,
            [assigned(cid), step("arrived", cid), step("completed", cid), step("closed", cid)],
        )
        await eventually(lambda: len(receiver.calls) >= 6, timeout=20)
        await asyncio.sleep(0.3)
        got = [json.loads(call["body"])["event"] for call in receiver.calls]
        assert got == ["case.assigned"] * 3 + everything[1:]


async def test_the_case_status_consumer_fetches_with_the_background_wait(
    start_service,
) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        s = svc.runtime.settings
        assert s.kafka_background_fetch_max_wait_ms != s.kafka_fetch_max_wait_ms
        [status] = svc.runtime.consumers
        assert status.spec.background
        kafka = status.consumer_factory("probe-group")  # built, never started
        assert kafka._fetch_max_wait_ms == s.kafka_background_fetch_max_wait_ms
