"""Callbacks from dispatch's SurveyCompleted, consultation follow-ups from intake, handover and
the worklist. Other services' events are appended to a store in their own schema and
published by a real OutboxRelay, exactly as those services do."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from claimdesk.events.intake import ConsultationLogged, OwnershipHandedOver
from claimdesk.testing.plugin import eventually
from complaints.bootstrap import make_definition
from complaints.callbacks import sample_point
from complaints.settings import ComplaintsSettings

from tests.integration.complaints.helpers import (
    AGENT,
    LEAD,
    auth,
    case_known,
    clock,
    file,
    get,
    producing,
    survey,
)
from tests.support import case_reported

CFG = ComplaintsSettings(
    callback_agents=["A001"], callback_delay_s=600, callback_retry_s=300, callback_max_attempts=3
)


async def callbacks(client: Any, **params: str) -> list[dict[str, Any]]:
    r = await client.get("/v1/callbacks", params=params, headers=AGENT)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_survey_completed_puts_a_callback_in_the_agents_queue(
    start_service, settings
) -> None:  # type: ignore[no-untyped-def]
    clk = clock()
    async with (
        start_service(make_definition(CFG), clock=clk) as svc,
        producing(settings, "intake") as intake,
        producing(settings, "dispatch") as dispatch,
    ):
        await intake.emit(
            "C-1", case_reported("C-1", insured_name="李女士", insured_phone="13900139000")
        )
        await case_known(svc, "C-1")
        await dispatch.emit("job-J-C-1", survey("C-1"))
        await dispatch.emit("job-J-C-1", survey("C-1"))  # a second publication of the same job
        items = await eventually(lambda: callbacks(svc.client), timeout=15)
        assert len(items) == 1
        cb = items[0]
        assert cb["callback_id"] == "CB-J-C-1"
        assert cb["case_id"] == "C-1"
        assert cb["owner"] == "A001"
        assert cb["insurer_code"] == "PICC"
        assert cb["surveyor_id"] == "S017"
        assert datetime.fromisoformat(cb["due_at"]) == clk.now() + timedelta(seconds=600)
        work = (await svc.client.get("/v1/worklist?owner=A001", headers=AGENT)).json()["items"]
        assert [(w["item_type"], w["item_id"]) for w in work] == [("callback", "CB-J-C-1")]
        await asyncio.sleep(0.5)
        assert len(await callbacks(svc.client)) == 1


async def test_sampling_rate_per_insurer_is_deterministic(start_service, settings) -> None:  # type: ignore[no-untyped-def]
    async with (
        start_service(make_definition(CFG), clock=clock()) as svc,
        producing(settings, "intake") as intake,
        producing(settings, "dispatch") as dispatch,
    ):
        r = await svc.client.put("/v1/callback-rates/CPIC", json={"rate": 0.25}, headers=LEAD)
        assert r.status_code == 200
        assert (
            await svc.client.put("/v1/callback-rates/CPIC", json={"rate": 2}, headers=LEAD)
        ).status_code == 422
        assert (
            await svc.client.put("/v1/callback-rates/CPIC", json={"rate": 0.5}, headers=AGENT)
        ).status_code == 403
        cpic = [f"CP-{i}" for i in range(40)]
        picc = [f"PI-{i}" for i in range(10)]
        for case in cpic:
            await intake.emit(case, case_reported(case, insurer_code="CPIC"))
        for case in picc:
            await intake.emit(case, case_reported(case, insurer_code="PICC"))
        for case in cpic + picc:
            await case_known(svc, case)
        for case in cpic + picc:
            await dispatch.emit(f"job-{case}", survey(case))
        expected_cpic = {c for c in cpic if sample_point(c) < 0.25}
        assert 0 < len(expected_cpic) < len(cpic)  # the sample really is a sample

        async def all_in() -> list[dict[str, Any]] | None:
            items = await callbacks(svc.client, limit="500")
            return items if len(items) >= len(expected_cpic) + len(picc) else None

        items = await eventually(all_in, timeout=20)
        await asyncio.sleep(0.5)
        items = await callbacks(svc.client, limit="500")
        got = {i["case_id"] for i in items}
        assert got == expected_cpic | set(picc)  # PICC: no rate set, 100% by default
        rates = (await svc.client.get("/v1/callback-rates", headers=AGENT)).json()
        assert rates == {"default": 1.0, "items": [{"insurer_code": "CPIC", "rate": 0.25}]}


async def test_unreachable_is_retried_then_fails(start_service, settings) -> None:  # type: ignore[no-untyped-def]
    clk = clock()
    async with (
        start_service(make_definition(CFG), clock=clk) as svc,
        producing(settings, "dispatch") as dispatch,
    ):
        c = svc.client
        await dispatch.emit("job-1", survey("C-9", job="J9"))
        await eventually(lambda: callbacks(c), timeout=15)
        r = await c.post("/v1/callbacks/CB-J9/attempts", json={"reached": False}, headers=AGENT)
        assert r.status_code == 422
        for attempt in (1, 2):
            r = await c.post(
                "/v1/callbacks/CB-J9/attempts",
                json={"reached": False, "reason": "无人接听"},
                headers=AGENT,
            )
            assert r.status_code == 200, r.text
            cb = r.json()
            assert cb["status"] == "retrying"
            assert cb["attempts"] == attempt
            assert datetime.fromisoformat(cb["due_at"]) == clk.now() + timedelta(seconds=300)
        work = (await c.get("/v1/worklist", headers=AGENT)).json()["items"]
        assert "try 3" in work[0]["title"]
        r = await c.post(
            "/v1/callbacks/CB-J9/attempts", json={"reached": False, "reason": "关机"}, headers=AGENT
        )
        cb = r.json()
        assert cb["status"] == "failed"
        assert cb["attempts"] == 3
        assert cb["last_reason"] == "关机"
        assert (await c.get("/v1/worklist", headers=AGENT)).json()["items"] == []
        r = await c.post(
            "/v1/callbacks/CB-J9/attempts", json={"reached": True, "satisfaction": 5}, headers=AGENT
        )
        assert r.status_code == 409
        assert (await c.get("/v1/callbacks/CB-NOPE", headers=AGENT)).status_code == 404
        async with svc.runtime.pool.acquire() as conn:
            types = await conn.fetch(
                "SELECT event_type, payload FROM events WHERE stream_id = 'callback-CB-J9' ORDER BY sequence"
            )
        assert [t["event_type"] for t in types] == [
            "CallbackScheduled",
            "CallbackAttemptFailed",
            "CallbackAttemptFailed",
            "CallbackFailed",
        ]
        assert types[-1]["payload"]["attempts"] == 3


async def test_dissatisfied_answer_opens_a_linked_complaint_in_one_step(
    start_service, settings
) -> None:  # type: ignore[no-untyped-def]
    async with (
        start_service(make_definition(CFG), clock=clock()) as svc,
        producing(settings, "intake") as intake,
        producing(settings, "dispatch") as dispatch,
    ):
        c = svc.client
        await intake.emit(
            "C-5", case_reported("C-5", insured_name="李女士", insured_phone="13900139000")
        )
        await case_known(svc, "C-5")
        await dispatch.emit("job-5", survey("C-5", job="J5"))
        await eventually(lambda: callbacks(c), timeout=15)
        bad = {"reached": True, "satisfaction": 2, "surveyor_rating": 2}
        r = await c.post("/v1/callbacks/CB-J5/attempts", json=bad, headers=AGENT)
        assert r.status_code == 422
        assert r.json()["details"]["field"] == "reasons"
        r = await c.post(
            "/v1/callbacks/CB-J5/attempts",
            json={"reached": True, "satisfaction": 5, "open_complaint": {"category": "delay"}},
            headers=AGENT,
        )
        assert r.status_code == 422
        r = await c.post(
            "/v1/callbacks/CB-J5/attempts",
            json={
                **bad,
                "reasons": ["到场慢", "态度冷淡"],
                "open_complaint": {"category": "delay", "severity": "high"},
            },
            headers=auth("agent", "A002"),
        )
        assert r.status_code == 200, r.text
        cb = r.json()
        assert cb["status"] == "completed"
        assert cb["satisfaction"] == 2
        assert cb["surveyor_rating"] == 2
        assert cb["reasons"] == ["到场慢", "态度冷淡"]
        v = await get(c, cb["complaint_id"])
        assert v["channel"] == "callback"
        assert v["callback_id"] == "CB-J5"
        assert v["owner"] == "A002"  # the agent who heard it owns it
        assert v["caller_name"] == "李女士"
        assert v["caller_phone"] == "13900139000"
        assert v["surveyor_id"] == "S017"
        assert v["insurer_code"] == "PICC"
        assert v["matter"] == "到场慢; 态度冷淡"
        async with svc.runtime.pool.acquire() as conn:
            payload = await conn.fetchval(
                "SELECT payload FROM events WHERE stream_id = 'callback-CB-J5' AND event_type = 'CallbackCompleted'"
            )
        assert payload["complaint_id"] == cb["complaint_id"]


async def test_consultation_follow_ups_from_intake_join_the_worklist(
    start_service, settings
) -> None:  # type: ignore[no-untyped-def]
    clk = clock()
    async with (
        start_service(make_definition(CFG), clock=clk) as svc,
        producing(settings, "intake") as intake,
    ):
        c = svc.client
        due = clk.now() + timedelta(hours=4)
        logged = ConsultationLogged(
            consultation_id="Q-1",
            agent="A004",
            caller_name="赵先生",
            caller_phone="13700137000",
            topic="玻璃单独破碎是否赔付",
            answer="需核实保单条款后回电",
            resolved=False,
            follow_up_owner="S005",
            follow_up_due=due,
        )
        await intake.emit("consultation-Q-1", logged)

        async def items(owner: str) -> list[dict[str, Any]]:
            r = await c.get(f"/v1/worklist?owner={owner}", headers=AGENT)
            out: list[dict[str, Any]] = r.json()["items"]
            return out

        # the first-contact agent owns it; the named follow-up owner is responsible for it
        got = await eventually(lambda: items("A004"), timeout=15)
        assert [(i["item_type"], i["relation"]) for i in got] == [("consultation", "owner")]
        assert datetime.fromisoformat(got[0]["due_at"]) == due
        assert [(i["item_id"], i["relation"]) for i in await items("S005")] == [("Q-1", "assignee")]
        handed = OwnershipHandedOver(
            subject_type="consultation",
            subject_id="Q-1",
            from_owner="A004",
            to_owner="A006",
            reason="交班",
        )
        await intake.emit("consultation-Q-1", handed)
        await eventually(lambda: items("A006"), timeout=10)
        assert await items("A004") == []
        assert [i["item_id"] for i in await items("S005")] == ["Q-1"]
        answered = logged.model_copy(update={"resolved": True, "answer": "可以赔付"})
        await intake.emit("consultation-Q-1", answered)

        async def gone() -> bool:
            return await items("A006") == [] and await items("S005") == []

        await eventually(gone, timeout=10)


async def test_handover_needs_a_named_owner_and_a_reason(start_service, settings) -> None:  # type: ignore[no-untyped-def]
    clk = clock()
    async with (
        start_service(make_definition(CFG), clock=clk) as svc,
        producing(settings, "dispatch") as dispatch,
    ):
        c = svc.client
        cid = await file(c)
        bad = [
            {"item_type": "complaint", "item_id": cid, "to_owner": "A007"},
            {"item_type": "complaint", "item_id": cid, "to_owner": "", "reason": "交班"},
            {"item_type": "consultation", "item_id": "Q-1", "to_owner": "A007", "reason": "交班"},
        ]
        for body in bad:
            r = await c.post("/v1/handovers", json=body, headers=AGENT)
            assert r.status_code == 422, body
        r = await c.post(
            "/v1/handovers",
            json={"item_type": "complaint", "item_id": cid, "to_owner": "A001", "reason": "x1"},
            headers=AGENT,
        )
        assert r.status_code == 422
        r = await c.post(
            "/v1/handovers",
            json={
                "item_type": "complaint",
                "item_id": cid,
                "to_owner": "A007",
                "reason": "下班交接",
            },
            headers=AGENT,
        )
        assert r.status_code == 200, r.text
        v = await get(c, cid)
        assert v["owner"] == "A007"
        handed = next(h for h in v["history"] if h["event_type"] == "WorkItemHandedOver")["data"]
        assert handed | {"item_id": None} == {
            "item_type": "complaint",
            "item_id": None,
            "callback_id": None,
            "from_owner": "A001",
            "to_owner": "A007",
            "reason": "下班交接",
            "handed_over_by": "A001",
        }
        assert (await c.get("/v1/worklist?owner=A001", headers=AGENT)).json()["items"] == []
        assert [
            i["item_id"]
            for i in (await c.get("/v1/worklist?owner=A007", headers=AGENT)).json()["items"]
        ] == [cid]
        # callbacks too
        await dispatch.emit("job-7", survey("C-7", job="J7"))
        await eventually(lambda: callbacks(c), timeout=15)
        r = await c.post(
            "/v1/handovers",
            json={
                "item_type": "callback",
                "item_id": "CB-J7",
                "to_owner": "A008",
                "reason": "专人回访",
            },
            headers=AGENT,
        )
        assert r.status_code == 200
        assert (await c.get("/v1/callbacks/CB-J7", headers=AGENT)).json()["owner"] == "A008"
        r = await c.post(
            "/v1/handovers",
            json={
                "item_type": "improvement",
                "item_id": "IMPX",
                "to_owner": "A008",
                "reason": "专人",
            },
            headers=AGENT,
        )
        assert r.status_code == 422  # an improvement is named with its complaint


async def test_worklist_most_urgent_first(start_service, settings) -> None:  # type: ignore[no-untyped-def]
    clk = clock()
    async with (
        start_service(make_definition(CFG), clock=clk) as svc,
        producing(settings, "intake") as intake,
    ):
        c = svc.client
        # default policy: first response due in 2 h
        complaint = await file(c)
        soon = ConsultationLogged(
            consultation_id="Q-soon",
            agent="A001",
            caller_name="a",
            caller_phone="13700137000",
            topic="t",
            answer="a",
            resolved=False,
            follow_up_owner="A001",
            follow_up_due=clk.now() + timedelta(minutes=30),
        )
        late = soon.model_copy(
            update={"consultation_id": "Q-late", "follow_up_due": clk.now() + timedelta(hours=5)}
        )
        undated = soon.model_copy(update={"consultation_id": "Q-none", "follow_up_due": None})
        overdue = soon.model_copy(
            update={"consultation_id": "Q-over", "follow_up_due": clk.now() - timedelta(minutes=1)}
        )
        for e in (soon, late, undated, overdue):
            await intake.emit(f"consultation-{e.consultation_id}", e)

        async def five() -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = (await c.get("/v1/worklist", headers=AGENT)).json()[
                "items"
            ]
            return items if len(items) == 5 else None

        items = await eventually(five, timeout=15)
        assert [i["item_id"] for i in items] == ["Q-over", "Q-soon", complaint, "Q-late", "Q-none"]
        assert [i["overdue"] for i in items] == [True, False, False, False, False]
        assert items[2]["due_in_s"] == 7200
