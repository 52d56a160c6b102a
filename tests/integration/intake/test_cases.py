"""POST /v1/cases over real HTTP: the contract, every 422 path, 413/415, idempotency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from claimdesk.events.intake import CaseReported, DocumentRequested
from intake.bootstrap import DEFINITION
from intake.handlers import _register, _register_at_once, _reported, new_case_id
from intake.schemas import CaseIn

from tests.integration.intake.helpers import add_insurer, add_staff, bearer, case_body, report_no

FUTURE = (datetime.now(UTC) + timedelta(hours=2)).isoformat()

# (overrides, field named in the 422, words in its message)
INVALID: list[tuple[dict[str, object], str, str]] = [
    ({"report_no": ...}, "report_no", "required"),
    ({"report_no": "ab"}, "report_no", "at least 4"),
    ({"report_no": "R" * 41}, "report_no", "at most 40"),
    ({"report_no": "报案号1234"}, "report_no", "pattern"),
    ({"plate": "AB12345"}, "plate", "province"),
    ({"plate": "沪A1234"}, "plate", "at least 7"),
    ({"plate": "沪AI2345"}, "plate", "not a mainland plate"),
    ({"plate": "沪A123456789"}, "plate", "not a mainland plate"),
    ({"plate": None}, "plate", "required for vehicle losses"),
    ({"loss_type": "fire"}, "loss_type", "vehicle_own_damage"),
    ({"loss_type": ...}, "loss_type", "required"),
    ({"loss_time": "yesterday"}, "loss_time", "datetime"),
    ({"loss_time": "2026-11-20T08:30:00"}, "loss_time", "timezone"),
    ({"loss_time": FUTURE}, "loss_time", "future"),
    ({"loss_time": ...}, "loss_time", "required"),
    ({"loss_address": "   "}, "loss_address", ""),
    ({"loss_address": "浦东"}, "loss_address", "at least 4"),
    ({"loss_address": "路" * 201}, "loss_address", "at most 200"),
    ({"loss_address": ...}, "loss_address", "required"),
    ({"loss_lat": 91}, "loss_lat", "less than or equal"),
    ({"loss_lon": 10}, "loss_lon", "greater than or equal"),
    ({"loss_lat": ...}, "loss_lon", "both"),
    ({"loss_lat": "north"}, "loss_lat", "number"),
    ({"reporter_phone": "12345"}, "reporter_phone", "mainland phone"),
    ({"reporter_phone": "1381234567"}, "reporter_phone", "mainland phone"),
    ({"insured_phone": "12812345678"}, "insured_phone", "mainland phone"),
    ({"insured_phone": "021-1234"}, "insured_phone", "mainland phone"),
    ({"reporter_name": ""}, "reporter_name", "at least 1"),
    ({"reporter_name": "名" * 51}, "reporter_name", "at most 50"),
    ({"insured_name": "名" * 101}, "insured_name", "at most 100"),
    ({"policy_no": "P1"}, "policy_no", "at least 4"),
    ({"description": "x" * 2001}, "description", "at most 2000"),
    ({"survey_place": "garage"}, "survey_place", "scene"),
    ({"survey_place": "repair_shop"}, "repair_shop", "required"),
    ({"repair_shop": "x"}, "repair_shop", "at least 2"),
    ({"injuries": "maybe"}, "injuries", "boolean"),
    ({"priority": "asap"}, "priority", "normal"),
    ({"region": "x"}, "region", "at least 2"),
    ({"colour": "red"}, "colour", "Extra inputs"),
]


async def test_a_valid_case_is_201_with_the_case_and_its_events(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        key = await add_insurer(svc.client, "PICC")
        body = case_body(plate="沪ad 12345", reporter_phone="+86 138 1234 5678")
        r = await svc.client.post("/v1/cases", json=body, headers=bearer(key))
        assert r.status_code == 201, r.text
        out = r.json()
        case = out["case"]
        assert out["case_id"] == case["case_id"] and out["status"] == "reported"
        assert r.headers["location"] == f"/v1/cases/{out['case_id']}"
        assert case["plate"] == "沪AD12345"
        assert case["reporter_phone"] == "13812345678"
        assert case["insurer_code"] == "PICC" and case["channel"] == "insurer_api"
        assert case["region"] == "上海市浦东新区"
        assert case["report_no"] == body["report_no"]
        assert set(case["missing_documents"]) >= {"claim_form", "repair_invoice"}
        async with svc.runtime.pool.acquire() as conn:
            events = await svc.runtime.store.read_stream(conn, f"case-{out['case_id']}")
        assert isinstance(events[0].payload, CaseReported)
        assert events[0].actor == "insurer:PICC"
        assert [type(e.payload) for e in events[1:]] == [DocumentRequested]
        assert {d.code for d in events[1].payload.documents} == set(case["missing_documents"])
        assert case["version"] == len(events)

        # other accepted formats: new-energy large, landline, repair shop, region given
        ok = case_body(
            plate="粤B12345D",
            insured_phone="021-62345678",
            survey_place="repair_shop",
            repair_shop="上海永达汽车维修有限公司",
            region="上海市徐汇区",
            loss_type="injury",
            loss_lat=...,
            loss_lon=...,
        )
        r = await svc.client.post("/v1/cases", json=ok, headers=bearer(key))
        assert r.status_code == 201, r.text
        assert r.json()["case"]["region"] == "上海市徐汇区"
        no_plate = case_body(
            plate=None, loss_type="property", loss_address="上海市静安区南京西路1266号"
        )
        r = await svc.client.post("/v1/cases", json=no_plate, headers=bearer(key))
        assert r.status_code == 201, r.text
        assert r.json()["case"]["region"] == "上海市静安区"


async def test_a_new_case_is_one_statement_and_a_duplicate_takes_the_general_path(
    start_service,
) -> None:  # type: ignore[no-untyped-def]
    """The one-statement path answers with what it stored, and writes nothing at all when an
    earlier case of the same loss exists (the general path then links the duplicate)."""
    async with start_service(DEFINITION) as svc:
        picc, cpic = await add_insurer(svc.client, "PICC"), await add_insurer(svc.client, "CPIC")
        body = case_body(plate="沪B54321")
        first = await svc.client.post("/v1/cases", json=body, headers=bearer(picc))
        assert first.status_code == 201, first.text
        stored = await svc.client.get(f"/v1/cases/{first.json()['case_id']}", headers=bearer(picc))
        assert stored.json() == first.json()["case"]

        rt = svc.runtime
        now = rt.clock.now()
        same_loss = _reported(new_case_id(now), "CPIC", "insurer_api", CaseIn(**body))
        # (not the outbox: the relay empties it meanwhile; its row is written from the events)
        tables = ("cases", "case_documents", "events")
        async with rt.pool.acquire() as conn:
            before = [await conn.fetchval(f"SELECT count(*) FROM {t}") for t in tables]
            assert await _register_at_once(rt, conn, same_loss, [], now) is None
            after = [await conn.fetchval(f"SELECT count(*) FROM {t}") for t in tables]
        assert after == before
        r = await svc.client.post(
            "/v1/cases", json={**body, "report_no": report_no()}, headers=bearer(cpic)
        )
        assert r.status_code == 201, r.text
        assert r.json()["case"]["duplicate_of"] == first.json()["case_id"]


async def test_every_invalid_field_is_a_422_naming_it(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        key = await add_insurer(svc.client, "PICC")
        for overrides, field, words in INVALID:
            r = await svc.client.post("/v1/cases", json=case_body(**overrides), headers=bearer(key))
            assert r.status_code == 422, (overrides, r.text)
            fields = {f["field"]: f["message"] for f in r.json()["fields"]}
            assert field in fields, (overrides, r.json())
            assert words.lower() in fields[field].lower(), (overrides, fields)
        # several bad fields at once: one message each
        r = await svc.client.post(
            "/v1/cases",
            json=case_body(plate="XX", reporter_phone="1", priority="now"),
            headers=bearer(key),
        )
        assert {f["field"] for f in r.json()["fields"]} == {"plate", "reporter_phone", "priority"}
        # malformed JSON, wrong shapes
        r = await svc.client.post(
            "/v1/cases",
            content=b'{"report_no": ',
            headers={**bearer(key), "content-type": "application/json"},
        )
        assert r.status_code == 422
        r = await svc.client.post("/v1/cases", json=[1, 2], headers=bearer(key))
        assert r.status_code == 422
        r = await svc.client.post(
            "/v1/cases", json=case_body(), headers={**bearer(key), "Idempotency-Key": "short"}
        )
        assert r.status_code == 422
        assert r.json()["fields"][0]["field"] == "Idempotency-Key"
        # nothing was created by any of these
        assert (await svc.client.get("/v1/cases", headers=bearer(key))).json()["items"] == []


async def test_413_415_and_auth_errors_never_500(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        key = await add_insurer(svc.client, "PICC")
        big = case_body(description="长" * 30000)
        r = await svc.client.post("/v1/cases", json=big, headers=bearer(key))
        assert r.status_code == 413
        r = await svc.client.post(
            "/v1/cases",
            content=b"report_no=1",
            headers={**bearer(key), "content-type": "text/plain"},
        )
        assert r.status_code == 415
        assert (await svc.client.post("/v1/cases", json=case_body())).status_code == 401
        r = await svc.client.post(
            "/v1/cases", json=case_body(), headers={"Authorization": "Basic abc"}
        )
        assert r.status_code == 401


async def test_idempotency_key_and_report_no_under_20_parallel_requests(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        key = await add_insurer(svc.client, "PINGAN")
        other = await add_insurer(svc.client, "CPIC")
        body = case_body()
        headers = {**bearer(key), "Idempotency-Key": "idem-0001-abcdef"}
        results = await asyncio.gather(
            *(svc.client.post("/v1/cases", json=body, headers=headers) for _ in range(20))
        )
        codes = sorted(r.status_code for r in results)
        assert codes == [200] * 19 + [201], codes
        assert len({r.json()["case_id"] for r in results}) == 1
        first = results[0].json()["case_id"]

        # the same report number without a key: 20 in parallel, still the first case
        no_key = await asyncio.gather(
            *(svc.client.post("/v1/cases", json=body, headers=bearer(key)) for _ in range(20))
        )
        assert {r.status_code for r in no_key} == {200}
        assert {r.json()["case_id"] for r in no_key} == {first}

        # a fresh report number, 20 parallel without any key: exactly one 201
        fresh = case_body()
        many = await asyncio.gather(
            *(svc.client.post("/v1/cases", json=fresh, headers=bearer(key)) for _ in range(20))
        )
        assert sorted(r.status_code for r in many) == [200] * 19 + [201]
        assert len({r.json()["case_id"] for r in many}) == 1

        # same key, different body: 409 naming the first case
        r = await svc.client.post(
            "/v1/cases", json={**body, "description": "不同的描述"}, headers=headers
        )
        assert r.status_code == 409
        assert first in r.json()["message"]

        # a new key with a report number already used: the first case, 200
        r = await svc.client.post(
            "/v1/cases", json=body, headers={**bearer(key), "Idempotency-Key": "idem-0002-abcdef"}
        )
        assert (r.status_code, r.json()["case_id"]) == (200, first)
        # keys and report numbers are per insurer: another insurer gets its own case
        r = await svc.client.post(
            "/v1/cases", json=body, headers={**bearer(other), **headers} | bearer(other)
        )
        assert r.status_code == 201
        assert r.json()["case_id"] != first

        async with svc.runtime.pool.acquire() as conn:
            n = await conn.fetchval("SELECT count(*) FROM events WHERE event_type = 'CaseReported'")
            rows = await conn.fetchval("SELECT count(*) FROM cases")
        assert n == rows == 3
        page = (
            await svc.client.get(f"/v1/cases?report_no={body['report_no']}", headers=bearer(key))
        ).json()
        assert [c["case_id"] for c in page["items"]] == [first]


async def test_report_number_alone_is_idempotent(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        key = await add_insurer(svc.client, "PICC")
        body = case_body(report_no=report_no())
        a = await svc.client.post("/v1/cases", json=body, headers=bearer(key))
        b = await svc.client.post(
            "/v1/cases", json={**body, "description": "重复推送"}, headers=bearer(key)
        )
        assert (a.status_code, b.status_code) == (201, 200)
        assert a.json()["case_id"] == b.json()["case_id"]
        assert b.json()["case"]["description"] == body["description"]


async def test_the_hand_resolved_route_answers_as_the_contract_says(start_service) -> None:  # type: ignore[no-untyped-def]
    """`POST /v1/cases` resolves its arguments by hand (its hot path): the same answers as
    FastAPI's general handling, for every kind of input."""
    async with start_service(DEFINITION) as svc:
        key = await add_insurer(svc.client, "PICC")
        body = case_body()
        r = await svc.client.post("/v1/cases", json=body, headers=bearer(key))
        assert r.status_code == 201, r.text
        assert r.headers["location"] == f"/v1/cases/{r.json()['case_id']}"
        assert r.headers["content-type"] == "application/json"
        assert set(r.json()) == {"case_id", "status", "case"}
        again = await svc.client.post("/v1/cases", json=body, headers=bearer(key))
        assert again.status_code == 200 and "location" not in again.headers
        assert again.json() == r.json()
        # a bad header and bad fields: all of them named at once
        r = await svc.client.post(
            "/v1/cases",
            json=case_body(plate="XX", priority="now"),
            headers={**bearer(key), "Idempotency-Key": "bad key with spaces"},
        )
        assert r.status_code == 422
        assert {f["field"] for f in r.json()["fields"]} == {"Idempotency-Key", "plate", "priority"}
        # no body at all; an unknown field; a form instead of JSON
        r = await svc.client.post("/v1/cases", headers=bearer(key))
        assert (r.status_code, r.json()["fields"][0]["field"]) == (422, "body")
        r = await svc.client.post("/v1/cases", json=case_body(colour="red"), headers=bearer(key))
        assert (r.status_code, r.json()["fields"][0]["field"]) == (422, "colour")
        r = await svc.client.post("/v1/cases", data={"report_no": "R1234"}, headers=bearer(key))
        assert r.status_code == 415
        assert r.json()["error"] == "unsupported_media_type"
        # odd JSON: still a 422, never a 500
        json_ct = {**bearer(key), "content-type": "application/json; charset=utf-8"}
        for raw in (b"null", b'"x"', b"\xff\xfe{}", b"[" * 5000 + b"]" * 5000, b'{"plate": 1e999}'):
            r = await svc.client.post("/v1/cases", content=raw, headers=json_ct)
            assert (r.status_code, r.json()["error"]) == (422, "invalid"), (raw[:20], r.text)
        # authentication comes first, as with FastAPI's dependencies
        r = await svc.client.post("/v1/cases", json={"plate": "XX"})
        assert r.status_code == 401
        agent = await add_staff(svc.client, "A901", "agent")
        r = await svc.client.post("/v1/cases", json=case_body(), headers=bearer(agent))
        assert r.status_code == 403


async def test_a_case_id_drawn_twice_is_drawn_again(start_service) -> None:  # type: ignore[no-untyped-def]
    """Case ids are the day and 32 random bits: an id drawn a second time (a few ten thousand
    cases a day make that likely) is replaced by a new one, never a 500 nor a lost case."""
    async with start_service(DEFINITION) as svc:
        key = await add_insurer(svc.client, "PICC")
        first = await svc.client.post("/v1/cases", json=case_body(), headers=bearer(key))
        taken = first.json()["case_id"]
        rt = svc.runtime
        for idem_key in (None, "collide-0001-abcdef"):  # the one-statement and general paths
            ev = _reported(taken, "PICC", "insurer_api", CaseIn(**case_body(plate="沪C24680")))
            view, created = await _register(
                rt, ev, scope="insurer:PICC", idem_key=idem_key, req_hash="h" if idem_key else ""
            )
            assert created and view["case_id"] != taken
            stored = await svc.client.get(f"/v1/cases/{view['case_id']}", headers=bearer(key))
            assert stored.status_code == 200
            assert stored.json()["report_no"] == ev.report_no
        kept = await svc.client.get(f"/v1/cases/{taken}", headers=bearer(key))
        assert kept.json()["report_no"] == first.json()["case"]["report_no"]


async def test_a_new_case_is_answered_as_case_out_writes_it(start_service) -> None:  # type: ignore[no-untyped-def]
    """The answer to a new case is dumped from the view built from its events (no response
    model pass): for every shape of case it equals what `GET` serialises through CaseOut."""
    async with start_service(DEFINITION) as svc:
        picc, cpic = await add_insurer(svc.client, "PICC"), await add_insurer(svc.client, "CPIC")
        minimal = {
            k: v
            for k, v in case_body().items()
            if k in ("report_no", "plate", "loss_type", "loss_time", "loss_address")
        }
        bodies = [
            (picc, case_body()),
            (picc, minimal),
            (
                picc,
                case_body(
                    survey_place="repair_shop", repair_shop="上海永达汽修", priority="urgent"
                ),
            ),
            (picc, case_body(plate=None, loss_type="property", loss_lat=None, loss_lon=None)),
            (picc, case_body(plate="沪AD12345", vehicle_model="比亚迪 汉", region="上海市徐汇区")),
            (picc, case_body(loss_time="2026-11-20T08:30:00.5+08:00", injuries=True)),
            (picc, case_body(plate="沪E13579")),
            (cpic, case_body(plate="沪E13579")),  # the same loss from another insurer: linked
        ]
        for key, body in bodies:
            r = await svc.client.post("/v1/cases", json=body, headers=bearer(key))
            assert r.status_code == 201, r.text
            out = r.json()
            stored = await svc.client.get(f"/v1/cases/{out['case_id']}", headers=bearer(key))
            assert out["case"] == stored.json(), body
            assert (out["case_id"], out["status"]) == (out["case"]["case_id"], "reported")
        assert out["case"]["duplicate_of"] is not None
