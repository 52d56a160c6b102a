"""Agent pages and the customers' form in headless Chromium, against the real service."""

from __future__ import annotations

from typing import Any

import pytest
from claimdesk.testing.plugin import TEST_SECRET, artifact_path, eventually
from complaints.bootstrap import DEFINITION, make_definition
from complaints.settings import ComplaintsSettings

from tests.integration.complaints.helpers import (
    AGENT,
    case_known,
    clock,
    events_of,
    fast_policy,
    file,
    get,
    producing,
    put_policy,
    survey,
    wait_for_events,
)
from tests.support import case_reported

pytestmark = pytest.mark.browser


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def test_worklist_and_complaint_page_show_clocks_escalation_and_history(  # type: ignore[no-untyped-def]
    start_service, page: Any
) -> None:
    assert TEST_SECRET
    clk = clock()
    async with start_service(DEFINITION, clock=clk) as svc:
        c = svc.client
        await put_policy(c, "fast", fast_policy(re_escalate_after=None))
        breached = await file(c, matter="查勘员迟到三个小时，电话也不接")
        clk.advance(11)
        await wait_for_events(c, breached, "ComplaintEscalated", 1)
        fresh = await file(c, case_id="C-2", category="attitude", matter="定损员态度恶劣")

        await page.goto(f"{svc.url}/agent")
        await page.fill("#token", token_of(AGENT))
        await page.click("#login-form button")
        await page.wait_for_selector("li.item")
        ids = await page.eval_on_selector_all("li.item", "els => els.map(e => e.dataset.item)")
        assert ids == [breached, fresh]  # the overdue one first
        first = page.locator("li.item").first
        assert "overdue" in (await first.get_attribute("class") or "")
        assert "组长 team lead" in await first.inner_text()
        assert "逾期 overdue" in await first.inner_text()
        await page.screenshot(path=str(artifact_path("complaints-worklist.png")), full_page=True)

        await first.locator("a").click()
        await page.wait_for_selector("tr[data-clock='first_response']")
        assert await page.inner_text("#level") == "组长 team lead"
        assert await page.inner_text("#owner") == "A001"
        fr = await page.inner_text("tr[data-clock='first_response']")
        assert "breached" in fr
        assert "逾期 overdue" in fr
        history = await page.inner_text("#history")
        assert "ComplaintReceived" in history
        assert "ComplaintEscalated" in history
        await page.screenshot(path=str(artifact_path("complaints-complaint.png")), full_page=True)

        # triage from the page: a named assignee, the first-response clock stops
        await page.select_option("#t-valid", "true")
        await page.fill("#t-assignee", "T003")
        await page.fill("#t-reason", "迟到属实")
        await page.click("#triage-form button")
        await page.wait_for_function("document.querySelector('#status').textContent === 'assigned'")
        assert await page.inner_text("#assignee") == "T003"
        v = await get(c, breached)
        assert events_of(v, "ComplaintAssigned")[0]["data"]["assignee"] == "T003"
        assert events_of(v, "ComplaintTriaged")[0]["actor"] == "agent:A001"

        # wait on the customer from the page: clocks pause
        await page.fill("#w-reason", "等待客户提供照片")
        await page.click("#wait-form button")
        await page.wait_for_function(
            "document.querySelector('#status').textContent === 'waiting_on_customer'"
        )
        assert "paused" in await page.inner_text("tr[data-clock='resolution']")


async def test_customer_form_on_a_phone(start_service, page: Any) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION, clock=clock()) as svc:
        await page.goto(f"{svc.url}/complaint-form")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 412  # no sideways scrolling on a phone
        await page.fill("#caller_name", "陈女士")
        await page.fill("#caller_phone", "123")
        await page.select_option("#category", "damage")
        await page.fill("#matter", "修车时车门被刮伤，修理厂不认")
        await page.click("button[type=submit]")
        await page.wait_for_selector("#errors")
        assert "手机号 phone" in await page.inner_text("#errors")
        assert await page.input_value("#caller_name") == "陈女士"  # kept for correction
        await page.fill("#caller_phone", "13600136000")
        await page.click("button[type=submit]")
        await page.wait_for_selector("#complaint-id")
        complaint_id = await page.inner_text("#complaint-id")
        await page.screenshot(
            path=str(artifact_path("complaints-form-received.png")), full_page=True
        )
        v = await eventually(lambda: get(svc.client, complaint_id))
        assert v["channel"] == "web"
        assert v["category"] == "damage"


async def test_callback_page_records_tries_and_opens_a_linked_complaint(  # type: ignore[no-untyped-def]
    start_service, settings, page: Any
) -> None:
    cfg = ComplaintsSettings(callback_agents=["A001"], callback_delay_s=60, callback_max_attempts=3)
    async with (
        start_service(make_definition(cfg), clock=clock()) as svc,
        producing(settings, "intake") as intake,
        producing(settings, "dispatch") as dispatch,
    ):
        await intake.emit(
            "C-8", case_reported("C-8", insured_name="孙女士", insured_phone="13500135000")
        )
        await case_known(svc, "C-8")
        await dispatch.emit("job-8", survey("C-8", job="J8"))

        await page.goto(f"{svc.url}/agent")
        await page.fill("#token", token_of(AGENT))
        await page.click("#login-form button")
        await page.wait_for_selector("li.item[data-item='CB-J8']", timeout=20_000)
        await page.click("li.item[data-item='CB-J8'] a")
        await page.wait_for_selector("#attempts")
        await page.fill("#u-reason", "无人接听")
        await page.click("#unreached-form button")
        await page.wait_for_function("document.querySelector('#status').textContent === 'retrying'")
        assert await page.inner_text("#attempts") == "1"
        await page.check("#sat-2")
        await page.check("#rating-1")
        await page.fill("#reasons", "到场慢，态度冷淡")
        await page.check("#open-complaint")
        await page.select_option("#c-category", "delay")
        await page.click("#answers-form button")
        await page.wait_for_selector("#complaint-link")
        assert await page.inner_text("#status") == "completed"
        await page.screenshot(path=str(artifact_path("complaints-callback.png")), full_page=True)
        complaint_id = await page.inner_text("#complaint-link")
        await page.click("#complaint-link")
        await page.wait_for_selector("tr[data-clock='first_response']")
        assert await page.inner_text("#owner") == "A001"
        v = await get(svc.client, complaint_id)
        assert v["channel"] == "callback"
        assert v["callback_id"] == "CB-J8"
        assert v["caller_name"] == "孙女士"
        assert v["matter"] == "到场慢; 态度冷淡"
        cb = (await svc.client.get("/v1/callbacks/CB-J8", headers=AGENT)).json()
        assert (cb["satisfaction"], cb["surveyor_rating"], cb["attempts"]) == (2, 1, 2)
