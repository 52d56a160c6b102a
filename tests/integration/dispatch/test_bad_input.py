"""Every bad input is a clear 4xx with the reason, never a 500."""

from __future__ import annotations

from claimdesk.settings import Settings
from claimdesk.testing.plugin import eventually
from dispatch.bootstrap import make_definition
from dispatch.settings import DispatchSettings

from tests.integration.dispatch.helpers import add_surveyor, bearer, fake_intake, job_for_case


async def test_bad_requests_get_4xx_with_reasons(settings: Settings, start_service) -> None:
    async with start_service(make_definition(DispatchSettings())) as svc:
        admin = svc.admin_headers()
        s = await add_surveyor(svc.client, admin)
        gone = await add_surveyor(svc.client, admin, name="退休")
        await svc.client.post(
            f"/v1/surveyors/{gone['surveyor_id']}/retire", json={"reason": "x"}, headers=admin
        )
        async with fake_intake(settings) as intake:
            case_id = await intake.report()
            job = await eventually(lambda: job_for_case(svc.client, admin, case_id))
        jid, sid = job["job_id"], s["surveyor_id"]
        other = await add_surveyor(svc.client, admin, name="旁人")  # after the assignment
        c = svc.client
        checks = [
            (await c.post("/v1/jobs/J-none/ack", headers=admin), 404, "no job"),
            (await c.post(f"/v1/jobs/{jid}/complete", json={"loss_estimate": "abc"}, headers=admin), 422, "loss_estimate"),
            (await c.post(f"/v1/jobs/{jid}/complete", json={"nope": 1}, headers=admin), 422, "nope"),
            (await c.post(f"/v1/jobs/{jid}/assign", json={"surveyor_id": "S-X", "reason": "r"}, headers=admin), 404, "no surveyor"),
            (await c.post(f"/v1/jobs/{jid}/assign", json={"surveyor_id": gone["surveyor_id"], "reason": "r"}, headers=admin), 409, "retired"),
            (await c.post(f"/v1/jobs/{jid}/assign", json={"surveyor_id": sid, "reason": "r"}, headers=admin), 409, "already assigned"),
            (await c.post(f"/v1/jobs/{jid}/assign", json={"surveyor_id": sid, "reason": ""}, headers=admin), 422, "reason"),
            (await c.post(f"/v1/jobs/{jid}/assign", json={"surveyor_id": sid, "reason": "r"}, headers=bearer(s["token"])), 403, "surveyor"),
            (await c.get("/v1/surveyors/S-X/jobs/stream", headers=admin), 404, "no surveyor"),
            (await c.get(f"/v1/surveyors/{sid}/jobs/stream", headers={**admin, "Last-Event-ID": "abc"}), 422, "Last-Event-ID"),
            (await c.get(f"/v1/surveyors/{sid}/jobs/stream", params={"last_event_id": -1}, headers=admin), 422, "last_event_id"),
            (await c.put("/v1/dispatch/ack-timeouts", json={"default_s": 60, "by_priority": {"weird": 5}}, headers=admin), 422, "by_priority"),
            (await c.put("/v1/dispatch/ack-timeouts", json={"default_s": 60, "by_insurer": {"PICC": 0}}, headers=admin), 422, "between"),
            (await c.post(f"/v1/surveyors/{sid}/shift/pause", headers=admin), 422, "action"),
            (await c.post(f"/v1/surveyors/{sid}/location", content=b"lat=1", headers={**admin, "Content-Type": "text/plain"}), 415, "application/json"),
            (await c.post(f"/v1/surveyors/{sid}/location", json={"lat": 91, "lon": 0}, headers=admin), 422, "lat"),
            (await c.get("/v1/jobs", headers={"Authorization": "Bearer garbage"}), 401, "invalid token"),
            (await c.get("/v1/jobs", params={"limit": 0}, headers=admin), 422, "limit"),
            (await c.delete("/v1/teams/nobody/webhook", headers=admin), 404, "no webhook"),
            (await c.post(f"/v1/jobs/{jid}/decline", json={"reason": "x"}, headers=bearer(other["token"])), 403, "not assigned to you"),
            (await c.post(f"/v1/jobs/{jid}/decline", json={"reason": "x"}, headers=bearer(gone["token"])), 401, "surveyor retired"),
        ]  # fmt: skip
        for r, status, needle in checks:
            assert r.status_code == status, (r.request.method, r.request.url, r.text)
            assert needle.lower() in r.text.lower(), (needle, r.text)
        r = await c.patch(
            f"/v1/surveyors/{sid}", json={"base_lat": 31.3, "base_lon": 121.6}, headers=admin
        )
        assert r.status_code == 200 and (r.json()["base_lat"], r.json()["lat"]) == (31.3, 31.3)
