"""Automatic assignment from CaseReported on the intake topic (real broker, Postgres, HTTP)."""

from __future__ import annotations

import time

from claimdesk.settings import Settings
from claimdesk.testing.plugin import eventually
from dispatch.bootstrap import make_definition
from dispatch.policy import VERSION
from dispatch.settings import DispatchSettings

from tests.integration.dispatch.helpers import (
    SHANGHAI,
    add_surveyor,
    fake_intake,
    job_for_case,
)


async def test_case_reported_is_assigned_to_the_nearest_within_a_second(
    settings: Settings, start_service
) -> None:
    async with start_service(make_definition(DispatchSettings())) as svc:
        admin = svc.admin_headers()
        near = await add_surveyor(svc.client, admin, name="近", base_lat=SHANGHAI[0] + 0.005)
        far = await add_surveyor(svc.client, admin, name="远", base_lat=SHANGHAI[0] + 0.2)
        await add_surveyor(svc.client, admin, name="无技能", skills=["property"])
        async with fake_intake(settings) as intake:
            warm = await intake.report()  # the consumer group and relay are warm after this
            await eventually(lambda: job_for_case(svc.client, admin, warm), timeout=10)
            t0 = time.monotonic()
            case_id = await intake.report(plate="沪B54321")
            job = await eventually(lambda: job_for_case(svc.client, admin, case_id), timeout=10)
            elapsed = time.monotonic() - t0
        assert elapsed < 1.0, elapsed
        assert job["status"] == "assigned"
        assert job["surveyor_id"] == near["surveyor_id"]  # 1 open job of 3 still beats 20 km
        a = job["assignment"]
        assert a["policy_version"] == VERSION
        assert near["surveyor_id"] in a["reason"]
        ids = [c["surveyor_id"] for c in a["candidates"]]
        assert ids[0] == near["surveyor_id"] and far["surveyor_id"] in ids
        scores = {c["surveyor_id"]: c for c in a["candidates"]}
        assert scores[near["surveyor_id"]]["score"] > scores[far["surveyor_id"]]["score"]
        excluded = [c for c in a["candidates"] if c["excluded"]]
        assert excluded and "lacks skill vehicle" in excluded[0]["excluded"]
        types = [t["event_type"] for t in job["timeline"]]
        assert types[:2] == ["JobOpened", "SurveyorAssigned"]
        assert job["plate"] == "沪B54321"


async def test_no_suitable_surveyor_queues_the_job_with_the_reason(
    settings: Settings, start_service
) -> None:
    async with start_service(make_definition(DispatchSettings())) as svc:
        admin = svc.admin_headers()
        await add_surveyor(svc.client, admin, skills=["property"])
        async with fake_intake(settings) as intake:
            case_id = await intake.report(loss_type="injury")
            job = await eventually(lambda: job_for_case(svc.client, admin, case_id), timeout=10)
        assert job["status"] == "queued"
        assert job["queue"]["kind"] == "no_candidate"
        assert "lacks skill injury" in job["queue"]["reason"]
        q = (await svc.client.get("/v1/dispatch/queue", headers=admin)).json()
        assert [j["case_id"] for j in q["queued"]] == [case_id]
