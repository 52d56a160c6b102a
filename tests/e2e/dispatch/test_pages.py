"""Pages in headless Chromium: a reported case appears live on the surveyor page and a click
acknowledges it; the dispatcher board shows the queue and assigns by hand."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from claimdesk.settings import Settings
from claimdesk.testing.plugin import artifact_path, eventually
from dispatch.bootstrap import make_definition
from dispatch.settings import DispatchSettings

from tests.integration.dispatch.helpers import add_surveyor, fake_intake, job_for_case

pytestmark = pytest.mark.browser


async def test_case_posted_at_intake_appears_live_on_the_surveyor_page_and_is_acknowledged(
    settings: Settings, start_service, page
) -> None:
    """The whole flow: an insurer posts a case at intake's real HTTP API; CaseReported goes
    through intake's outbox and the broker; dispatch assigns it; the job arrives on the
    surveyor's open page over SSE (no reload); a click acknowledges it."""
    from intake.bootstrap import DEFINITION as INTAKE

    async with (
        start_service(INTAKE) as intake,
        start_service(make_definition(DispatchSettings())) as svc,
    ):
        admin = svc.admin_headers()
        r = await intake.client.post(
            "/v1/admin/insurers", json={"code": "PICC", "name": "人保财险"}, headers=admin
        )
        assert r.status_code == 201, r.text
        api_key = r.json()["api_key"]
        s = await add_surveyor(svc.client, admin, name="钱七", team="徐汇查勘组")
        await page.goto(f"{svc.url}/surveyor")
        await page.fill("#token", s["token"])
        await page.click("#login-btn")
        await page.wait_for_selector("#conn.live", timeout=10000)
        assert "钱七" in await page.inner_text("#who")
        assert await page.is_visible("#empty")
        r = await intake.client.post(
            "/v1/cases",
            json={
                "report_no": f"RPT{uuid.uuid4().hex[:12].upper()}",
                "plate": "沪F88888",
                "loss_type": "vehicle_own_damage",
                "loss_time": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                "loss_address": "上海市徐汇区漕溪北路1号",
                "loss_lat": 31.1885,
                "loss_lon": 121.4365,
                "insured_name": "孙八",
                "insured_phone": "13612345678",
            },
            headers={"Authorization": f"Bearer {api_key}"},
        )
        assert r.status_code == 201, r.text
        case_id = r.json()["case_id"]
        job = await eventually(lambda: job_for_case(svc.client, admin, case_id), timeout=15)
        jid = job["job_id"]
        card = page.locator(f'[data-testid="job-{jid}"]')
        await card.wait_for(timeout=10000)  # no reload: it came over the stream
        text = await card.inner_text()
        assert "沪F88888" in text and "PICC" in text and "13612345678" in text
        await page.click(f'[data-testid="ack-{jid}"]')
        await page.wait_for_selector(f'[data-testid="en-route-{jid}"]', timeout=10000)
        assert "acknowledged" in await page.inner_text(f'[data-testid="status-{jid}"]')
        r = await svc.client.get(f"/v1/jobs/{jid}", headers=admin)
        assert r.json()["status"] == "acknowledged"
        acked = next(t for t in r.json()["timeline"] if t["event_type"] == "JobAcknowledged")
        assert acked["actor"] == f"surveyor:{s['surveyor_id']}"
        await page.screenshot(path=str(artifact_path("dispatch-surveyor-page.png")), full_page=True)

        # the phone is lost: a dispatcher rotates the token, and the open page signs out
        r = await svc.client.post(
            f"/v1/surveyors/{s['surveyor_id']}/token/rotate",
            json={"reason": "phone lost"},
            headers=admin,
        )
        assert r.status_code == 200, r.text
        await page.wait_for_selector("#login:not([hidden])", timeout=10000)
        assert "rotated" in await page.inner_text("#msg")
        assert await page.evaluate("localStorage.getItem('cd_surveyor_token')") is None
        await page.goto("about:blank")  # close the stream before the servers stop


async def test_board_shows_queue_and_load_and_assigns_by_hand(
    settings: Settings, start_service, page
) -> None:
    async with start_service(make_definition(DispatchSettings())) as svc:
        admin = svc.admin_headers()
        s = await add_surveyor(svc.client, admin, name="周九", skills=["property"])
        async with fake_intake(settings) as intake:
            case_id = await intake.report(plate="沪G12345")  # a vehicle case: nobody qualifies
            job = await eventually(lambda: job_for_case(svc.client, admin, case_id))
        assert job["status"] == "queued"
        await page.set_viewport_size({"width": 1280, "height": 800})
        await page.goto(f"{svc.url}/board")
        await page.fill("#token", admin["Authorization"].split()[1])
        await page.click("#go")
        row = page.locator(f'[data-testid="queue-{job["job_id"]}"]')
        await row.wait_for(timeout=10000)
        assert "lacks skill vehicle" in await row.inner_text()
        assert "0/3" in await page.inner_text(f'[data-testid="surveyor-{s["surveyor_id"]}"]')
        await row.locator("input").fill("客户指定 customer asked")
        await row.locator("button").click()
        await eventually(
            lambda: _status(svc, case_id, "assigned"),
        )
        await page.wait_for_selector(f'[data-testid="queue-{job["job_id"]}"]', state="detached")
        await page.screenshot(path=str(artifact_path("dispatch-board.png")), full_page=True)


async def _status(svc, case_id: str, want: str) -> bool:  # type: ignore[no-untyped-def]
    job = await job_for_case(svc.client, svc.admin_headers(), case_id)
    return bool(job and job["status"] == want)
