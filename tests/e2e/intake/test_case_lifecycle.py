"""The whole flow with the real dispatch service: an insurer subscribes a webhook and posts a
case at intake; dispatch assigns a surveyor from the CaseReported it consumed; the surveyor's
steps come back over Kafka; intake's status follows and the insurer receives each update, signed."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from claimdesk.settings import Settings
from claimdesk.testing.plugin import eventually
from dispatch.bootstrap import make_definition
from dispatch.settings import DispatchSettings
from intake.bootstrap import DEFINITION as INTAKE
from intake.webhooks import verify

from tests.integration.dispatch.helpers import add_surveyor, job_for_case
from tests.integration.intake.helpers import Receiver, add_insurer, bearer, running


@pytest.fixture
def fast_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAIMDESK_INTAKE_WEBHOOK_POLL_S", "0.05")


async def test_insurer_case_to_closed_with_signed_webhooks(
    settings: Settings, start_service, fast_webhooks: None
) -> None:  # type: ignore[no-untyped-def]
    receiver = Receiver()
    async with (
        running(receiver) as hook_url,
        start_service(INTAKE) as intake,
        start_service(make_definition(DispatchSettings())) as dispatch,
    ):
        admin = dispatch.admin_headers()
        key = await add_insurer(intake.client, "PICC")
        hook = await intake.client.post(
            "/v1/webhooks",
            json={
                "url": hook_url,
                "events": [
                    "case.assigned",
                    "case.surveyor_arrived",
                    "case.survey_completed",
                    "case.closed",
                ],
            },
            headers=bearer(key),
        )
        secret = hook.json()["secret"]
        surveyor = await add_surveyor(dispatch.client, admin, name="钱七", team="徐汇查勘组")
        r = await intake.client.post(
            "/v1/cases",
            json={
                "report_no": f"RPT{uuid.uuid4().hex[:12].upper()}",
                "plate": "沪F88888",
                "loss_type": "vehicle_own_damage",
                "loss_time": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                "loss_address": "上海市徐汇区漕溪北路1号",
                "loss_lat": 31.1885,
                "loss_lon": 121.4365,
                "insured_name": "孙八",
                "insured_phone": "13612345678",
            },
            headers=bearer(key),
        )
        assert r.status_code == 201, r.text
        case_id = r.json()["case_id"]

        async def status() -> str:
            r = await intake.client.get(f"/v1/cases/{case_id}", headers=bearer(key))
            return str(r.json()["status"])

        async def is_(want: str) -> bool:
            return await status() == want

        job = await eventually(lambda: job_for_case(dispatch.client, admin, case_id), timeout=20)
        await eventually(lambda: is_("assigned"), timeout=20)
        sv = bearer(surveyor["token"])
        jid = job["job_id"]
        for step in ("ack", "en-route", "arrived"):
            r = await dispatch.client.post(f"/v1/jobs/{jid}/{step}", headers=sv)
            assert r.status_code == 200, r.text
        await eventually(lambda: is_("surveyor_arrived"), timeout=20)
        r = await dispatch.client.post(f"/v1/jobs/{jid}/complete", headers=sv)
        assert r.status_code == 200, r.text
        await eventually(lambda: is_("survey_completed"), timeout=20)
        r = await dispatch.client.post(f"/v1/jobs/{jid}/close", headers=admin)
        assert r.status_code == 200, r.text
        await eventually(lambda: is_("closed"), timeout=20)

        def events() -> list[str]:
            return [json.loads(c["body"])["event"] for c in receiver.calls]

        await eventually(lambda: len(events()) >= 4, timeout=20)
        # one delivery per update, in the order the updates happened
        assert events() == [
            "case.assigned",
            "case.surveyor_arrived",
            "case.survey_completed",
            "case.closed",
        ]
        for call in receiver.calls:
            h: dict[str, Any] = call["headers"]
            assert verify(
                secret,
                h["x-claimdesk-timestamp"],
                call["body"],
                h["x-claimdesk-signature"],
                now=time.time(),
            )
            assert json.loads(call["body"])["case_id"] == case_id
        assigned = next(
            json.loads(c["body"]) for c in receiver.calls if b"case.assigned" in c["body"]
        )
        assert assigned["surveyor_id"] == surveyor["surveyor_id"]
        case = (await intake.client.get(f"/v1/cases/{case_id}", headers=bearer(key))).json()
        assert case["surveyor_id"] == surveyor["surveyor_id"]
