"""Surveyors and teams over real HTTP: register, token, edit, retire, availability, shifts."""

from __future__ import annotations

from claimdesk.auth import issue_token
from claimdesk.settings import Settings
from claimdesk.testing.plugin import TEST_SECRET
from dispatch.bootstrap import make_definition
from dispatch.settings import DispatchSettings

from tests.integration.dispatch.helpers import add_surveyor, bearer, surveyor_body


async def test_register_edit_retire_and_state_events(settings: Settings, start_service) -> None:
    async with start_service(make_definition(DispatchSettings())) as svc:
        admin = svc.admin_headers()
        created = await add_surveyor(
            svc.client, admin, shifts=[{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "20:00"}]
        )
        sid, token = created["surveyor_id"], created["token"]
        me = (await svc.client.get("/v1/me", headers=bearer(token))).json()
        assert me["role"] == "surveyor" and me["subject"] == sid
        # the surveyor may read and update themself, not others, and may not register anyone
        assert (
            await svc.client.get(f"/v1/surveyors/{sid}", headers=bearer(token))
        ).status_code == 200
        other = await add_surveyor(svc.client, admin, name="李四")
        r = await svc.client.get(f"/v1/surveyors/{other['surveyor_id']}", headers=bearer(token))
        assert r.status_code == 403
        r = await svc.client.post("/v1/surveyors", json=surveyor_body(), headers=bearer(token))
        assert r.status_code == 403
        r = await svc.client.post(
            f"/v1/surveyors/{sid}/availability", json={"available": False, "reason": "lunch"},
            headers=bearer(token),
        )  # fmt: skip
        assert r.status_code == 200 and r.json()["available"] is False
        r = await svc.client.post(f"/v1/surveyors/{sid}/shift/end", headers=bearer(token))
        assert r.json()["on_shift"] is False
        r = await svc.client.post(f"/v1/surveyors/{sid}/shift/start", headers=bearer(token))
        assert r.json()["on_shift"] is True
        r = await svc.client.post(
            f"/v1/surveyors/{sid}/location", json={"lat": 31.3, "lon": 121.5}, headers=bearer(token)
        )
        assert (r.json()["lat"], r.json()["lon"]) == (31.3, 121.5)
        r = await svc.client.patch(
            f"/v1/surveyors/{sid}",
            json={"capacity": 5, "skills": ["vehicle", "injury"]},
            headers=admin,
        )
        assert r.status_code == 200 and r.json()["capacity"] == 5
        assert r.json()["skills"] == ["vehicle", "injury"]
        dispatcher, _ = issue_token(
            TEST_SECRET, subject="D1", role="dispatcher", now=svc.runtime.clock.now(),
            ttl=__import__("datetime").timedelta(hours=1), number="D1",
        )  # fmt: skip
        r = await svc.client.post(
            f"/v1/surveyors/{sid}/retire", json={"reason": "left"}, headers=bearer(dispatcher)
        )
        assert r.status_code == 200 and r.json()["retired"] is True
        listed = (await svc.client.get("/v1/surveyors", headers=admin)).json()
        assert [s["surveyor_id"] for s in listed] == [other["surveyor_id"]]
        r = await svc.client.post(
            f"/v1/surveyors/{sid}/availability", json={"available": True}, headers=admin
        )
        assert r.status_code == 409
        async with svc.runtime.pool.acquire() as conn:
            types = await conn.fetch(
                "SELECT event_type FROM events WHERE stream_id = $1 ORDER BY sequence",
                f"surveyor-{sid}",
            )
        assert [t["event_type"] for t in types] == [
            "SurveyorRegistered", "SurveyorAvailabilityChanged", "SurveyorShiftEnded",
            "SurveyorShiftStarted", "SurveyorLocationUpdated", "SurveyorDetailsChanged",
            "SurveyorRetired",
        ]  # fmt: skip


async def test_bad_input_is_a_clear_4xx(settings: Settings, start_service) -> None:
    async with start_service(make_definition(DispatchSettings())) as svc:
        admin = svc.admin_headers()
        cases = [
            (surveyor_body(skills=["flying"]), "skills"),
            (surveyor_body(base_lat=120), "base_lat"),
            (surveyor_body(capacity=0), "capacity"),
            (surveyor_body(shifts=[{"start": "25:00", "end": "08:00"}]), "shifts"),
            (surveyor_body(phone="abc"), "phone"),
        ]
        for body, field in cases:
            r = await svc.client.post("/v1/surveyors", json=body, headers=admin)
            assert r.status_code == 422, (field, r.text)
            assert field in r.text
        assert (await svc.client.post("/v1/surveyors", json=surveyor_body())).status_code == 401
        r = await svc.client.patch("/v1/surveyors/S-NOPE", json={"capacity": 2}, headers=admin)
        assert r.status_code == 404
        r = await svc.client.patch("/v1/surveyors/S-NOPE", json={}, headers=admin)
        assert r.status_code == 422


async def test_demo_seeds_the_roster_once_and_writes_credentials(
    pg_url: str, kafka_bootstrap: str, names: dict[str, str], start_service
) -> None:
    from claimdesk.testing.plugin import make_settings

    demo = make_settings(pg_url, kafka_bootstrap, names, demo=True)
    definition = make_definition(DispatchSettings())
    for _ in range(2):  # a restart adds nobody
        async with start_service(definition, demo) as svc:
            listed = (await svc.client.get("/v1/surveyors", headers=svc.admin_headers())).json()
            assert len(listed) == 60
            assert len({s["team"] for s in listed}) == 8
            teams = (await svc.client.get("/v1/teams", headers=svc.admin_headers())).json()
            assert len(teams) == 8 and sum(t["surveyors"] for t in teams) == 60
            assert all(t["capacity"] == 3 * t["surveyors"] for t in teams)
    creds = (demo.data_dir / "credentials-dispatch.txt").read_text()
    assert "/board" in creds
    assert creds.count("surveyor S-DEMO-") == 5
    assert "(D001):" not in creds  # staff identities belong to intake
