"""Receipt and the timeout ladder with stored deadlines (manual clock, real timers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from claimdesk.clock import ManualClock
from claimdesk.settings import Settings
from claimdesk.testing.plugin import eventually
from dispatch.bootstrap import make_definition
from dispatch.settings import DispatchSettings

from tests.integration.dispatch.helpers import (
    SHANGHAI,
    add_surveyor,
    bearer,
    fake_intake,
    job_for_case,
)

# tokens are issued on the service clock and verified on the real one: start just before now
START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


async def _status(svc, case_id: str, want: str, surveyor: str | None = None):  # type: ignore[no-untyped-def]
    job = await job_for_case(svc.client, svc.admin_headers(), case_id)
    if job and job["status"] == want and (surveyor is None or job["surveyor_id"] == surveyor):
        return job
    return None


async def test_ladder_reassigns_on_timeout_then_calls_the_team(
    settings: Settings, start_service
) -> None:
    clock = ManualClock(START)
    defn = make_definition(DispatchSettings(max_attempts=3))
    async with start_service(defn, clock=clock) as svc, fake_intake(settings) as intake:
        admin = svc.admin_headers()
        a = await add_surveyor(svc.client, admin, name="A", base_lat=SHANGHAI[0] + 0.001)
        b = await add_surveyor(svc.client, admin, name="B", base_lat=SHANGHAI[0] + 0.02)
        c = await add_surveyor(svc.client, admin, name="C", base_lat=SHANGHAI[0] + 0.05)
        case_id = await intake.report()
        job = await eventually(lambda: _status(svc, case_id, "assigned", a["surveyor_id"]))
        assert job["ack_due_at"] == (START + timedelta(seconds=300)).isoformat()
        clock.advance(301)
        job = await eventually(lambda: _status(svc, case_id, "assigned", b["surveyor_id"]))
        steps = [t for t in job["timeline"] if t["event_type"] != "JobNotified"]
        assert [t["event_type"] for t in steps[-2:]] == ["AssignmentTimedOut", "SurveyorReassigned"]
        moved = steps[-1]
        assert moved["from_surveyor_id"] == a["surveyor_id"] and "timed out" in moved["reason"]
        assert job["attempt"] == 2
        # A acknowledges late: 409 saying the job moved
        r = await svc.client.post(f"/v1/jobs/{job['job_id']}/ack", headers=bearer(a["token"]))
        assert r.status_code == 409 and "moved" in r.json()["message"]
        clock.advance(301)
        await eventually(lambda: _status(svc, case_id, "assigned", c["surveyor_id"]))
        clock.advance(301)
        job = await eventually(lambda: _status(svc, case_id, "queued"))
        assert job["queue"]["call_the_team"] is True and "call the team" in job["queue"]["reason"]
        q = (await svc.client.get("/v1/dispatch/queue", headers=admin)).json()
        assert q["queued"][0]["job_id"] == job["job_id"]
        r = await svc.client.post(f"/v1/jobs/{job['job_id']}/ack", headers=bearer(c["token"]))
        assert r.status_code == 409
        # the dispatcher phones the team and assigns by hand
        r = await svc.client.post(
            f"/v1/jobs/{job['job_id']}/assign",
            json={"surveyor_id": b["surveyor_id"], "reason": "phoned 浦东一组, B confirmed"},
            headers=admin,
        )
        assert r.status_code == 200 and r.json()["status"] == "assigned"
        last = [t for t in r.json()["timeline"] if t["event_type"] == "SurveyorReassigned"][-1]
        assert last["assigned_by"] == "admin:admin" and last["reason"].startswith("phoned")
        r = await svc.client.post(f"/v1/jobs/{job['job_id']}/ack", headers=bearer(b["token"]))
        assert r.status_code == 200 and r.json()["status"] == "acknowledged"


async def test_ack_stops_the_deadline_and_decline_moves_on(
    settings: Settings, start_service
) -> None:
    clock = ManualClock(START)
    async with start_service(make_definition(DispatchSettings()), clock=clock) as svc:
        admin = svc.admin_headers()
        a = await add_surveyor(svc.client, admin, name="A", base_lat=SHANGHAI[0] + 0.001)
        b = await add_surveyor(svc.client, admin, name="B", base_lat=SHANGHAI[0] + 0.02)
        async with fake_intake(settings) as intake:
            c1 = await intake.report()
            c2 = await intake.report()
            # two partitions: either case may be decided first, so either may go to A
            j1 = await eventually(lambda: _status(svc, c1, "assigned"))
            j2 = await eventually(lambda: _status(svc, c2, "assigned"))
        h1 = a if j1["surveyor_id"] == a["surveyor_id"] else b
        r = await svc.client.post(f"/v1/jobs/{j1['job_id']}/ack", headers=bearer(h1["token"]))
        assert r.status_code == 200 and r.json()["ack_due_at"] is None
        r = await svc.client.post(f"/v1/jobs/{j1['job_id']}/ack", headers=bearer(h1["token"]))
        assert r.status_code == 409 and r.json()["details"]["allowed"] == [
            "en-route",
            "assign",
            "cancel",
        ]
        holder = a if j2["surveyor_id"] == a["surveyor_id"] else b
        other = b if holder is a else a
        r = await svc.client.post(
            f"/v1/jobs/{j2['job_id']}/decline", json={"reason": ""}, headers=bearer(holder["token"])
        )
        assert r.status_code == 422
        r = await svc.client.post(
            f"/v1/jobs/{j2['job_id']}/decline",
            json={"reason": "车坏了"},
            headers=bearer(holder["token"]),
        )
        assert r.status_code == 200, r.text
        assert r.json()["surveyor_id"] == other["surveyor_id"]
        moved = [t for t in r.json()["timeline"] if t["event_type"] == "SurveyorReassigned"]
        assert "declined by" in moved[-1]["reason"] and "车坏了" in moved[-1]["reason"]
        clock.advance(301)
        await eventually(lambda: _status(svc, c2, "queued"))  # the other timed out: nobody left
        job = await job_for_case(svc.client, admin, c1)
        assert job is not None and job["status"] == "acknowledged"  # no timeout after the ack
        q = (await svc.client.get("/v1/dispatch/queue", headers=admin)).json()
        assert q["queued"][0]["queue"]["kind"] == "timed_out"


async def test_deadlines_per_priority_and_insurer_and_survive_a_restart(
    settings: Settings, start_service
) -> None:
    clock = ManualClock(START)
    defn = make_definition(DispatchSettings())
    async with start_service(defn, clock=clock) as svc:
        admin = svc.admin_headers()
        r = await svc.client.put(
            "/v1/dispatch/ack-timeouts",
            json={"default_s": 200, "by_insurer": {"CPIC": 150}, "by_priority": {"urgent": 60}},
            headers=admin,
        )
        assert r.status_code == 200 and r.json()["by_priority"] == {"urgent": 60}
        bad = await svc.client.put(
            "/v1/dispatch/ack-timeouts", json={"default_s": -1}, headers=admin
        )
        assert bad.status_code == 422
        a = await add_surveyor(svc.client, admin, name="A", capacity=5)
        await add_surveyor(svc.client, admin, name="B", base_lat=SHANGHAI[0] + 0.3)
        async with fake_intake(settings) as intake:
            urgent = await intake.report(priority="urgent")
            cpic = await intake.report(insurer_code="CPIC")
            plain = await intake.report()
            ju = await eventually(lambda: _status(svc, urgent, "assigned"))
            jc = await eventually(lambda: _status(svc, cpic, "assigned"))
            jp = await eventually(lambda: _status(svc, plain, "assigned"))
        assert ju["ack_due_at"] == (START + timedelta(seconds=60)).isoformat()
        assert jc["ack_due_at"] == (START + timedelta(seconds=150)).isoformat()
        assert jp["ack_due_at"] == (START + timedelta(seconds=200)).isoformat()
    # down while the deadline passes; the stored timer fires after the restart
    clock.advance(201)
    async with start_service(defn, clock=clock) as svc:
        job = await eventually(lambda: _moved(svc, plain, jp["surveyor_id"]))
        assert job["attempt"] == 2 and job["status"] == "assigned"
    assert a["surveyor_id"]


async def _moved(svc, case_id: str, from_id: str):  # type: ignore[no-untyped-def]
    job = await job_for_case(svc.client, svc.admin_headers(), case_id)
    if job and job["attempt"] == 2 and job["surveyor_id"] != from_id:
        return job
    return None
