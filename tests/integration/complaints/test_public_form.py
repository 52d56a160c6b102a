"""The customers' web form: strict validation, honeypot, rate limit, ownership."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from complaints.bootstrap import make_definition
from complaints.settings import ComplaintsSettings

from tests.integration.complaints.helpers import clock, get

FORM = {"content-type": "application/x-www-form-urlencoded"}
GOOD = {
    "caller_name": "陈女士",
    "caller_phone": "13600136000",
    "case_id": "C-77",
    "category": "assessed_amount",
    "matter": "定损金额明显低于修理厂报价，公估师不解释原因",
    "website": "",
}
CFG = ComplaintsSettings(web_form_owner="A009", web_form_per_hour=2)


async def test_form_page_is_plain_mobile_html(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(make_definition(CFG), clock=clock()) as svc:
        r = await svc.client.get("/complaint-form")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert 'name="viewport"' in r.text
        assert 'action="/complaint-form"' in r.text
        assert "<script" not in r.text and "http" not in r.text.split("<body>")[1]


async def test_a_customer_files_a_complaint_owned_by_the_duty_agent(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(make_definition(CFG), clock=clock()) as svc:
        r = await svc.client.post("/complaint-form", content=urlencode(GOOD), headers=FORM)
        assert r.status_code == 201, r.text
        match = re.search(r'id="complaint-id">(CP[0-9A-F]+)<', r.text)
        assert match
        v = await get(svc.client, match.group(1))
        assert v["owner"] == "A009"
        assert v["channel"] == "web"
        assert v["case_id"] == "C-77"
        assert v["history"][0]["actor"] == "public:127.0.0.1"
        assert v["promised_answer_at"]


async def test_bad_input_lists_every_problem_and_keeps_values_escaped(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(make_definition(CFG), clock=clock()) as svc:
        bad = {
            **GOOD,
            "caller_name": "<script>alert(1)</script>",
            "caller_phone": "123",
            "matter": "短",
            "category": "x",
        }
        r = await svc.client.post("/complaint-form", content=urlencode(bad), headers=FORM)
        assert r.status_code == 422
        assert "手机号 phone" in r.text
        assert "投诉内容 what happened" in r.text
        assert "投诉类别 category" in r.text
        assert "<script>alert(1)</script>" not in r.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
        r = await svc.client.post(
            "/complaint-form", content=urlencode({**GOOD, "website": "spam.example"}), headers=FORM
        )
        assert r.status_code == 422
        r = await svc.client.post("/complaint-form", json=GOOD)
        assert r.status_code == 415
        async with svc.runtime.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM complaints") == 0


async def test_rate_limited_per_client_and_phone(start_service) -> None:  # type: ignore[no-untyped-def]
    clk = clock()
    async with start_service(make_definition(CFG), clock=clk) as svc:
        for i in range(2):
            body = {**GOOD, "caller_phone": f"1360013600{i}"}
            r = await svc.client.post("/complaint-form", content=urlencode(body), headers=FORM)
            assert r.status_code == 201
        r = await svc.client.post(
            "/complaint-form",
            content=urlencode({**GOOD, "caller_phone": "13600136009"}),
            headers=FORM,
        )
        assert r.status_code == 429
        assert "Too many" in r.text
        clk.advance(3601)
        r = await svc.client.post("/complaint-form", content=urlencode(GOOD), headers=FORM)
        assert r.status_code == 201


async def test_oversized_form_is_refused(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(make_definition(CFG), clock=clock()) as svc:
        body = urlencode({**GOOD, "matter": "长" * 9000})
        r = await svc.client.post("/complaint-form", content=body, headers=FORM)
        assert r.status_code == 413
