"""Odd input never reaches a 500: control characters, extreme dates, odd paths and queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from intake.bootstrap import DEFINITION

from tests.integration.intake.helpers import add_insurer, add_staff, bearer, case_body, phone_body


async def test_odd_input_is_a_clear_4xx(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        c = svc.client
        key = await add_insurer(c, "PICC")
        agent = await add_staff(c, "A001", "agent")
        manager = await add_staff(c, "M001", "manager")
        cid = (await c.post("/v1/cases", json=case_body(), headers=bearer(key))).json()["case_id"]
        past = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
        bodies = [
            case_body(description="a\u0000b"),
            case_body(loss_address="上海市\u0000浦东新区"),
            case_body(loss_time="0001-01-01T00:00:00+14:00"),
            case_body(loss_time="9999-12-31T23:59:59-14:00"),
            case_body(loss_time="2026-02-30T08:00:00+08:00"),
            case_body(loss_lat=1e308, loss_lon=-1e308),
            case_body(plate=12345),
            case_body(injuries=None),
            case_body(description=None),
            case_body(report_no={"a": 1}),
            {"report_no": "R0001"},
            {},
        ]
        for body in bodies:
            r = await c.post("/v1/cases", json=body, headers=bearer(key))
            assert r.status_code == 422, (body, r.status_code, r.text)
            assert r.json()["fields"], r.text
        r = await c.post(
            "/v1/cases",
            content=b'{"report_no": "R\\u0000", "loss_lat": NaN}',
            headers={**bearer(key), "content-type": "application/json"},
        )
        assert r.status_code == 422
        r = await c.post(
            "/v1/cases",
            content="\xff\xfe".encode("latin-1"),
            headers={**bearer(key), "content-type": "application/json"},
        )
        assert r.status_code == 422
        r = await c.post(
            "/v1/phone-reports",
            json=phone_body("PICC", callback_promised_at=past),
            headers=bearer(agent),
        )
        assert r.status_code == 422 and r.json()["fields"][0]["field"] == "callback_promised_at"
        r = await c.post(
            "/v1/webhooks",
            json={"url": "http://x\u0000y", "events": ["case.closed"]},
            headers=bearer(key),
        )
        assert r.status_code == 422
        r = await c.post(
            f"/v1/cases/{cid}/corrections",
            json={"changes": {"description": "x\u0000"}, "reason": "测试一下"},
            headers=bearer(agent),
        )
        assert r.status_code == 422
        r = await c.post(
            f"/v1/cases/{cid}/corrections",
            json={"changes": [1], "reason": "测试一下"},
            headers=bearer(agent),
        )
        assert r.status_code == 422
        for path in [
            "/v1/cases/%00",
            "/v1/cases/" + "C" * 41,
            "/v1/cases?plate=%00",
            "/v1/cases?report_no=%00",
            "/v1/cases?from=0001-01-01T00:00:00%2B14:00",
            "/v1/cases?to=9999-12-31T00:00:00",
            "/v1/discrepancies?case_id=%00",
            "/v1/discrepancies?status=closed",
        ]:
            r = await c.get(path, headers=bearer(manager))
            assert r.status_code == 422, (path, r.status_code, r.text)
        assert (await c.get("/v1/cases/C-nope", headers=bearer(manager))).status_code == 404
        naive = await c.get(
            "/v1/cases?from=2026-01-01T00:00:00&to=2099-01-01", headers=bearer(manager)
        )
        assert naive.status_code == 200 and len(naive.json()["items"]) == 1
        r = await c.post(
            "/v1/cases/%00/cancellation", json={"reason": "撤案测试"}, headers=bearer(agent)
        )
        assert r.status_code == 422
        r = await c.post("/v1/admin/staff/%00/revoke", headers={"Authorization": "Bearer x"})
        assert r.status_code in (401, 422)
        r = await c.get("/v1/cases", headers={"Authorization": b"Bearer cdk_\xe9"})
        assert r.status_code == 401
