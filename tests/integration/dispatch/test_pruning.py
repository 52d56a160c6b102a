"""Pruning: old feed and assignment rows go; a phone resuming from before them gets a snapshot."""

from __future__ import annotations

import json
from datetime import timedelta

from claimdesk.settings import Settings
from claimdesk.testing.plugin import eventually
from claimdesk.timers import schedule
from dispatch.bootstrap import make_definition
from dispatch.handlers import FEED_PRUNED_KEY, PRUNE_TIMER, job_id_for
from dispatch.settings import DispatchSettings

from tests.integration.dispatch.helpers import SseReader, add_surveyor, bearer, fake_intake


async def test_old_feed_and_assignment_rows_are_pruned_and_a_late_resume_gets_a_snapshot(
    settings: Settings, start_service
) -> None:  # type: ignore[no-untyped-def]
    ds = DispatchSettings(retention_days=7, prune_interval_s=3600)
    async with start_service(make_definition(ds)) as svc, fake_intake(settings) as intake:
        pool, clock = svc.runtime.pool, svc.runtime.clock
        # armed at start, it ran once and re-armed itself an interval ahead
        async with pool.acquire() as conn:
            armed = await eventually(
                lambda: conn.fetchval(
                    "SELECT due_at FROM timers WHERE timer_id = $1 AND fired_at IS NULL "
                    "AND due_at > $2",
                    PRUNE_TIMER,
                    clock.now() + timedelta(minutes=50),
                )
            )
        assert armed <= clock.now() + timedelta(seconds=3600)

        s = await add_surveyor(svc.client, svc.admin_headers(), capacity=5)
        sid, headers = s["surveyor_id"], bearer(s["token"])
        url = f"/v1/surveyors/{sid}/jobs/stream"
        async with svc.client.stream("GET", url, headers=headers) as resp:
            sse = SseReader(resp)
            assert (await sse.next()).event == "snapshot"
            old_case = await intake.report(plate="沪A10001")
            old = await sse.next_job()
            new_case = await intake.report(plate="沪A10002")
            new = await sse.next_job()
        assert (old["job"]["case_id"], new["job"]["case_id"]) == (old_case, new_case)

        # the first job's rows are a month old; the second's are not
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE job_feed SET at = at - interval '30 days' WHERE job_id = $1",
                job_id_for(old_case),
            )
            await conn.execute(
                "UPDATE assignments SET assigned_at = assigned_at - interval '30 days' "
                "WHERE job_id = $1",
                job_id_for(old_case),
            )
            await schedule(conn, PRUNE_TIMER, PRUNE_TIMER, clock.now(), {})

        async def pruned() -> bool:
            async with pool.acquire() as conn:
                return bool(
                    await conn.fetchval(
                        "SELECT fired_at IS NULL AND due_at > $2 FROM timers WHERE timer_id = $1",
                        PRUNE_TIMER,
                        clock.now() + timedelta(minutes=50),
                    )
                )

        await eventually(pruned, timeout=10)
        async with pool.acquire() as conn:
            feed = await conn.fetch("SELECT job_id, seq FROM job_feed WHERE surveyor_id = $1", sid)
            assert [r["job_id"] for r in feed] == [job_id_for(new_case)]
            jobs = await conn.fetch("SELECT job_id FROM assignments WHERE surveyor_id = $1", sid)
            assert [r["job_id"] for r in jobs] == [job_id_for(new_case)]
            through = await conn.fetchval(
                "SELECT (value #>> '{}')::bigint FROM dispatch_config WHERE key = $1",
                FEED_PRUNED_KEY,
            )
            assert through == int(old["_id"])
        # the jobs themselves and their history stay
        r = await svc.client.get(f"/v1/jobs/{job_id_for(old_case)}", headers=svc.admin_headers())
        assert r.status_code == 200 and r.json()["case_id"] == old_case

        # resuming from before the pruned position: a snapshot of the open jobs, not a gap
        async with svc.client.stream("GET", url, headers={**headers, "Last-Event-ID": "0"}) as resp:
            sse = SseReader(resp)
            snap = await sse.next()
            assert snap.event == "snapshot"
            assert {j["case_id"] for j in json.loads(snap.data)["jobs"]} == {old_case, new_case}
        # resuming from the pruned position itself: nothing was lost, the stream goes on
        third = await intake.report(plate="沪A10003")
        async with svc.client.stream(
            "GET", url, headers={**headers, "Last-Event-ID": old["_id"]}
        ) as resp:
            sse = SseReader(resp)
            first, second = await sse.next_job(), await sse.next_job()
            assert [first["job"]["case_id"], second["job"]["case_id"]] == [new_case, third]
