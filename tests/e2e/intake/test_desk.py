"""The agent desk in headless Chromium: log in with a staff token, register a phone report
(field errors shown in place, then the case with the closing phrase), log a consultation with a
follow-up, and see one's own cases."""

from __future__ import annotations

import re

import pytest
from claimdesk.testing.plugin import artifact_path
from intake.bootstrap import DEFINITION

from tests.integration.intake.helpers import add_insurer, add_staff, bearer

pytestmark = pytest.mark.browser


async def test_agent_registers_a_phone_report_and_a_consultation(start_service, page) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        await add_insurer(svc.client, "PICC")
        agent = await add_staff(svc.client, "A001", "agent")
        await add_staff(svc.client, "S001", "supervisor")
        await page.goto(f"{svc.url}/desk")
        await page.fill("#token", "not-a-token")
        await page.click("#login-btn")
        await page.wait_for_selector("#login-msg:not(:empty)")
        await page.fill("#token", agent)
        await page.click("#login-btn")
        greeting = page.locator('[data-testid="greeting"]')
        await greeting.wait_for()
        assert "民太安 A001 号为您服务" in await greeting.inner_text()

        await page.select_option("#r-insurer", "PICC")
        await page.fill("#r-caller", "张伟")
        await page.fill("#r-phone", "1381234")
        await page.fill("#r-plate", "AB123")  # too short
        await page.fill("#r-address", "上海市徐汇区漕溪北路88号")
        await page.fill("#r-desc", "倒车刮擦护栏")
        await page.click("#report-submit")
        plate_err = page.locator('#report-form .err[data-for="plate"]')
        await plate_err.wait_for()
        await page.wait_for_function(
            "document.querySelector('#report-form .err[data-for=plate]').textContent.length > 0"
        )
        assert "at least 7" in await plate_err.inner_text()
        assert await page.locator('#report-form .err[data-for="caller_phone"]').inner_text()

        await page.fill("#r-phone", "13812345678")
        await page.fill("#r-plate", "沪a 12345")
        await page.click("#report-submit")
        line = page.locator('[data-testid="report-case-id"]')
        await line.wait_for()
        case_id = re.search(r"C\d{8}-[0-9A-F]{8}", await line.inner_text()).group(0)  # type: ignore[union-attr]
        assert "您的情况我们已了解" in await page.inner_text('[data-testid="report-msg"]')
        case = (await svc.client.get(f"/v1/cases/{case_id}", headers=bearer(agent))).json()
        assert case["channel"] == "phone" and case["first_contact_owner"] == "A001"
        assert case["plate"] == "沪A12345" and case["caller_phone"] == "13812345678"
        assert case["region"] == "上海市徐汇区" and case["callback_promised_at"]

        await page.click("#tab-consult")
        await page.fill("#q-caller", "李娜")
        await page.fill("#q-phone", "021-62345678")
        await page.fill("#q-topic", "人伤误工费如何计算")
        await page.fill("#q-answer", "已记录,由主管核实后回复")
        await page.uncheck("#q-resolved")
        await page.fill("#q-owner", "S001")
        await page.click("#consult-submit")
        consult = page.locator('[data-testid="consult-msg"]')
        await page.wait_for_function(
            "document.querySelector('[data-testid=consult-msg]').textContent.includes('欢迎再次来电')"
        )
        assert "跟进 S001" in await consult.inner_text()
        listed = (
            await svc.client.get("/v1/consultations?owner=A001", headers=bearer(agent))
        ).json()
        assert listed[0]["follow_up_owner"] == "S001" and listed[0]["resolved"] is False

        await page.click("#tab-mine")
        await page.locator('[data-testid="mine"] tr').first.wait_for()
        assert case_id in await page.inner_text('[data-testid="mine"]')
        await page.screenshot(path=str(artifact_path("intake-desk.png")), full_page=True)
