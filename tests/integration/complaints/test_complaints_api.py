"""Complaints over real HTTP, Postgres and the broker: filing, triage, policies, resolution."""

from __future__ import annotations

from datetime import timedelta

from complaints.bootstrap import DEFINITION

from tests.integration.complaints.helpers import (
    AGENT,
    LEAD,
    assert_keyed_by_case,
    auth,
    clock,
    clock_of,
    complaint_body,
    events_of,
    fast_policy,
    file,
    get,
    put_policy,
)


async def test_agent_files_a_complaint_and_owns_it(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION, clock=clock()) as svc:
        r = await svc.client.post("/v1/complaints", json=complaint_body(), headers=AGENT)
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["owner"] == "A001"
        assert created["policy"] == "default@v1"
        v = await get(svc.client, created["complaint_id"])
        assert v["status"] == "received"
        assert v["owner"] == "A001"
        assert v["escalation_level"] == 0
        assert v["promised_answer_at"] == created["promised_answer_at"]
        assert {c["clock"] for c in v["clocks"]} == {"first_response", "resolution", "regulatory"}
        assert all(c["status"] == "running" for c in v["clocks"])
        # default policy: first response 2 h wall time; regulatory 15 days
        assert clock_of(v, "first_response")["remaining_s"] == 7200
        assert clock_of(v, "regulatory")["budget_s"] == 15 * 86400
        # the promised time defaults to the resolution due time (5 working days)
        assert v["promised_answer_at"] == clock_of(v, "resolution")["due_at"]
        assert [h["event_type"] for h in v["history"]] == [
            "ComplaintReceived",
            "ComplaintClockStarted",
            "ComplaintClockStarted",
            "ComplaintClockStarted",
        ]
        assert v["history"][0]["actor"] == "agent:A001"
        listed = (await svc.client.get("/v1/complaints", headers=AGENT)).json()["items"]
        assert [i["complaint_id"] for i in listed] == [created["complaint_id"]]


async def test_bad_input_is_a_clear_4xx(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION, clock=clock()) as svc:
        c = svc.client
        r = await c.post(
            "/v1/complaints",
            json=complaint_body(category="rude", caller_phone="12345", matter=""),
            headers=AGENT,
        )
        assert r.status_code == 422
        assert {f["field"] for f in r.json()["fields"]} == {"category", "caller_phone", "matter"}
        assert (await c.post("/v1/complaints", json=complaint_body())).status_code == 401
        r = await c.post("/v1/complaints", json=complaint_body(), headers=auth("surveyor", "S1"))
        assert r.status_code == 403
        r = await c.post(
            "/v1/complaints",
            json=complaint_body(promised_answer_at="2020-01-01T00:00:00Z"),
            headers=AGENT,
        )
        assert r.status_code == 422
        assert "future" in r.json()["message"]
        r = await c.post(
            "/v1/complaints",
            json=complaint_body(promised_answer_at="2026-03-01T00:00:00Z"),
            headers=AGENT,
        )
        assert r.status_code == 422
        assert "regulatory" in r.json()["message"]
        assert (await c.get("/v1/complaints/CPNOPE", headers=AGENT)).status_code == 404
        r = await c.post(
            "/v1/complaints/CPNOPE/triage", json={"valid": False, "reason": "xx"}, headers=AGENT
        )
        assert r.status_code == 404
        r = await c.put("/v1/sla-policies/x", json=fast_policy(), headers=AGENT)
        assert r.status_code == 403  # agents cannot change policies


async def test_triage_invalid_is_closed_and_kept(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION, clock=clock()) as svc:
        cid = await file(svc.client)
        r = await svc.client.post(
            f"/v1/complaints/{cid}/triage",
            json={"valid": False, "reason": "非本公司承办案件"},
            headers=auth("team_lead", "T001"),
        )
        assert r.status_code == 200, r.text
        v = r.json()
        assert v["status"] == "closed"
        assert v["valid"] is False
        assert all(c["status"] == "stopped" for c in v["clocks"])
        assert clock_of(v, "first_response")["met"] is True
        assert events_of(v, "ComplaintClosed")[0]["data"]["reason"].startswith("invalid")
        # kept: still readable, listed, and nothing more can happen to it
        assert (await get(svc.client, cid))["status"] == "closed"
        r = await svc.client.post(
            f"/v1/complaints/{cid}/triage",
            json={"valid": True, "reason": "again", "assignee": "T1"},
            headers=AGENT,
        )
        assert r.status_code == 409
        r = await svc.client.post(
            f"/v1/complaints/{cid}/resolution",
            json={"outcome": "xx", "feedback_to_customer": "yy"},
            headers=AGENT,
        )
        assert r.status_code == 409


async def test_triage_valid_assigns_a_named_person(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION, clock=clock()) as svc:
        cid = await file(svc.client)
        r = await svc.client.post(
            f"/v1/complaints/{cid}/triage", json={"valid": True, "reason": "属实"}, headers=AGENT
        )
        assert r.status_code == 422
        assert r.json()["details"]["field"] == "assignee"
        r = await svc.client.post(
            f"/v1/complaints/{cid}/triage",
            json={"valid": True, "reason": "属实", "assignee": "T003"},
            headers=AGENT,
        )
        v = r.json()
        assert v["status"] == "assigned"
        assert v["assignee"] == "T003"
        assert v["owner"] == "A001"  # the first-contact owner keeps following it
        assert events_of(v, "ComplaintAssigned")[0]["data"]["assignee"] == "T003"
        assert clock_of(v, "first_response")["status"] == "stopped"
        assert clock_of(v, "resolution")["status"] == "running"
        # another responsible person: the assignee changes, the first-contact owner does not
        r = await svc.client.post(
            f"/v1/complaints/{cid}/assignment",
            json={"assignee": "T005", "reason": "原责任人休假"},
            headers=AGENT,
        )
        assert r.status_code == 200, r.text
        assert (r.json()["assignee"], r.json()["owner"]) == ("T005", "A001")
        assert events_of(r.json(), "ComplaintAssigned")[-1]["data"]["reason"] == "原责任人休假"
        r = await svc.client.post(
            f"/v1/complaints/{cid}/assignment",
            json={"assignee": "T005", "reason": "again"},
            headers=AGENT,
        )
        assert r.status_code == 422
        work = (await svc.client.get("/v1/worklist?owner=T003", headers=AGENT)).json()["items"]
        assert work == []
        work = (await svc.client.get("/v1/worklist?owner=T005", headers=AGENT)).json()["items"]
        assert [(i["item_id"], i["relation"]) for i in work] == [(cid, "assignee")]


async def test_policies_are_versioned_validated_and_chosen(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION, clock=clock()) as svc:
        c = svc.client
        assert await put_policy(c, "fast-delay", fast_policy(match={"categories": ["delay"]})) == 1
        assert (
            await put_policy(
                c, "fast-delay", fast_policy(match={"categories": ["delay"]}, priority=5)
            )
            == 2
        )
        await put_policy(
            c,
            "fast-delay-high",
            fast_policy(match={"categories": ["delay"], "severities": ["high"]}),
        )
        versions = (await c.get("/v1/sla-policies/fast-delay", headers=AGENT)).json()["versions"]
        assert [v["version"] for v in versions] == [2, 1]
        assert versions[0]["policy"]["priority"] == 5
        assert versions[0]["published_by"] == "S001"
        names = {
            p["name"] for p in (await c.get("/v1/sla-policies", headers=AGENT)).json()["items"]
        }
        assert names == {"default", "fast-delay", "fast-delay-high"}
        # most specific wins: category+severity over category alone
        high = await get(c, await file(c, severity="high"))
        assert clock_of(high, "first_response")["policy"] == "fast-delay-high@v1"
        low = await get(c, await file(c, severity="low"))
        assert clock_of(low, "first_response")["policy"] == "fast-delay@v2"
        assert clock_of(low, "first_response")["budget_s"] == 10
        other = await get(c, await file(c, category="attitude"))
        assert clock_of(other, "first_response")["policy"] == "default@v1"
        # bad policies: clear 422s naming the problem
        bad = fast_policy()
        bad["clocks"]["first_response"]["warn_before"] = {"seconds": 30}
        r = await c.put("/v1/sla-policies/bad", json=bad, headers=LEAD)
        assert r.status_code == 422
        assert "warn_before" in r.json()["message"]
        r = await c.put(
            "/v1/sla-policies/bad",
            json=fast_policy(calendar={"timezone": "Mars/Olympus"}),
            headers=LEAD,
        )
        assert r.status_code == 422
        assert "time zone" in r.json()["message"]
        bad = fast_policy()
        bad["clocks"]["resolution"]["duration"] = "5 fortnights"
        r = await c.put("/v1/sla-policies/bad", json=bad, headers=LEAD)
        assert r.status_code == 422
        assert "duration" in r.json()["message"]
        r = await c.put("/v1/sla-policies/Bad%20Name", json=fast_policy(), headers=LEAD)
        assert r.status_code == 422
        assert (await c.get("/v1/sla-policies/bad", headers=AGENT)).status_code == 404


async def test_resolution_feedback_reopen_and_improvements(start_service) -> None:  # type: ignore[no-untyped-def]
    clk = clock()
    async with start_service(DEFINITION, clock=clk) as svc:
        c = svc.client
        await put_policy(c, "fast", fast_policy())
        cid = await file(c)
        await c.post(
            f"/v1/complaints/{cid}/triage",
            json={"valid": True, "reason": "属实", "assignee": "T003"},
            headers=AGENT,
        )
        clk.advance(20)
        r = await c.post(
            f"/v1/complaints/{cid}/resolution",
            json={"outcome": "重新核定，补偿 800 元", "feedback_to_customer": "已电话告知客户"},
            headers=auth("agent", "T003"),
        )
        assert r.status_code == 200, r.text
        v = r.json()
        assert v["status"] == "resolved"
        assert clock_of(v, "resolution")["met"] is True
        assert clock_of(v, "regulatory")["status"] == "stopped"
        # not satisfied: reopened with a fresh resolution clock from the same policy version
        r = await c.post(
            f"/v1/complaints/{cid}/feedback",
            json={"satisfied": False, "comment": "金额不认可"},
            headers=AGENT,
        )
        v = r.json()
        assert v["status"] == "reopened"
        assert v["reopened"] == 1
        res = clock_of(v, "resolution")
        assert res["status"] == "running"
        assert res["remaining_s"] == 60
        assert res["policy"] == "fast@v1"
        r = await c.post(
            f"/v1/complaints/{cid}/resolution",
            json={"outcome": "补偿 1200 元", "feedback_to_customer": "已告知"},
            headers=AGENT,
        )
        assert r.status_code == 200
        r = await c.post(f"/v1/complaints/{cid}/feedback", json={"satisfied": True}, headers=AGENT)
        v = r.json()
        assert v["status"] == "closed"
        assert v["satisfied"] is True
        # improvements are tracked to done, even after closing
        r = await c.post(
            f"/v1/complaints/{cid}/improvements",
            json={
                "action": "查勘员服务规范培训",
                "owner": "T003",
                "due_at": (clk.now() + timedelta(days=7)).isoformat(),
            },
            headers=LEAD,
        )
        assert r.status_code == 201, r.text
        iid = r.json()["improvement_id"]
        items = (await c.get("/v1/worklist?owner=T003", headers=AGENT)).json()["items"]
        assert [(i["item_type"], i["item_id"]) for i in items] == [("improvement", iid)]
        r = await c.post(
            f"/v1/complaints/{cid}/improvements/{iid}/completion",
            json={"note": "已完成"},
            headers=auth("agent", "T003"),
        )
        assert r.status_code == 200
        assert r.json()["improvements"][0]["done"] is True
        assert (await c.get("/v1/worklist?owner=T003", headers=AGENT)).json()["items"] == []
        r = await c.post(
            f"/v1/complaints/{cid}/improvements/{iid}/completion", json={}, headers=AGENT
        )
        assert r.status_code == 409
        r = await c.post(f"/v1/complaints/{cid}/feedback", json={"satisfied": True}, headers=AGENT)
        assert r.status_code == 409
        types = [h["event_type"] for h in v["history"]]
        assert types.count("ComplaintResolved") == 2
        assert "ComplaintReopened" in types
        assert "CustomerFeedbackRecorded" in types
        await assert_keyed_by_case(svc, cid, "C-1")


async def test_not_satisfied_without_reopen_closes_with_the_reason(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION, clock=clock()) as svc:
        c = svc.client
        cid = await file(c)
        await c.post(
            f"/v1/complaints/{cid}/triage",
            json={"valid": True, "reason": "属实", "assignee": "T3"},
            headers=AGENT,
        )
        await c.post(
            f"/v1/complaints/{cid}/resolution",
            json={"outcome": "按条款", "feedback_to_customer": "已告知"},
            headers=AGENT,
        )
        r = await c.post(
            f"/v1/complaints/{cid}/feedback",
            json={"satisfied": False, "comment": "仍不认可", "reopen": False},
            headers=AGENT,
        )
        v = r.json()
        assert v["status"] == "closed"
        assert v["satisfied"] is False
        assert "仍不认可" in v["close_reason"]


async def test_demo_mode_seeds_policies_and_writes_credentials(start_service, settings) -> None:  # type: ignore[no-untyped-def]
    demo = settings.model_copy(update={"demo": True})
    for _ in range(2):  # idempotent across restarts
        async with start_service(DEFINITION, demo) as svc:  # tokens are issued on the system clock
            items = (await svc.client.get("/v1/sla-policies", headers=AGENT)).json()["items"]
            assert {(p["name"], p["version"]) for p in items} == {
                ("default", 1),
                ("picc-high", 1),
                ("attitude", 1),
            }
            creds = (demo.data_dir / "credentials-complaints.txt").read_text()
            assert f"{demo.url('complaints')}/agent" in creds
            assert f"{demo.url('complaints')}/complaint-form" in creds
            assert "eyJ" not in creds  # no second set of staff identities: intake owns them


async def test_idempotency_key_makes_a_resubmission_safe(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION, clock=clock()) as svc:
        c = svc.client
        headers = {**AGENT, "Idempotency-Key": "call-20260105-0001"}
        first = await c.post("/v1/complaints", json=complaint_body(), headers=headers)
        again = await c.post("/v1/complaints", json=complaint_body(), headers=headers)
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json() == first.json()
        other = await c.post(
            "/v1/complaints",
            json=complaint_body(),
            headers=auth("agent", "A002") | {"Idempotency-Key": "call-20260105-0001"},
        )
        assert other.status_code == 201  # keys are per person
        assert other.json()["complaint_id"] != first.json()["complaint_id"]
        assert len((await c.get("/v1/complaints", headers=AGENT)).json()["items"]) == 2
        bad = await c.post(
            "/v1/complaints",
            json=complaint_body(),
            headers={**AGENT, "Idempotency-Key": "no spaces"},
        )
        assert bad.status_code == 422
