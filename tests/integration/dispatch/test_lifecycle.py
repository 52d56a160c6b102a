"""The job lifecycle over HTTP, device times, the customer's text, dispatcher views, cancels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from claimdesk.events.intake import CaseCancelled, CaseDetailsCorrected
from claimdesk.settings import Settings
from claimdesk.testing.plugin import eventually
from dispatch.bootstrap import make_definition
from dispatch.settings import DispatchSettings

from tests.integration.dispatch.helpers import add_surveyor, bearer, fake_intake, job_for_case


async def test_steps_to_closed_with_device_times_and_customer_text(
    settings: Settings, start_service
) -> None:
    async with start_service(make_definition(DispatchSettings())) as svc:
        admin = svc.admin_headers()
        s = await add_surveyor(svc.client, admin, name="赵六", phone="13700000000")
        h = bearer(s["token"])
        async with fake_intake(settings) as intake:
            case_id = await intake.report(insured_name="张三", insured_phone="13811112222")
            job = await eventually(lambda: job_for_case(svc.client, admin, case_id))
        jid = job["job_id"]
        r = await svc.client.post(f"/v1/jobs/{jid}/arrived", headers=h)
        assert r.status_code == 409
        assert r.json()["details"]["allowed"] == ["ack", "decline", "assign", "cancel"]
        assert "allowed now" in r.json()["message"]
        # the phone lost signal: steps arrive late, each with the time it happened
        t_ack = (datetime.now(UTC) - timedelta(minutes=20)).replace(microsecond=0)
        t_arr = t_ack + timedelta(minutes=10)
        device = t_ack.astimezone(timezone(timedelta(hours=8))).isoformat()
        r = await svc.client.post(f"/v1/jobs/{jid}/ack", json={"device_time": device}, headers=h)
        assert r.status_code == 200, r.text
        r = await svc.client.post(f"/v1/jobs/{jid}/en-route", headers=h)
        assert r.json()["status"] == "en_route"
        r = await svc.client.post(
            f"/v1/jobs/{jid}/arrived",
            json={"device_time": t_arr.isoformat().replace("+00:00", "Z")},
            headers=h,
        )
        assert r.json()["status"] == "arrived"
        bad = await svc.client.post(f"/v1/jobs/{jid}/complete", json={"photo_count": -1}, headers=h)
        assert bad.status_code == 422
        naive = await svc.client.post(
            f"/v1/jobs/{jid}/complete", json={"device_time": "2026-11-26T08:00:00"}, headers=h
        )
        assert naive.status_code == 422 and "time zone" in naive.text
        r = await svc.client.post(
            f"/v1/jobs/{jid}/complete",
            json={"loss_estimate": 5200.5, "photo_count": 14, "notes": "前杠更换"},
            headers=h,
        )
        assert r.json()["status"] == "survey_completed"
        r = await svc.client.post(f"/v1/jobs/{jid}/close", headers=h)
        assert r.status_code == 200 and r.json()["status"] == "closed"
        assert r.json()["allowed_steps"] == []
        load = (await svc.client.get(f"/v1/surveyors/{s['surveyor_id']}", headers=admin)).json()
        assert (load["open_jobs"], load["assigned_today"]) == (0, 1)  # done, but counted today
        tl = {t["event_type"]: t for t in r.json()["timeline"]}
        ack = tl["JobAcknowledged"]
        assert ack["occurred_at"] == t_ack.isoformat()
        assert ack["recorded_at"] != ack["occurred_at"]  # receive time kept too
        assert tl["SurveyorArrived"]["occurred_at"] == t_arr.isoformat()
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        r = await svc.client.post(f"/v1/jobs/{jid}/close", json={"device_time": future}, headers=h)
        assert r.status_code == 422 and "future" in r.text
        done = tl["SurveyCompleted"]
        assert (done["loss_estimate"], done["photo_count"], done["notes"]) == (
            5200.5,
            14,
            "前杠更换",
        )
        assert tl["CaseClosed"]["closed_by"] == f"surveyor:{s['surveyor_id']}"
        # the customer got a text when the surveyor set off
        sms = await eventually(
            lambda: [m for m in svc.runtime.extras["sms"].sent if m[0] == "13811112222"]
        )
        assert "赵六" in sms[0][1] and "13700000000" in sms[0][1]
        # filters
        for params, n in [
            ({"case_id": case_id}, 1),
            ({"surveyor_id": s["surveyor_id"]}, 1),
            ({"status": "closed"}, 1),
            ({"status": "assigned"}, 0),
        ]:
            got = (await svc.client.get("/v1/jobs", params=params, headers=admin)).json()
            assert len(got) == n, params
        r = await svc.client.get("/v1/jobs", params={"status": "nonsense"}, headers=admin)
        assert r.status_code == 422
        assert (await svc.client.get("/v1/jobs/J-nope", headers=admin)).status_code == 404


async def test_cancelled_case_withdraws_the_job_and_corrections_update_it(
    settings: Settings, start_service
) -> None:
    async with start_service(make_definition(DispatchSettings())) as svc:
        admin = svc.admin_headers()
        s = await add_surveyor(svc.client, admin)
        async with fake_intake(settings) as intake:
            case_id = await intake.report(plate="沪E00001")
            await eventually(lambda: job_for_case(svc.client, admin, case_id))
            await intake.publish(
                f"case-{case_id}",
                [
                    CaseDetailsCorrected(
                        case_id=case_id,
                        changes={"plate": "沪E00002", "loss_address": "徐汇区漕溪北路 1 号"},
                        previous={"plate": "沪E00001"},
                        corrected_by="A001",
                        reason="typo",
                    )
                ],
            )
            job = await eventually(
                lambda: _with(svc, case_id, lambda j: j["plate"] == "沪E00002" and j)
            )
            assert job["loss_address"] == "徐汇区漕溪北路 1 号"
            await intake.publish(
                f"case-{case_id}",
                [CaseCancelled(case_id=case_id, reason="insurer withdrew", cancelled_by="PICC")],
            )
            job = await eventually(
                lambda: _with(svc, case_id, lambda j: j["status"] == "cancelled" and j)
            )
        r = await svc.client.post(f"/v1/jobs/{job['job_id']}/ack", headers=bearer(s["token"]))
        assert r.status_code == 409
        me = (await svc.client.get(f"/v1/surveyors/{s['surveyor_id']}", headers=admin)).json()
        assert me["open_jobs"] == 0  # the load is freed


async def _with(svc, case_id: str, pred):  # type: ignore[no-untyped-def]
    job = await job_for_case(svc.client, svc.admin_headers(), case_id)
    return pred(job) if job else None
