"""Push: the SSE job stream (resume, heartbeats), SMS through the gateway, signed team webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from claimdesk.settings import Settings
from claimdesk.testing.plugin import eventually
from dispatch import stream
from dispatch.bootstrap import make_definition
from dispatch.notify import sign_webhook
from dispatch.settings import DispatchSettings

from tests.integration.dispatch.helpers import SseReader, add_surveyor, bearer, fake_intake


async def notified(svc, case_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    async with svc.runtime.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT payload FROM events WHERE stream_id = $1 AND event_type = 'JobNotified' "
            "ORDER BY sequence",
            f"job-{case_id}",
        )
    return [
        r["payload"] if isinstance(r["payload"], dict) else json.loads(r["payload"]) for r in rows
    ]


async def test_stream_delivers_new_jobs_resumes_and_beats(
    settings: Settings, start_service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "FEED_PAGE", 1)  # the resume below then reads two pages
    ds = DispatchSettings(heartbeat_s=0.3)
    async with start_service(make_definition(ds)) as svc, fake_intake(settings) as intake:
        s = await add_surveyor(svc.client, svc.admin_headers(), phone="13900001111")
        sid, headers = s["surveyor_id"], bearer(s["token"])
        url = f"/v1/surveyors/{sid}/jobs/stream"
        async with svc.client.stream("GET", url, headers=headers) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            sse = SseReader(resp)
            snap = await sse.next()
            assert snap.event == "snapshot" and json.loads(snap.data) == {"jobs": []}
            case1 = await intake.report(plate="沪C11111")
            msg = await sse.next_job()
            assert msg["kind"] == "assigned" and msg["job"]["case_id"] == case1
            assert msg["job"]["plate"] == "沪C11111"
            last_id = msg["_id"]
            await asyncio.sleep(0.8)
            assert sse.pings >= 1  # heartbeats while idle
        # the stream delivery and the SMS are recorded as JobNotified with their outcome
        channels = await eventually(lambda: _channels(svc, case1, {"stream", "sms"}), timeout=10)
        assert channels == {"stream": "delivered", "sms": "delivered"}
        assert len([r for r in await notified(svc, case1) if r["channel"] == "stream"]) == 1
        sms = svc.runtime.extras["sms"].sent
        to, text = next(m for m in sms if "沪C11111" in m[1])
        assert to == "13900001111"
        assert "PICC" in text and "世纪大道" in text and case1 in text
        # offline: two more jobs, then resume from the last id: exactly those two, no snapshot
        case2 = await intake.report()
        case3 = await intake.report()
        await eventually(lambda: _assigned_count(svc, sid, 3))
        async with svc.client.stream(
            "GET", url, headers={**headers, "Last-Event-ID": last_id}
        ) as resp:
            sse = SseReader(resp)
            first, second = await sse.next_job(), await sse.next_job()
            # two cases on different partitions: either order
            assert {first["job"]["case_id"], second["job"]["case_id"]} == {case2, case3}
            assert int(first["_id"]) > int(last_id)
        # query-string token for browsers' EventSource; another surveyor is refused
        other = await add_surveyor(svc.client, svc.admin_headers(), name="other")
        r = await svc.client.get(url, params={"access_token": other["token"]})
        assert r.status_code == 403
        r = await svc.client.get(url)
        assert r.status_code == 401


async def _channels(svc, case_id: str, want: set[str]) -> dict[str, str] | None:  # type: ignore[no-untyped-def]
    rows = await notified(svc, case_id)
    got = {r["channel"]: r["outcome"] for r in rows}
    return got if want <= set(got) else None


async def _assigned_count(svc, sid: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    r = await svc.client.get("/v1/jobs", params={"surveyor_id": sid}, headers=svc.admin_headers())
    return len(r.json()) >= n


@contextlib.asynccontextmanager
async def receiver(fail_first: int):  # type: ignore[no-untyped-def]
    """A bare HTTP endpoint on loopback that fails the first `fail_first` posts."""
    got: list[tuple[dict[str, str], bytes, int]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {
            k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        status = 500 if len(got) < fail_first else 200
        got.append((headers, body, status))
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook", got
    finally:
        server.close()


async def test_team_webhook_is_signed_and_retried(settings: Settings, start_service) -> None:
    ds = DispatchSettings(webhook_backoff_s=0.1, webhook_max_attempts=4)
    secret = "0123456789abcdef-team-secret"
    async with (
        receiver(fail_first=2) as (url, got),
        start_service(make_definition(ds)) as svc,
        fake_intake(settings) as intake,
    ):
        admin = svc.admin_headers()
        s = await add_surveyor(svc.client, admin, team="宝山查勘组")
        r = await svc.client.put(
            "/v1/teams/宝山查勘组/webhook", json={"url": url, "secret": secret}, headers=admin
        )
        assert r.status_code == 200
        bad = await svc.client.put(
            "/v1/teams/x/webhook", json={"url": "ftp://x", "secret": "s"}, headers=admin
        )
        assert bad.status_code == 422
        case_id = await intake.report(plate="沪D22222")
        await eventually(lambda: len(got) >= 3, timeout=15)
        assert [g[2] for g in got[:3]] == [500, 500, 200]
        for headers, body, _ in got:
            ts = headers["x-claimdesk-timestamp"]
            assert headers["x-claimdesk-signature"] == sign_webhook(secret, ts, body)
            payload = json.loads(body)
            assert payload["job"]["surveyor_id"] == s["surveyor_id"]
            assert payload["job"]["plate"] == "沪D22222"
        rows = await eventually(lambda: _webhook_rows(svc, case_id, 3), timeout=10)
        assert [(r["outcome"], r["attempt"]) for r in rows] == [
            ("failed", 1), ("failed", 2), ("delivered", 3)
        ]  # fmt: skip
        await asyncio.sleep(0.5)
        assert len(got) == 3  # no more retries after a success


async def _webhook_rows(svc, case_id: str, n: int):  # type: ignore[no-untyped-def]
    rows = [r for r in await notified(svc, case_id) if r["channel"] == "webhook"]
    return rows if len(rows) >= n else None


class FlakyGateway:
    """An SMS gateway (the pluggable interface) whose first send fails."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def send(self, to: str, text: str) -> str:
        self.calls.append((to, text))
        if len(self.calls) == 1:
            raise ConnectionError("gateway timeout")
        return "accepted id=42"


async def test_a_failed_sms_is_recorded_and_retried(settings: Settings, start_service) -> None:
    async with start_service(make_definition(DispatchSettings())) as svc:
        gateway = FlakyGateway()
        svc.runtime.extras["sms"] = gateway
        await add_surveyor(svc.client, svc.admin_headers(), phone="13900002222")
        async with fake_intake(settings) as intake:
            case_id = await intake.report()

            async def sms_rows() -> list[dict] | None:  # type: ignore[type-arg]
                rows = [r for r in await notified(svc, case_id) if r["channel"] == "sms"]
                return rows if len(rows) >= 2 else None

            rows = await eventually(sms_rows, timeout=15)
        assert [(r["outcome"], r["attempt"]) for r in rows] == [("failed", 1), ("delivered", 2)]
        assert "gateway timeout" in rows[0]["detail"] and rows[1]["detail"] == "accepted id=42"
        assert [c[0] for c in gateway.calls] == ["13900002222", "13900002222"]
