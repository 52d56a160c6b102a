"""Deadline clocks on stored timers: warning, breach, escalation ladder, pause/resume,
extension; exactly once with two processes on one schema and across a restart."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from claimdesk.testing.plugin import eventually
from complaints.bootstrap import DEFINITION

from tests.integration.complaints.helpers import (
    AGENT,
    assert_keyed_by_case,
    clock,
    clock_of,
    events_of,
    fast_policy,
    file,
    get,
    put_policy,
    wait_for_events,
)


async def test_warning_then_breach_then_the_ladder_once_per_level(start_service) -> None:  # type: ignore[no-untyped-def]
    clk = clock()
    async with start_service(DEFINITION, clock=clk) as svc:
        c = svc.client
        await put_policy(c, "fast", fast_policy())
        cid = await file(c)
        clk.advance(5)
        await asyncio.sleep(0.5)
        assert events_of(await get(c, cid), "ComplaintDeadlineWarned") == []
        clk.advance(1.5)  # 6.5 s: past the warning point (10 s - 4 s)
        v = await wait_for_events(c, cid, "ComplaintDeadlineWarned", 1)
        warned = events_of(v, "ComplaintDeadlineWarned")[0]["data"]
        assert warned["clock"] == "first_response"
        assert warned["notified"] == ["A001"]
        assert v["escalation_level"] == 0
        clk.advance(4)  # 10.5 s: breached
        v = await wait_for_events(c, cid, "ComplaintEscalated", 1)
        esc = events_of(v, "ComplaintEscalated")
        assert [
            (e["data"]["level"], e["data"]["escalated_to"], e["data"]["clock"]) for e in esc
        ] == [(1, "team_lead", "first_response")]
        assert v["escalation_level"] == 1
        assert v["escalated_to"] == "team_lead"
        fr = clock_of(v, "first_response")
        assert fr["breached"] is True
        assert fr["overdue"] is True

        # still unanswered: one level up every 5 s, then the ladder ends at manager
        async def three_levels() -> dict[str, Any] | None:
            clk.advance(5.5)
            v = await get(c, cid)
            return v if len(events_of(v, "ComplaintEscalated")) >= 3 else None

        await eventually(three_levels, timeout=20, interval=0.4)
        for _ in range(3):  # more time passes: no fourth level
            clk.advance(5.5)
            await asyncio.sleep(0.4)
        v = await get(c, cid)
        levels = [
            (e["data"]["level"], e["data"]["escalated_to"])
            for e in events_of(v, "ComplaintEscalated")
        ]
        assert levels == [(1, "team_lead"), (2, "supervisor"), (3, "manager")]
        assert len(events_of(v, "ComplaintClockBreached")) == 1
        # the escalation is visible in the owner's worklist, most urgent first
        items = (await c.get("/v1/worklist", headers=AGENT)).json()["items"]
        assert items[0]["item_id"] == cid
        assert items[0]["level"] == 3
        assert items[0]["overdue"] is True
        await assert_keyed_by_case(svc, cid, "C-1")


async def test_answering_in_time_means_no_escalation(start_service) -> None:  # type: ignore[no-untyped-def]
    clk = clock()
    async with start_service(DEFINITION, clock=clk) as svc:
        c = svc.client
        await put_policy(c, "fast", fast_policy())
        cid = await file(c)
        clk.advance(8)
        await wait_for_events(c, cid, "ComplaintDeadlineWarned", 1)
        r = await c.post(
            f"/v1/complaints/{cid}/triage",
            json={"valid": True, "reason": "属实", "assignee": "T3"},
            headers=AGENT,
        )
        assert r.status_code == 200
        clk.advance(30)  # first response was due at 10 s; resolution due at 60 s
        await asyncio.sleep(0.8)
        v = await get(c, cid)
        assert clock_of(v, "first_response")["met"] is True
        assert events_of(v, "ComplaintEscalated") == []
        assert len(events_of(v, "ComplaintDeadlineWarned")) == 1


async def test_pause_while_waiting_on_the_customer_then_resume(start_service) -> None:  # type: ignore[no-untyped-def]
    clk = clock()
    async with start_service(DEFINITION, clock=clk) as svc:
        c = svc.client
        await put_policy(c, "fast", fast_policy())
        cid = await file(c)
        await c.post(
            f"/v1/complaints/{cid}/triage",
            json={"valid": True, "reason": "属实", "assignee": "T3"},
            headers=AGENT,
        )
        clk.advance(30)  # resolution: 30 of 60 s used
        r = await c.post(
            f"/v1/complaints/{cid}/waiting", json={"reason": "等待客户提供发票"}, headers=AGENT
        )
        assert r.status_code == 200, r.text
        v = r.json()
        assert v["status"] == "waiting_on_customer"
        assert clock_of(v, "resolution")["status"] == "paused"
        assert clock_of(v, "resolution")["due_at"] is None
        r = await c.post(f"/v1/complaints/{cid}/waiting", json={"reason": "again"}, headers=AGENT)
        assert r.status_code == 409
        clk.advance(500)  # long past every due time, but paused clocks do not count
        await asyncio.sleep(0.8)
        v = await get(c, cid)
        assert events_of(v, "ComplaintEscalated") == []
        assert clock_of(v, "resolution")["remaining_s"] == 30
        resumed_at = clk.now()
        r = await c.post(
            f"/v1/complaints/{cid}/resumption", json={"note": "发票已收到"}, headers=AGENT
        )
        v = r.json()
        assert v["status"] == "assigned"
        res = clock_of(v, "resolution")
        assert res["status"] == "running"
        assert (datetime.fromisoformat(res["due_at"]) - resumed_at).total_seconds() == 30
        clk.advance(31)
        v = await wait_for_events(c, cid, "ComplaintEscalated", 1)
        assert events_of(v, "ComplaintEscalated")[0]["data"]["clock"] == "resolution"
        await assert_keyed_by_case(svc, cid, "C-1")


async def test_regulatory_extension_once_with_a_reason(start_service) -> None:  # type: ignore[no-untyped-def]
    clk = clock()
    async with start_service(DEFINITION, clock=clk) as svc:
        c = svc.client
        cid = await file(c)  # default policy: 15 days, extendable to 30
        r = await c.post(f"/v1/complaints/{cid}/extensions", json={"reason": "x"}, headers=AGENT)
        assert r.status_code == 422
        r = await c.post(
            f"/v1/complaints/{cid}/extensions",
            json={"reason": "等待复核", "extend_to": {"days": 31}},
            headers=AGENT,
        )
        assert r.status_code == 422
        assert "30 days" in r.json()["message"]
        r = await c.post(
            f"/v1/complaints/{cid}/extensions",
            json={"reason": "等待复核", "extend_to": "10d"},
            headers=AGENT,
        )
        assert r.status_code == 422
        r = await c.post(
            f"/v1/complaints/{cid}/extensions", json={"reason": "等待保险公司复核"}, headers=AGENT
        )
        assert r.status_code == 200, r.text
        reg = clock_of(r.json(), "regulatory")
        assert reg["budget_s"] == 30 * 86400
        assert reg["extended"] is True
        assert reg["extension_reason"] == "等待保险公司复核"
        r = await c.post(
            f"/v1/complaints/{cid}/extensions", json={"reason": "再次延期"}, headers=AGENT
        )
        assert r.status_code == 409


async def test_extension_moves_the_breach(start_service) -> None:  # type: ignore[no-untyped-def]
    clk = clock()
    async with start_service(DEFINITION, clock=clk) as svc:
        c = svc.client
        await put_policy(c, "fast", fast_policy())
        cid = await file(c)
        await c.post(
            f"/v1/complaints/{cid}/triage",
            json={"valid": True, "reason": "属实", "assignee": "T3"},
            headers=AGENT,
        )
        await c.post(
            f"/v1/complaints/{cid}/extensions",
            json={"reason": "复核中", "extend_to": 200},
            headers=AGENT,
        )
        clk.advance(130)  # past the old 120 s regulatory limit, but extended to 200 s
        await wait_for_events(c, cid, "ComplaintEscalated", 1)  # resolution (60 s) breached
        v = await get(c, cid)
        assert [e["data"]["clock"] for e in events_of(v, "ComplaintClockBreached")] == [
            "resolution"
        ]
        clk.advance(80)
        v = await wait_for_events(c, cid, "ComplaintClockBreached", 2)
        assert [e["data"]["clock"] for e in events_of(v, "ComplaintClockBreached")] == [
            "resolution",
            "regulatory",
        ]


async def test_two_processes_escalate_each_level_exactly_once(start_service, settings) -> None:  # type: ignore[no-untyped-def]
    clk = clock()
    async with (
        start_service(DEFINITION, clock=clk) as one,
        start_service(DEFINITION, clock=clk) as two,
    ):
        await put_policy(one.client, "fast", fast_policy(re_escalate_after=None))
        ids = [await file(one.client if i % 2 else two.client, case_id=f"C-{i}") for i in range(12)]
        clk.advance(11)

        async def all_escalated() -> bool:
            for cid in ids:
                if not events_of(await get(one.client, cid), "ComplaintEscalated"):
                    return False
            return True

        await eventually(all_escalated, timeout=15, interval=0.2)
        await asyncio.sleep(1.0)  # give a duplicate every chance to appear
        for cid in ids:
            v = await get(two.client, cid)
            assert [e["data"]["level"] for e in events_of(v, "ComplaintEscalated")] == [1], cid
            assert len(events_of(v, "ComplaintDeadlineWarned")) == 1, cid
        assert one.runtime.scheduler is not None and two.runtime.scheduler is not None
        async with one.runtime.pool.acquire() as conn:
            fired = await conn.fetchval("SELECT count(*) FROM timers WHERE fired_at IS NOT NULL")
            unfired = await conn.fetchval(
                "SELECT count(*) FROM timers WHERE fired_at IS NULL AND due_at <= $1", clk.now()
            )
        assert fired == 24  # a warning and a breach per complaint, each marked fired once
        assert unfired == 0


async def test_restart_escalates_overdue_items_exactly_once(start_service, settings) -> None:  # type: ignore[no-untyped-def]
    clk = clock()
    async with start_service(DEFINITION, clock=clk) as svc:
        await put_policy(svc.client, "fast", fast_policy(re_escalate_after=None))
        ids = [await file(svc.client, case_id=f"C-{i}") for i in range(5)]
    clk.advance(3600)  # the service is down while every clock passes its due time
    for _ in range(2):
        async with start_service(DEFINITION, clock=clk) as svc:

            async def all_escalated() -> bool:
                views = [await get(svc.client, cid) for cid in ids]
                return all(events_of(v, "ComplaintEscalated") for v in views)

            await eventually(all_escalated, timeout=15, interval=0.2)
            await asyncio.sleep(0.5)
            for cid in ids:
                v = await get(svc.client, cid)
                esc = events_of(v, "ComplaintEscalated")
                # every breached clock escalated once, in order; no level twice
                levels = [e["data"]["level"] for e in esc]
                assert levels == list(range(1, len(levels) + 1)), (cid, levels)
                assert [e["data"]["clock"] for e in esc] == [
                    "first_response",
                    "resolution",
                    "regulatory",
                ]


async def test_business_hours_clock_skips_the_weekend_and_holidays(start_service) -> None:  # type: ignore[no-untyped-def]
    friday_17_shanghai = datetime.fromisoformat("2026-01-09T17:00:00+08:00")
    clk = clock()
    clk.set(friday_17_shanghai)
    async with start_service(DEFINITION, clock=clk) as svc:
        c = svc.client
        policy = fast_policy(
            calendar={"holidays": ["2026-01-12"]},  # Monday is a holiday
            clocks={
                "first_response": {"duration": "2h", "business_hours": True, "warn_before": "30m"},
                "resolution": {"duration": {"days": 2}, "business_hours": True},
            },
        )
        await put_policy(c, "office", policy)
        cid = await file(c)
        v = await get(c, cid)
        fr = clock_of(v, "first_response")
        # 1 h on Friday, weekend and Monday's holiday skipped, 1 h on Tuesday
        assert datetime.fromisoformat(fr["due_at"]) == datetime.fromisoformat(
            "2026-01-13T10:00:00+08:00"
        )
        assert datetime.fromisoformat(fr["warn_at"]) == datetime.fromisoformat(
            "2026-01-13T09:30:00+08:00"
        )
        assert fr["business_hours"] is True
        res = clock_of(v, "resolution")
        assert (
            res["budget_s"] == 2 * 9 * 3600
        )  # two working days of 9 h: Fri 1 h + Tue 9 h + Wed 8 h
        assert datetime.fromisoformat(res["due_at"]) == datetime.fromisoformat(
            "2026-01-14T17:00:00+08:00"
        )
        # the regulatory clock counts calendar days (wall time)
        assert clock_of(v, "regulatory")["business_hours"] is False
        # over the weekend nothing fires; early Tuesday the warning, then the breach
        clk.set(datetime.fromisoformat("2026-01-13T09:00:00+08:00"))
        await asyncio.sleep(0.6)
        assert events_of(await get(c, cid), "ComplaintDeadlineWarned") == []
        clk.set(datetime.fromisoformat("2026-01-13T09:31:00+08:00"))
        await wait_for_events(c, cid, "ComplaintDeadlineWarned", 1)
        clk.set(datetime.fromisoformat("2026-01-13T10:00:01+08:00"))
        await wait_for_events(c, cid, "ComplaintEscalated", 1)
