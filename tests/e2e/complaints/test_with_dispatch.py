"""Complaints next to the real dispatch service: a survey completed in dispatch puts a
satisfaction callback in an agent's queue; a dissatisfied answer opens a linked complaint
about that surveyor. Intake's CaseReported is published through a real outbox relay."""

from __future__ import annotations

from typing import Any

from claimdesk.testing.plugin import eventually
from complaints.bootstrap import make_definition as complaints_definition
from complaints.settings import ComplaintsSettings
from dispatch.bootstrap import make_definition as dispatch_definition
from dispatch.settings import DispatchSettings

from tests.integration.complaints.helpers import AGENT, get, producing
from tests.support import case_reported

SHANGHAI = (31.2304, 121.4737)


async def test_survey_completed_in_dispatch_to_callback_to_linked_complaint(  # type: ignore[no-untyped-def]
    start_service, settings
) -> None:
    cfg = ComplaintsSettings(callback_agents=["A003"], callback_delay_s=0)
    async with (
        start_service(dispatch_definition(DispatchSettings())) as dispatch,
        start_service(complaints_definition(cfg)) as complaints,
        producing(settings, "intake") as intake,
    ):
        admin = dispatch.admin_headers()
        r = await dispatch.client.post(
            "/v1/surveyors",
            json={
                "name": "王建国",
                "phone": "13800138001",
                "team": "浦东一组",
                "skills": ["vehicle"],
                "regions": [],
                "base_lat": SHANGHAI[0] + 0.01,
                "base_lon": SHANGHAI[1] + 0.01,
                "capacity": 3,
                "shifts": [],
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text
        surveyor = r.json()
        surveyor_headers = {"Authorization": f"Bearer {surveyor['token']}"}
        await intake.emit(
            "case-C-900",
            case_reported(
                "C-900",
                insurer_code="CPIC",
                insured_name="周先生",
                insured_phone="13300133000",
                loss_lat=SHANGHAI[0],
                loss_lon=SHANGHAI[1],
            ),
        )

        async def job() -> dict[str, Any] | None:
            r = await dispatch.client.get("/v1/jobs", params={"case_id": "C-900"}, headers=admin)
            jobs: list[dict[str, Any]] = r.json()
            return jobs[0] if jobs else None

        job_id = (await eventually(job, timeout=20))["job_id"]
        for step in ("ack", "en-route", "arrived", "complete"):
            r = await dispatch.client.post(
                f"/v1/jobs/{job_id}/{step}", json={}, headers=surveyor_headers
            )
            assert r.status_code == 200, (step, r.text)

        async def callback() -> dict[str, Any] | None:
            r = await complaints.client.get(f"/v1/callbacks/CB-{job_id}", headers=AGENT)
            return r.json() if r.status_code == 200 else None

        cb = await eventually(callback, timeout=20)
        assert cb["case_id"] == "C-900"
        assert cb["surveyor_id"] == surveyor["surveyor_id"]
        assert cb["insurer_code"] == "CPIC"
        assert cb["owner"] == "A003"
        work = (await complaints.client.get("/v1/worklist?owner=A003", headers=AGENT)).json()[
            "items"
        ]
        assert [(w["item_type"], w["item_id"]) for w in work] == [("callback", f"CB-{job_id}")]

        r = await complaints.client.post(
            f"/v1/callbacks/CB-{job_id}/attempts",
            json={
                "reached": True,
                "satisfaction": 1,
                "surveyor_rating": 1,
                "reasons": ["定损金额太低"],
                "open_complaint": {"category": "assessed_amount", "severity": "high"},
            },
            headers=AGENT,
        )
        assert r.status_code == 200, r.text
        v = await get(complaints.client, r.json()["complaint_id"])
        assert (v["surveyor_id"], v["insurer_code"], v["caller_phone"]) == (
            surveyor["surveyor_id"],
            "CPIC",
            "13300133000",
        )
