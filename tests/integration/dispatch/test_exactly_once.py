"""Exactly once: redelivered or duplicated CaseReported, and two dispatch runtimes side by side."""

from __future__ import annotations

import asyncio

import pytest
from claimdesk.eventstore import ConcurrencyConflict
from claimdesk.kafka import make_producer
from claimdesk.settings import Settings
from claimdesk.testing.plugin import eventually
from dispatch import handlers
from dispatch.bootstrap import make_definition
from dispatch.settings import DispatchSettings

from tests.integration.dispatch.helpers import (
    SseReader,
    add_surveyor,
    bearer,
    fake_intake,
    job_for_case,
)
from tests.support import case_reported, read_topic


async def _counts(pool, case_id: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT event_type, count(*) AS n FROM events WHERE stream_id = $1 GROUP BY 1",
            f"job-{case_id}",
        )
        n_assign = await conn.fetchval(
            "SELECT count(*) FROM assignments WHERE job_id = $1", f"J-{case_id}"
        )
    out = {r["event_type"]: r["n"] for r in rows}
    out["assignments"] = n_assign
    return out


async def test_redelivered_and_duplicated_case_reported_assign_once(
    settings: Settings, start_service
) -> None:
    async with start_service(make_definition(DispatchSettings())) as svc:
        admin = svc.admin_headers()
        for i in range(3):
            await add_surveyor(svc.client, admin, name=f"S{i}", capacity=10)
        async with fake_intake(settings) as intake:
            case_id = await intake.report()
            await eventually(lambda: job_for_case(svc.client, admin, case_id))
            # a redelivery: the very same message produced again (same event id)
            [record] = [
                r
                for r in await read_topic(settings, settings.topic("intake"), 1)
                if r.key.decode() == case_id
            ]
            producer = make_producer(settings, "test-dup")
            await producer.start()
            try:
                for _ in range(3):
                    await producer.send_and_wait(
                        record.topic,
                        value=record.value,
                        key=record.key,
                        headers=list(record.headers),
                    )
            finally:
                await producer.stop()
            # a duplicate publish: the same case reported again under a new event id
            await intake.publish(f"case-{case_id}-again", [case_reported(case_id)], 0)
            marker = await intake.report()  # after both duplicates on the topic
            await eventually(lambda: job_for_case(svc.client, admin, marker))
            consumer = svc.runtime.consumers[0]
            await eventually(lambda: consumer.stats.skipped_duplicates >= 3)
        counts = await _counts(svc.runtime.pool, case_id)
        assert counts["JobOpened"] == 1
        assert counts["SurveyorAssigned"] == 1
        assert counts["assignments"] == 1
        jobs = (await svc.client.get("/v1/jobs", params={"case_id": case_id}, headers=admin)).json()
        assert len(jobs) == 1


async def test_two_runtimes_side_by_side_never_assign_a_case_twice(
    settings: Settings, start_service
) -> None:
    # different consumer groups: BOTH runtimes receive every CaseReported and race for it
    one = make_definition(DispatchSettings(consumer_group=f"{settings.topic_prefix}d-one"))
    two = make_definition(DispatchSettings(consumer_group=f"{settings.topic_prefix}d-two"))
    async with start_service(one) as a, start_service(two) as b:
        admin = a.admin_headers()
        for i in range(4):
            await add_surveyor(a.client, admin, name=f"S{i}", capacity=20)
        async with fake_intake(settings) as intake:
            cases = [await intake.report() for _ in range(20)]
            for c in cases:
                await eventually(lambda c=c: job_for_case(b.client, admin, c))
            consumers = [c for rt in (a.runtime, b.runtime) for c in rt.consumers]
            # every message reached both processes; the shared processed-event marks (same
            # schema) let exactly one of them handle it, the other skips it as a duplicate
            await eventually(
                lambda: sum(c.stats.handled + c.stats.skipped_duplicates for c in consumers) >= 40
            )
            assert sum(c.stats.handled for c in consumers) == 20
            assert sum(c.stats.skipped_duplicates for c in consumers) == 20
        # and a direct race of the same event in both processes, past the consumer marks:
        # the job stream's expected_version 0 (behind the assignment lock) lets one win
        race = case_reported("C-race", loss_lat=31.23, loss_lon=121.47)

        async def attempt(rt) -> bool:  # type: ignore[no-untyped-def]
            async with rt.pool.acquire() as conn, conn.transaction():
                return await handlers.on_case_reported(rt, conn, race)

        # a surveyor right at the loss, watching the stream of process B
        near = await add_surveyor(a.client, admin, name="近", base_lat=31.23, base_lon=121.47)
        url = f"/v1/surveyors/{near['surveyor_id']}/jobs/stream"
        async with b.client.stream("GET", url, headers=bearer(near["token"])) as resp:
            sse = SseReader(resp)
            assert (await sse.next()).event == "snapshot"
            won = await asyncio.gather(*(attempt(rt) for rt in (a.runtime, b.runtime, a.runtime)))
            assert sorted(won) == [False, False, True]
            # whichever process assigned it, B's stream hears it (LISTEN/NOTIFY after commit)
            msg = await sse.next_job()
            assert msg["job"]["case_id"] == "C-race" and msg["kind"] == "assigned"
        for c in [*cases, "C-race"]:
            counts = await _counts(a.runtime.pool, c)
            assert counts.get("JobOpened") == 1 and counts.get("SurveyorAssigned") == 1, (c, counts)
            assert counts["assignments"] == 1


async def test_a_fetched_batch_of_cases_is_written_at_once_and_in_full(
    settings: Settings, start_service
) -> None:
    """`cases_reported` over one fetch: the new jobs go to Postgres in one round trip, each
    with its own events, outbox row, feed row and timers; a case seen twice in the fetch gets
    one job, a case nobody can take goes to the queue, and two jobs for one surveyor count
    twice in the load. A case whose job stream exists fails the whole batch: nothing of it
    stays."""
    async with start_service(make_definition(DispatchSettings())) as svc:
        admin = svc.admin_headers()
        only = (await add_surveyor(svc.client, admin, name="Solo", capacity=5))["surveyor_id"]
        rt = svc.runtime
        a, b, c = case_reported(), case_reported(), case_reported(loss_type="property")
        async with rt.pool.acquire() as conn:
            async with conn.transaction():
                opened = await handlers.cases_reported(rt, conn, [a, b, a, c])
            assert opened == 3
            for case, last in ((a, "SurveyorAssigned"), (b, "SurveyorAssigned")):
                types = await conn.fetch(
                    "SELECT event_type, sequence FROM events WHERE stream_id = $1 "
                    "ORDER BY sequence",
                    f"job-{case.case_id}",
                )
                assert [(r["event_type"], r["sequence"]) for r in types] == [
                    ("JobOpened", 1),
                    (last, 2),
                ]
            queued = await conn.fetchval("SELECT status FROM jobs WHERE case_id = $1", c.case_id)
            assert queued == "queued"
            assert (
                await conn.fetchval("SELECT open_jobs FROM surveyors WHERE surveyor_id = $1", only)
                == 2
            )
            assert (
                await conn.fetchval("SELECT count(*) FROM job_feed WHERE surveyor_id = $1", only)
                == 2
            )
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM timers WHERE timer_id LIKE 'ack:%' OR timer_id LIKE 'sms:%'"
                )
                == 4
            )
            # a stream already begun (as by a writer that skipped the lock): all or none
            d = case_reported()
            await rt.store.append(conn, f"job-{d.case_id}", [case_reported(d.case_id)], 0)
            e = case_reported()
            with pytest.raises(ConcurrencyConflict):
                async with conn.transaction():
                    await handlers.cases_reported(rt, conn, [e, d])
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM jobs WHERE case_id = ANY($1::text[])",
                    [d.case_id, e.case_id],
                )
                == 0
            )
            versions = [await rt.store.stream_version(conn, f"job-{x.case_id}") for x in (e, d)]
            assert versions == [0, 1]
