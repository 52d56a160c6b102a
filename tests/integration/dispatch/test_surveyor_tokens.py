"""A surveyor's token can be rotated (a lost phone), and a retired surveyor's tokens stop working:
in the process that made the change at once, in another dispatch process within seconds, and
an open job stream of the old token ends with a `revoked` event."""

from __future__ import annotations

import json

from claimdesk.settings import Settings
from claimdesk.testing.plugin import eventually
from dispatch.bootstrap import make_definition
from dispatch.settings import DispatchSettings

from tests.integration.dispatch.helpers import SseReader, add_surveyor, bearer


async def test_rotated_and_retired_surveyor_tokens_are_refused_and_streams_end(
    settings: Settings, start_service
) -> None:  # type: ignore[no-untyped-def]
    definition = make_definition(DispatchSettings())
    async with start_service(definition) as svc, start_service(definition) as other:
        admin = svc.admin_headers()
        s = await add_surveyor(svc.client, admin)
        sid, first = s["surveyor_id"], s["token"]
        me = f"/v1/surveyors/{sid}"

        async def status(client, token: str) -> int:  # type: ignore[no-untyped-def]
            return int((await client.get(me, headers=bearer(token))).status_code)

        async def refused(client, token: str) -> bool:  # type: ignore[no-untyped-def]
            return await status(client, token) == 401

        assert await status(svc.client, first) == 200
        assert await status(other.client, first) == 200

        # bad input and the wrong caller
        url = f"/v1/surveyors/{sid}/token/rotate"
        r = await svc.client.post(url, json={}, headers=admin)
        assert r.status_code == 422 and "reason" in r.text
        r = await svc.client.post(url, json={"reason": "mine"}, headers=bearer(first))
        assert r.status_code == 403
        r = await svc.client.post(
            "/v1/surveyors/S-NONE/token/rotate", json={"reason": "x"}, headers=admin
        )
        assert r.status_code == 404

        # another device's token works beside the first
        r = await svc.client.post(f"/v1/surveyors/{sid}/token", headers=admin)
        assert r.status_code == 200 and r.json()["token_generation"] == 0
        extra = r.json()["token"]
        assert await status(svc.client, extra) == 200

        stream = f"/v1/surveyors/{sid}/jobs/stream"
        async with svc.client.stream("GET", stream, headers=bearer(first)) as resp:
            sse = SseReader(resp)
            assert (await sse.next()).event == "snapshot"
            r = await svc.client.post(url, json={"reason": "phone lost"}, headers=admin)
            assert r.status_code == 200, r.text
            second = r.json()["token"]
            assert r.json()["token_generation"] == 1
            # the open stream of the old token ends, saying why
            last = await sse.next(timeout=10)
            assert last.event == "revoked" and "rotated" in json.loads(last.data)["reason"]

        # this process refuses the old token at once; the other within its refresh
        r = await svc.client.get(me, headers=bearer(first))
        assert r.status_code == 401 and "rotated" in r.text
        await eventually(lambda: refused(other.client, first), timeout=10)
        assert await status(svc.client, extra) == 401  # every token of the old generation
        assert await status(svc.client, second) == 200
        assert await status(other.client, second) == 200
        r = await other.client.post(f"/v1/surveyors/{sid}/token", headers=admin)
        assert r.status_code == 200 and r.json()["token_generation"] == 1
        assert await status(svc.client, r.json()["token"]) == 200
        r = await svc.client.get(stream, headers=bearer(first))
        assert r.status_code == 401

        # the rotation is an event on the surveyor's stream, without the token
        async with svc.runtime.pool.acquire() as conn:
            payload = await conn.fetchval(
                "SELECT payload FROM events WHERE stream_id = $1 AND event_type = "
                "'SurveyorTokenRotated'",
                f"surveyor-{sid}",
            )
        assert payload is not None and second not in str(payload)

        # retired: every token of the surveyor, everywhere; no rotation any more
        async with other.client.stream("GET", stream, headers=bearer(second)) as resp:
            sse = SseReader(resp)
            assert (await sse.next()).event == "snapshot"
            r = await svc.client.post(
                f"/v1/surveyors/{sid}/retire", json={"reason": "left"}, headers=admin
            )
            assert r.status_code == 200, r.text
            last = await sse.next(timeout=10)
            assert last.event == "revoked" and json.loads(last.data)["reason"] == "surveyor retired"
        r = await svc.client.get(me, headers=bearer(second))
        assert r.status_code == 401 and "retired" in r.text
        await eventually(lambda: refused(other.client, second), timeout=10)
        r = await svc.client.post(url, json={"reason": "again"}, headers=admin)
        assert r.status_code == 409 and "retired" in r.text
        r = await svc.client.post(f"/v1/surveyors/{sid}/token", headers=admin)
        assert r.status_code == 409 and "retired" in r.text
        # staff and the admin are not affected
        assert (await svc.client.get(me, headers=admin)).status_code == 200

        # a process started now knows at once
        async with start_service(definition) as third:
            assert await status(third.client, second) == 401
