"""Phone channel: first-contact ownership, consultations, handovers, duplicates, discrepancies,
required documents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from claimdesk.events.intake import (
    ConsultationLogged,
    DiscrepancyRecorded,
    DiscrepancyResolved,
    DocumentReceived,
    DuplicateCaseLinked,
    OwnershipHandedOver,
)
from intake.bootstrap import DEFINITION

from tests.integration.intake.helpers import (
    add_insurer,
    add_staff,
    bearer,
    case_body,
    phone_body,
)


async def _events(svc, stream: str):  # type: ignore[no-untyped-def]
    async with svc.runtime.pool.acquire() as conn:
        return [e.payload for e in await svc.runtime.store.read_stream(conn, stream)]


async def test_phone_report_consultation_and_handover(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        c = svc.client
        await add_insurer(c, "PICC")
        agent = await add_staff(c, "A001", "agent")
        other_agent = await add_staff(c, "A002", "agent")
        lead = await add_staff(c, "T001", "team_lead")
        await add_staff(c, "S001", "supervisor")
        body = phone_body("PICC", plate="沪E77777")
        r = await c.post(
            "/v1/phone-reports",
            json=body,
            headers={**bearer(agent), "Idempotency-Key": "call-0001-x"},
        )
        assert r.status_code == 201, r.text
        case = r.json()["case"]
        assert case["channel"] == "phone" and case["first_contact_owner"] == "A001"
        assert case["caller_name"] == "张伟" and case["caller_phone"] == "13812345678"
        assert case["callback_promised_at"] is not None
        again = await c.post(
            "/v1/phone-reports",
            json=body,
            headers={**bearer(agent), "Idempotency-Key": "call-0001-x"},
        )
        assert (again.status_code, again.json()["case_id"]) == (200, case["case_id"])
        bad = await c.post(
            "/v1/phone-reports",
            json={**phone_body("NOPE"), "caller_phone": "555"},
            headers=bearer(agent),
        )
        assert bad.status_code == 422
        assert {f["field"] for f in bad.json()["fields"]} == {"caller_phone"}
        bad = await c.post("/v1/phone-reports", json=phone_body("NOPE"), headers=bearer(agent))
        assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "insurer_code"
        missing = {k: v for k, v in body.items() if k != "callback_promised_at"}
        bad = await c.post("/v1/phone-reports", json=missing, headers=bearer(agent))
        assert bad.json()["fields"][0]["field"] == "callback_promised_at"

        # ownership moves only by explicit handover to a named, active person with a reason
        cid = case["case_id"]
        r = await c.post(
            f"/v1/cases/{cid}/handover",
            json={"to_owner": "A001", "reason": "我接手"},
            headers=bearer(other_agent),
        )
        assert r.status_code == 403
        r = await c.post(
            f"/v1/cases/{cid}/handover",
            json={"to_owner": "Z999", "reason": "移交"},
            headers=bearer(agent),
        )
        assert r.status_code == 422 and r.json()["fields"][0]["field"] == "to_owner"
        r = await c.post(
            f"/v1/cases/{cid}/handover", json={"to_owner": "S001"}, headers=bearer(agent)
        )
        assert r.status_code == 422 and r.json()["fields"][0]["field"] == "reason"
        r = await c.post(
            f"/v1/cases/{cid}/handover",
            json={"to_owner": "S001", "reason": "涉及人伤争议,移交主管"},
            headers=bearer(agent),
        )
        assert r.status_code == 200 and r.json()["owner"] == "S001"
        events = await _events(svc, f"case-{cid}")
        ho = events[-1]
        assert isinstance(ho, OwnershipHandedOver)
        assert (ho.from_owner, ho.to_owner, ho.reason) == ("A001", "S001", "涉及人伤争议,移交主管")
        case = (await c.get(f"/v1/cases/{cid}", headers=bearer(lead))).json()
        assert case["first_contact_owner"] == "S001"
        mine = (await c.get("/v1/cases?owner=S001", headers=bearer(lead))).json()["items"]
        assert [i["case_id"] for i in mine] == [cid]
        assert (await c.get("/v1/cases?owner=A001", headers=bearer(lead))).json()["items"] == []
        # the former owner can no longer hand it over; a team lead can
        r = await c.post(
            f"/v1/cases/{cid}/handover",
            json={"to_owner": "A002", "reason": "退回"},
            headers=bearer(agent),
        )
        assert r.status_code == 403
        r = await c.post(
            f"/v1/cases/{cid}/handover",
            json={"to_owner": "A002", "reason": "组长指派"},
            headers=bearer(lead),
        )
        assert r.status_code == 200

        # consultations: resolved, or a named follow-up owner and due time
        resolved = {
            "caller_name": "李娜",
            "caller_phone": "13900001111",
            "topic": "车损险理赔需要哪些单证",
            "answer": "已告知",
            "resolved": True,
        }
        r = await c.post("/v1/consultations", json=resolved, headers=bearer(agent))
        assert r.status_code == 201, r.text
        q = r.json()
        assert q["agent"] == "A001" and q["owner"] == "A001" and q["resolved"] is True
        r = await c.post(
            "/v1/consultations", json={**resolved, "resolved": False}, headers=bearer(agent)
        )
        assert r.status_code == 422
        assert {f["field"] for f in r.json()["fields"]} == {"follow_up_owner", "follow_up_due"}
        due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        r = await c.post(
            "/v1/consultations",
            json={**resolved, "resolved": False, "follow_up_owner": "Q000", "follow_up_due": due},
            headers=bearer(agent),
        )
        assert r.status_code == 422 and r.json()["fields"][0]["field"] == "follow_up_owner"
        r = await c.post(
            "/v1/consultations",
            json={
                **resolved,
                "resolved": False,
                "follow_up_owner": "S001",
                "follow_up_due": due,
                "case_id": cid,
            },
            headers=bearer(agent),
        )
        assert r.status_code == 201
        qid = r.json()["consultation_id"]
        logged = (await _events(svc, f"consultation-{qid}"))[0]
        assert isinstance(logged, ConsultationLogged)
        assert (logged.follow_up_owner, logged.case_id, logged.resolved) == ("S001", cid, False)
        r = await c.post(
            f"/v1/consultations/{qid}/handover",
            json={"to_owner": "T001", "reason": "转组长跟进"},
            headers=bearer(agent),
        )
        assert r.status_code == 200
        assert (await c.get(f"/v1/consultations/{qid}", headers=bearer(lead))).json()[
            "owner"
        ] == "T001"
        assert isinstance((await _events(svc, f"consultation-{qid}"))[-1], OwnershipHandedOver)
        open_items = (
            await c.get("/v1/consultations?owner=T001&resolved=false", headers=bearer(lead))
        ).json()
        assert [q["consultation_id"] for q in open_items] == [qid]
        assert len((await c.get("/v1/consultations", headers=bearer(lead))).json()) == 2


async def test_duplicates_are_linked_and_discrepancies_registered(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        c = svc.client
        picc = await add_insurer(c, "PICC")
        cpic = await add_insurer(c, "CPIC")
        agent = await add_staff(c, "A001", "agent")
        manager = await add_staff(c, "M001", "manager")
        t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        phone = phone_body(
            "PICC",
            plate="沪F66666",
            loss_time=t.isoformat(),
            loss_address="上海市浦东新区世纪大道100号",
            reporter_phone="13800000000",
        )
        p = (await c.post("/v1/phone-reports", json=phone, headers=bearer(agent))).json()
        # the insurer posts the same loss 10 minutes apart in time, with a different address
        post = case_body(
            plate="沪F66666",
            loss_time=(t + timedelta(minutes=10)).isoformat(),
            loss_address="上海市浦东新区世纪大道1000号",
            reporter_phone="13800000000",
        )
        r = await c.post("/v1/cases", json=post, headers=bearer(picc))
        assert r.status_code == 201
        ins = r.json()["case"]
        assert ins["duplicate_of"] == p["case_id"]  # linked, not merged: two cases
        assert ins["case_id"] != p["case_id"]
        events = await _events(svc, f"case-{ins['case_id']}")
        links = [e for e in events if isinstance(e, DuplicateCaseLinked)]
        assert links[0].duplicate_of == p["case_id"] and links[0].matched_on == [
            "plate",
            "loss_time",
        ]
        recorded = {e.field: e for e in events if isinstance(e, DiscrepancyRecorded)}
        assert set(recorded) == {"loss_time", "loss_address"}
        assert recorded["loss_address"].phone_value == "上海市浦东新区世纪大道100号"
        assert recorded["loss_address"].insurer_value == "上海市浦东新区世纪大道1000号"
        assert recorded["loss_address"].agent == "A001"

        # another insurer with the same plate and time: linked, no discrepancies
        other = (await c.post("/v1/cases", json=post, headers=bearer(cpic))).json()["case"]
        assert other["duplicate_of"] == p["case_id"]
        # outside the window: not linked
        far = case_body(plate="沪F66666", loss_time=(t - timedelta(days=1)).isoformat())
        assert (await c.post("/v1/cases", json=far, headers=bearer(cpic))).json()["case"][
            "duplicate_of"
        ] is None

        reg = await c.get("/v1/discrepancies?status=open", headers=bearer(manager))
        assert reg.status_code == 200
        assert sorted(d["field"] for d in reg.json()) == ["loss_address", "loss_time"]
        assert all(d["phone_case_id"] == p["case_id"] for d in reg.json())
        did = next(d["discrepancy_id"] for d in reg.json() if d["field"] == "loss_address")
        r = await c.post(
            f"/v1/discrepancies/{did}/resolve",
            json={"note": "以保险公司为准"},
            headers=bearer(agent),
        )
        assert r.status_code == 403
        r = await c.post(
            f"/v1/discrepancies/{did}/resolve",
            json={"note": "已与A001核对,以保险公司为准"},
            headers=bearer(manager),
        )
        assert r.status_code == 200 and r.json()["status"] == "resolved"
        assert r.json()["resolved_by"] == "manager:M001"
        r = await c.post(
            f"/v1/discrepancies/{did}/resolve", json={"note": "再次"}, headers=bearer(manager)
        )
        assert r.status_code == 409
        assert (
            await c.post(
                "/v1/discrepancies/nope/resolve", json={"note": "无此项"}, headers=bearer(manager)
            )
        ).status_code == 404
        events = await _events(svc, f"case-{ins['case_id']}")
        assert isinstance(events[-1], DiscrepancyResolved)
        left = (await c.get("/v1/discrepancies?status=open", headers=bearer(manager))).json()
        assert [d["field"] for d in left] == ["loss_time"]

        # the insurer's report number on a phone registration links too (other order)
        rn = case_body()["report_no"]
        first = (
            await c.post(
                "/v1/cases",
                json=case_body(report_no=rn, plate="沪G11111", insured_name="王五"),
                headers=bearer(picc),
            )
        ).json()
        ph = phone_body("PICC", report_no=rn, plate="沪G11112", insured_name="王五")
        second = (await c.post("/v1/phone-reports", json=ph, headers=bearer(agent))).json()["case"]
        assert second["duplicate_of"] == first["case_id"]
        fields = {
            d["field"]
            for d in (
                await c.get(
                    f"/v1/discrepancies?case_id={first['case_id']}", headers=bearer(manager)
                )
            ).json()
        }
        assert fields == {"plate"}


async def test_required_documents_per_insurer_and_loss_type(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        c = svc.client
        picc = await add_insurer(c, "PICC")
        pingan = await add_insurer(c, "PINGAN")
        agent = await add_staff(c, "A001", "agent")
        manager = await add_staff(c, "M001", "manager")
        a = (await c.post("/v1/cases", json=case_body(), headers=bearer(picc))).json()["case"]
        b = (await c.post("/v1/cases", json=case_body(), headers=bearer(pingan))).json()["case"]
        assert "payee_bank_account" in a["missing_documents"]
        assert "insured_id_card" in b["missing_documents"]
        assert a["missing_documents"] != b["missing_documents"]

        code = a["missing_documents"][0]
        r = await c.post(
            f"/v1/cases/{a['case_id']}/documents/{code}/received", json={}, headers=bearer(agent)
        )
        assert r.status_code == 200
        assert code not in r.json()["missing_documents"]
        doc = next(d for d in r.json()["documents"] if d["code"] == code)
        assert doc["received"] and doc["received_by"] == "agent:A001"
        again = await c.post(
            f"/v1/cases/{a['case_id']}/documents/{code}/received", headers=bearer(agent)
        )
        assert again.status_code == 200  # idempotent: no second event
        events = await _events(svc, f"case-{a['case_id']}")
        assert sum(isinstance(e, DocumentReceived) for e in events) == 1
        r = await c.post(
            f"/v1/cases/{a['case_id']}/documents/passport/received", headers=bearer(agent)
        )
        assert r.status_code == 404

        # configure PICC's own-damage checklist; new cases follow it
        items = [
            {"code": "claim_form", "name": "索赔申请书"},
            {"code": "tow_invoice", "name": "施救费发票"},
        ]
        r = await c.put(
            "/v1/document-checklists/PICC/vehicle_own_damage",
            json={"items": items},
            headers=bearer(manager),
        )
        assert r.status_code == 200
        got = (
            await c.get("/v1/document-checklists/PICC/vehicle_own_damage", headers=bearer(picc))
        ).json()
        assert got["source"] == "configured" and [i["code"] for i in got["items"]] == [
            "claim_form",
            "tow_invoice",
        ]
        fresh = (await c.post("/v1/cases", json=case_body(), headers=bearer(picc))).json()["case"]
        assert fresh["missing_documents"] == ["claim_form", "tow_invoice"]
        dup = [{"code": "x_1", "name": "甲甲"}, {"code": "x_1", "name": "乙乙"}]
        r = await c.put(
            "/v1/document-checklists/PICC/injury", json={"items": dup}, headers=bearer(manager)
        )
        assert r.status_code == 422
        r = await c.put(
            "/v1/document-checklists/NOPE/injury", json={"items": items}, headers=bearer(manager)
        )
        assert r.status_code == 404
        default = (
            await c.get("/v1/document-checklists/CPIC/property", headers=bearer(manager))
        ).json()
        assert default["source"] == "default" and "police_report" in [
            i["code"] for i in default["items"]
        ]
