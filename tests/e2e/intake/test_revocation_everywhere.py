"""A staff token revoked at intake is refused by every service within seconds: the revocation
travels as a StaffTokensRevoked event over the real broker."""

from __future__ import annotations

import json
from typing import Any

import httpx
from analytics.bootstrap import DEFINITION as ANALYTICS
from claimdesk.testing.plugin import eventually
from complaints.bootstrap import DEFINITION as COMPLAINTS
from dispatch.bootstrap import DEFINITION as DISPATCH
from intake.bootstrap import DEFINITION as INTAKE

from tests.integration.dispatch.helpers import SseReader


async def test_rotated_and_deactivated_tokens_are_refused_by_every_service(start_service) -> None:  # type: ignore[no-untyped-def]
    async with (
        start_service(INTAKE) as intake,
        start_service(DISPATCH) as dispatch,
        start_service(COMPLAINTS) as complaints,
        start_service(ANALYTICS) as analytics,
    ):
        r = await intake.client.post(
            "/v1/admin/staff",
            json={"number": "S101", "name": "周敏", "role": "supervisor", "team": "质检组"},
            headers=intake.admin_headers(),
        )
        assert r.status_code == 201, r.text
        first = r.json()["token"]
        reads: list[tuple[httpx.AsyncClient, str]] = [
            (dispatch.client, "/v1/dispatch/queue"),
            (complaints.client, "/v1/worklist"),
            (analytics.client, "/v1/stats/cases?granularity=day"),
        ]

        async def statuses(token: str) -> list[int]:
            headers = {"Authorization": f"Bearer {token}"}
            return [(await c.get(path, headers=headers)).status_code for c, path in reads]

        async def refused(token: str) -> bool:
            return await statuses(token) == [401, 401, 401]

        assert await statuses(first) == [200, 200, 200]

        # rotation: the old token goes everywhere, the new one works everywhere, and a
        # dashboard stream opened with it ends
        async with analytics.client.stream(
            "GET", "/v1/dashboard/stream", params={"token": first}
        ) as resp:
            sse = SseReader(resp)
            assert (await sse.next()).event == "snapshot"
            r = await intake.client.post(
                "/v1/admin/staff/S101/tokens/rotate", headers=intake.admin_headers()
            )
            assert r.status_code == 200, r.text
            second = r.json()["token"]
            ev = await sse.next(timeout=20)
            for _ in range(20):  # snapshots of the live dashboard may come first
                if ev.event != "snapshot":
                    break
                ev = await sse.next(timeout=20)
            assert ev.event == "revoked" and json.loads(ev.data)["reason"] == "token revoked"
        await eventually(lambda: refused(first), timeout=20)
        answer: Any = (
            await dispatch.client.get(
                "/v1/dispatch/queue", headers={"Authorization": f"Bearer {first}"}
            )
        ).json()
        assert "revoked" in str(answer)
        assert await statuses(second) == [200, 200, 200]
        # the SSE/page paths that take the token from the query string refuse it too
        r = await analytics.client.get(
            "/v1/reports/daily", params={"token": first, "format": "html"}
        )
        assert r.status_code == 401

        # deactivation: every token of the person
        r = await intake.client.post("/v1/admin/staff/S101/revoke", headers=intake.admin_headers())
        assert r.status_code == 200 and r.json()["revoked"] == 1
        await eventually(lambda: refused(second), timeout=20)
        assert (
            await intake.client.get("/v1/cases", headers={"Authorization": f"Bearer {second}"})
        ).status_code == 401

        # each service keeps what it learned: a process started now refuses at once
        async with start_service(DISPATCH) as again:
            r = await again.client.get(
                "/v1/dispatch/queue", headers={"Authorization": f"Bearer {second}"}
            )
            assert r.status_code == 401
