"""The ops dashboard in headless Chromium: a reported case appears without a reload."""

from __future__ import annotations

import random

import pytest
from analytics.bootstrap import DEFINITION
from claimdesk.settings import Settings
from claimdesk.testing.plugin import TEST_ADMIN, artifact_path

from tests.integration.analytics.workload import case_reported, producers


@pytest.mark.browser
async def test_reported_case_appears_on_the_dashboard(
    settings: Settings, start_service, page
) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc, producers(settings) as p:
        await page.goto(f"{svc.url}/?token={TEST_ADMIN}")
        await page.wait_for_selector("#status:has-text('live')", timeout=10000)
        assert await page.locator("#cases-today").inner_text() == "no cases today yet"
        rng = random.Random(3)
        # Intake has no POST /v1/cases in git yet: append through an intake-schema store + relay.
        await p.append("intake", "case-DASH1", [case_reported("DASH1", rng, insurer_code="CPIC")])
        await page.wait_for_selector("[data-count='CPIC']:has-text('1')", timeout=8000)
        await page.wait_for_selector("#feed :text('DASH1')", timeout=2000)
        await page.wait_for_selector("#waiting-assignment :text('DASH1')", timeout=2000)
        await p.append("intake", "case-DASH2", [case_reported("DASH2", rng, insurer_code="CPIC")])
        await page.wait_for_selector("[data-count='CPIC']:has-text('2')", timeout=8000)
        await page.screenshot(path=str(artifact_path("analytics-dashboard.png")), full_page=True)
        # Without a token the stream refuses; the JSON snapshot needs a bearer token.
        r = await svc.client.get("/v1/dashboard/stream?token=wrong")
        assert r.status_code == 401
        r = await svc.client.get("/v1/dashboard/snapshot", headers=svc.admin_headers())
        snap = r.json()
        assert {c["insurer_code"]: c["cases"] for c in snap["cases_today"]} == {"CPIC": 2}
