"""Reading with filters and cursors, corrections, cancellation, status following dispatch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from claimdesk.events.intake import CaseCancelled, CaseDetailsCorrected
from claimdesk.settings import Settings
from claimdesk.testing.plugin import eventually
from intake.bootstrap import DEFINITION

from tests.integration.intake.helpers import (
    add_insurer,
    add_staff,
    assigned,
    bearer,
    case_body,
    publish_dispatch,
    step,
)


async def test_list_filters_and_cursor_pagination(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        c = svc.client
        picc = await add_insurer(c, "PICC")
        cpic = await add_insurer(c, "CPIC")
        manager = await add_staff(c, "M001", "manager")
        ids = []
        for n in range(7):
            r = await c.post("/v1/cases", json=case_body(plate=f"沪B1234{n}"), headers=bearer(picc))
            ids.append(r.json()["case_id"])
        other = (
            await c.post("/v1/cases", json=case_body(plate="沪C00001"), headers=bearer(cpic))
        ).json()
        seen, cursor = [], None
        while True:
            url = "/v1/cases?limit=3" + (f"&cursor={cursor}" if cursor else "")
            page = (await c.get(url, headers=bearer(picc))).json()
            seen += [i["case_id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == list(reversed(ids))  # newest first, no gaps, no repeats, own only
        all_staff = (await c.get("/v1/cases?limit=100", headers=bearer(manager))).json()["items"]
        assert {i["case_id"] for i in all_staff} == {*ids, other["case_id"]}
        by_plate = (await c.get("/v1/cases?plate=沪b12343", headers=bearer(manager))).json()
        assert [i["case_id"] for i in by_plate["items"]] == [ids[3]]
        assert (await c.get("/v1/cases?plate=沪C00001", headers=bearer(picc))).json()["items"] == []
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        r = await c.get("/v1/cases", params={"from": future}, headers=bearer(manager))
        assert r.json()["items"] == []
        r = await c.get("/v1/cases", params={"to": future, "limit": 200}, headers=bearer(manager))
        assert len(r.json()["items"]) == 8
        r = await c.get("/v1/cases?status=cancelled", headers=bearer(manager))
        assert r.json()["items"] == []
        assert (await c.get("/v1/cases?status=lost", headers=bearer(manager))).status_code == 422
        assert (await c.get("/v1/cases?cursor=!!", headers=bearer(manager))).status_code == 422
        assert (await c.get("/v1/cases?limit=0", headers=bearer(manager))).status_code == 422
        assert (await c.get("/v1/cases?from=soon", headers=bearer(manager))).status_code == 422


async def test_corrections_and_cancellation(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        c = svc.client
        picc = await add_insurer(c, "PICC")
        agent = await add_staff(c, "A001", "agent")
        case = (await c.post("/v1/cases", json=case_body(), headers=bearer(picc))).json()["case"]
        cid = case["case_id"]
        r = await c.post(
            f"/v1/cases/{cid}/corrections",
            json={
                "changes": {"loss_address": "上海市徐汇区漕溪北路88号", "plate": "沪a 54321"},
                "reason": "报案人更正地址和车牌",
            },
            headers=bearer(agent),
        )
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["plate"] == "沪A54321"
        assert out["loss_address"] == "上海市徐汇区漕溪北路88号"
        assert out["version"] == case["version"] + 1
        async with svc.runtime.pool.acquire() as conn:
            events = await svc.runtime.store.read_stream(conn, f"case-{cid}")
        corr = events[-1].payload
        assert isinstance(corr, CaseDetailsCorrected)
        assert corr.corrected_by == "agent:A001" and corr.reason == "报案人更正地址和车牌"
        assert corr.previous["plate"] == "沪A12345"
        assert corr.changes["plate"] == "沪A54321"
        # the region followed the address only when the region was derived... both are stored
        assert "region" in corr.changes

        bad = await c.post(
            f"/v1/cases/{cid}/corrections",
            json={"changes": {"plate": "ABC", "reporter_phone": "123"}, "reason": "测试"},
            headers=bearer(agent),
        )
        assert bad.status_code == 422
        assert {f["field"] for f in bad.json()["fields"]} == {
            "changes.plate",
            "changes.reporter_phone",
        }
        bad = await c.post(
            f"/v1/cases/{cid}/corrections",
            json={"changes": {"case_id": "X", "channel": "phone"}, "reason": "测试"},
            headers=bearer(agent),
        )
        assert bad.status_code == 422
        assert "case_id" in bad.json()["message"]
        future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        bad = await c.post(
            f"/v1/cases/{cid}/corrections",
            json={"changes": {"loss_time": future}, "reason": "测试"},
            headers=bearer(agent),
        )
        assert bad.status_code == 422
        assert bad.json()["fields"][0]["field"] == "changes.loss_time"
        assert (
            await c.post(
                f"/v1/cases/{cid}/corrections",
                json={"changes": {}, "reason": "x1"},
                headers=bearer(agent),
            )
        ).status_code == 422

        r = await c.post(
            f"/v1/cases/{cid}/cancellation", json={"reason": "客户撤案"}, headers=bearer(picc)
        )
        assert r.status_code == 200
        assert r.json()["status"] == "cancelled" and r.json()["cancel_reason"] == "客户撤案"
        r = await c.post(
            f"/v1/cases/{cid}/corrections",
            json={"changes": {"description": "补充"}, "reason": "补充说明"},
            headers=bearer(agent),
        )
        assert r.status_code == 409
        assert "cancelled" in r.json()["message"]
        assert r.json()["details"]["state"] == "cancelled"
        r = await c.post(
            f"/v1/cases/{cid}/cancellation", json={"reason": "再次撤案"}, headers=bearer(agent)
        )
        assert r.status_code == 409
        async with svc.runtime.pool.acquire() as conn:
            events = await svc.runtime.store.read_stream(conn, f"case-{cid}")
        assert isinstance(events[-1].payload, CaseCancelled)
        assert events[-1].payload.cancelled_by == "insurer:PICC"
        listed = (await c.get("/v1/cases?status=cancelled", headers=bearer(agent))).json()
        assert [i["case_id"] for i in listed["items"]] == [cid]


async def test_status_follows_dispatch_events(settings: Settings, start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        c = svc.client
        picc = await add_insurer(c, "PICC")
        cid = (await c.post("/v1/cases", json=case_body(), headers=bearer(picc))).json()["case_id"]

        async def status() -> str:
            return (await c.get(f"/v1/cases/{cid}", headers=bearer(picc))).json()["status"]

        await publish_dispatch(settings, [assigned(cid, "SV042")])
        await eventually(lambda: _is(status, "assigned"), timeout=15)
        case = (await c.get(f"/v1/cases/{cid}", headers=bearer(picc))).json()
        assert case["surveyor_id"] == "SV042"
        await publish_dispatch(settings, [step("arrived", cid), step("completed", cid)])
        await eventually(lambda: _is(status, "survey_completed"), timeout=15)
        # a late, older step never moves the status backwards
        await publish_dispatch(settings, [step("arrived", cid), step("closed", cid)])
        await eventually(lambda: _is(status, "closed"), timeout=15)
        r = await c.post(
            f"/v1/cases/{cid}/corrections",
            json={"changes": {"description": "补充"}, "reason": "补充说明"},
            headers=bearer(picc),
        )
        assert r.status_code == 409 and "closed" in r.json()["message"]


async def _is(fn, value):  # type: ignore[no-untyped-def]
    return await fn() == value
