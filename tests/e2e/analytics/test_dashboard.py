"""The ops dashboard in headless Chromium: a case posted at intake appears without a reload."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from analytics.bootstrap import DEFINITION
from claimdesk.settings import Settings
from claimdesk.testing.plugin import TEST_ADMIN, artifact_path
from intake.bootstrap import DEFINITION as INTAKE

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN}"}


def case_body() -> dict[str, Any]:
    return {
        "report_no": f"RPT{uuid.uuid4().hex[:12].upper()}",
        "policy_no": "PDAA202631010000012345",
        "plate": "沪A12345",
        "loss_type": "vehicle_own_damage",
        "loss_time": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "loss_address": "上海市浦东新区世纪大道100号",
        "description": "两车追尾,前车后保险杠受损",
        "reporter_name": "张伟",
        "reporter_phone": "13812345678",
    }


@pytest.mark.browser
async def test_case_posted_at_intake_appears_on_the_dashboard(
    settings: Settings,
    start_service,  # type: ignore[no-untyped-def]
    page,  # type: ignore[no-untyped-def]
) -> None:
    async with start_service(INTAKE) as intake, start_service(DEFINITION) as svc:
        r = await intake.client.post(
            "/v1/admin/insurers", json={"code": "CPIC", "name": "太平洋财产保险"}, headers=ADMIN
        )
        assert r.status_code == 201, r.text
        key = {"Authorization": f"Bearer {r.json()['api_key']}"}
        await page.goto(f"{svc.url}/?token={TEST_ADMIN}")
        await page.wait_for_selector("#status:has-text('live')", timeout=10000)
        assert await page.locator("#cases-today").inner_text() == "no cases today yet"

        r = await intake.client.post("/v1/cases", json=case_body(), headers=key)
        assert r.status_code == 201, r.text
        first = r.json()["case_id"]
        await page.wait_for_selector("[data-count='CPIC']:has-text('1')", timeout=8000)
        await page.wait_for_selector(f"#feed :text('{first}')", timeout=2000)
        await page.wait_for_selector(f"#waiting-assignment :text('{first}')", timeout=2000)
        r = await intake.client.post("/v1/cases", json=case_body(), headers=key)
        assert r.status_code == 201, r.text
        await page.wait_for_selector("[data-count='CPIC']:has-text('2')", timeout=8000)
        await page.screenshot(path=str(artifact_path("analytics-dashboard.png")), full_page=True)

        # The stream refuses a bad token; the JSON snapshot needs a bearer token.
        assert (await svc.client.get("/v1/dashboard/stream?token=wrong")).status_code == 401
        assert (await svc.client.get("/v1/dashboard/snapshot")).status_code == 401
        snap = (await svc.client.get("/v1/dashboard/snapshot", headers=ADMIN)).json()
        assert {c["insurer_code"]: c["cases"] for c in snap["cases_today"]} == {"CPIC": 2}
        # History of the posted case shows who acted (the insurer) across services.
        hist = (await svc.client.get(f"/v1/cases/{first}/history", headers=ADMIN)).json()
        assert hist["events"][0]["type"] == "CaseReported"
        assert hist["state"]["status"] == "reported"
