"""Two live folds taking the same events at once (a rebalance): each event is stored and
counted once. The history's key is the dedupe; the consumer writes no marks for a batch."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from analytics.bootstrap import DEFINITION
from analytics.codec import decode_fast
from analytics.consumers import consumer_specs, fold_config
from analytics.folder import Folder, share_tables
from analytics.projections import FoldConfig
from analytics.rebuild import SHADOW, prepare_shadow, swap_in
from analytics.settings import AnalyticsSettings
from analytics.tables import MIGRATIONS
from asyncpg.transaction import Transaction
from claimdesk.clock import SystemClock
from claimdesk.db import CORE_MIGRATIONS, create_pool, migrate
from claimdesk.events import dispatch as de
from claimdesk.events.base import Envelope, Event
from claimdesk.eventstore import wire_message
from claimdesk.service import Runtime
from claimdesk.settings import Settings

from tests.integration.analytics.workload import case_reported


def published(case_id: str) -> Envelope:
    """A CaseReported as the consumer decodes it from its message."""
    return message(case_reported(case_id, random.Random(case_id)), f"case-{case_id}", "intake")


def message(e: Event, stream_id: str, producer: str, sequence: int = 1) -> Envelope:
    """`e` as the consumer decodes it from its published message."""
    at = datetime.now(UTC)
    row = {
        "event_id": uuid.uuid4(),
        "event_type": e.event_type,
        "schema_version": e.schema_version,
        "stream_id": stream_id,
        "sequence": sequence,
        "occurred_at": at,
        "recorded_at": at,
        "producer": producer,
        "correlation_id": uuid.uuid4(),
        "causation_id": None,
        "actor": "agent:A001",
        "key": e.partition_key() or stream_id,
        "trace_context": {},
        "payload": e.model_dump_json(),
    }
    return decode_fast(wire_message(row)[1])  # type: ignore[arg-type]


def job_life(case_id: str, surveyor_id: str) -> tuple[Envelope, Envelope, Envelope]:
    """A job of `case_id` opened, assigned to `surveyor_id` and acknowledged, as published."""
    job = {"job_id": f"J-{case_id}", "case_id": case_id}
    stream = f"job-J-{case_id}"
    opened = de.JobOpened(
        **job, insurer_code="PICC", loss_type="collision", loss_address="x", survey_place="scene"
    )
    assigned = de.SurveyorAssigned(
        **job,
        surveyor_id=surveyor_id,
        policy_version="v1",
        reason="nearest",
        ack_due_at=datetime.now(UTC),
    )
    acked = de.JobAcknowledged(**job, surveyor_id=surveyor_id)
    return (
        message(opened, stream, "dispatch", 1),
        message(assigned, stream, "dispatch", 2),
        message(acked, stream, "dispatch", 3),
    )


@contextlib.asynccontextmanager
async def analytics_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool on this test's analytics schema, migrated."""
    assert settings.database_url
    schema = settings.schema_name("analytics")
    pool = await create_pool(settings.database_url, schema, min_size=2, max_size=3)
    try:
        async with pool.acquire() as conn:
            await migrate(conn, schema, [*CORE_MIGRATIONS, *MIGRATIONS])
        yield pool
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def second_fold_waiting(
    pool: asyncpg.Pool, cfg: FoldConfig, first: list[Envelope], second: list[Envelope]
) -> AsyncIterator[tuple[asyncio.Task[list[Envelope]], asyncpg.Connection, Transaction]]:
    """`first` folded (all of it stored) in a transaction held open; `second` folded in another
    meanwhile, which waits on the first (checked); then the first commits. Yields the second
    fold's task, its connection and its transaction, still open."""
    async with pool.acquire() as a, pool.acquire() as b:
        tx_a = a.transaction()
        await tx_a.start()
        assert await Folder(cfg).apply(a, first) == first
        tx_b = b.transaction()
        await tx_b.start()
        folding_b = asyncio.create_task(Folder(cfg).apply(b, second))
        await asyncio.sleep(0.5)
        assert not folding_b.done()  # it waits on the first fold's uncommitted rows
        await tx_a.commit()
        yield folding_b, b, tx_b


async def test_two_folds_of_the_same_events_store_and_count_each_once(settings: Settings) -> None:
    assert consumer_specs(Runtime(DEFINITION, settings, SystemClock()))[0].batch_dedupes
    async with analytics_pool(settings) as pool:
        cfg = fold_config(AnalyticsSettings())
        events = [published(f"R{i}") for i in range(30)]
        first, second = events[:20], events[10:]  # ten in both
        async with second_fold_waiting(pool, cfg, first, second) as (folding_b, _, tx_b):
            stored_b = await asyncio.wait_for(folding_b, 10)
            await tx_b.commit()
        assert stored_b == events[20:]  # the ten stored by the other fold are not folded again
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM case_events") == 30
            assert await conn.fetchval("SELECT count(*) FROM cases") == 30
            counted = await conn.fetchval(
                "SELECT sum(count) FROM case_counts WHERE granularity = 'day'"
            )
            assert counted == 30
            # Redelivered (a crash before the offset commit): nothing new, nothing counted.
            async with conn.transaction():
                assert await Folder(cfg).apply(conn, list(reversed(events))) == []
            again = await conn.fetchval(
                "SELECT sum(count) FROM case_counts WHERE granularity = 'day'"
            )
            assert again == 30
            assert await conn.fetchval("SELECT count(*) FROM processed_events") == 0


async def test_a_fold_that_meets_events_another_just_folded_folds_onto_its_rows(
    settings: Settings,
) -> None:
    """In a rebalance the old and the new owner of a partition may fold the same stretch at
    once. The one whose history meets the other's (and so waited for it to commit) folds the
    events left to it onto the rows the other wrote, not onto what it read before: a job
    opened and assigned by one fold keeps those facts when the other adds the acknowledgement."""
    async with analytics_pool(settings) as pool:
        cfg = fold_config(AnalyticsSettings())
        opened, assigned, acked = job_life("R1", "S001")
        waiting = second_fold_waiting(pool, cfg, [opened, assigned], [assigned, acked])
        async with waiting as (folding_b, _, tx_b):  # its history waits on the other's
            assert await asyncio.wait_for(folding_b, 10) == [acked]
            await tx_b.commit()
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM jobs WHERE job_id = 'J-R1'")
            stats = await conn.fetchrow("SELECT * FROM surveyor_stats WHERE surveyor_id = 'S001'")
        assert row["opened_at"] == opened.occurred_at
        assert row["assigned_at"] == assigned.occurred_at
        assert row["surveyor_id"] == "S001"
        assert row["acknowledged_at"] == acked.occurred_at
        assert (stats["assigned"], stats["acknowledged"]) == (1, 1)


async def test_two_folds_creating_one_row_at_once_never_overwrite_each_other(
    settings: Settings,
) -> None:
    """Two folds of different events of one new job at once (its events keyed apart: what the
    producers must not do, `docs/analytics.md`). Neither could lock the absent row; the
    second insert of it is a unique violation, and the batch folded again (as the consumer
    does, one event at a time) adds to the first one's row instead of replacing it."""
    async with analytics_pool(settings) as pool:
        cfg = fold_config(AnalyticsSettings())
        _, assigned, acked = job_life("R2", "S002")
        async with second_fold_waiting(pool, cfg, [assigned], [acked]) as (folding_b, b, tx_b):
            # its insert of the job waited on the other's
            with pytest.raises(asyncpg.UniqueViolationError):
                await asyncio.wait_for(folding_b, 10)
            await tx_b.rollback()
            async with b.transaction():
                assert await Folder(cfg).apply(b, [acked]) == [acked]
        async with pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM jobs WHERE job_id = 'J-R2'")
        assert row["assigned_at"] == assigned.occurred_at
        assert row["surveyor_id"] == "S002"
        assert row["acknowledged_at"] == acked.occurred_at


async def test_a_rebuild_swap_and_a_live_fold_wait_for_each_other_without_deadlock(
    settings: Settings,
) -> None:
    """A live fold holds an entity row when a rebuild's swap begins, then stores its history:
    the swap waits for it (and would otherwise take the history first and wait on the row:
    a deadlock, the swap cancelled); afterwards the swap catches up with what it committed."""
    async with analytics_pool(settings) as pool:
        cfg = fold_config(AnalyticsSettings())
        events = [published(f"W{i}") for i in range(4)]
        async with pool.acquire() as conn, conn.transaction():
            await Folder(cfg).apply(conn, events[:2])
        async with pool.acquire() as live, pool.acquire() as swapper:
            tx = live.transaction()
            await tx.start()
            # a live fold's first statements: the shared lock, then its entity rows
            await share_tables(live)
            await live.execute("SELECT case_id FROM cases WHERE case_id = 'W0' FOR UPDATE")
            await prepare_shadow(swapper)
            swap = asyncio.create_task(
                swap_in(swapper, Folder(cfg, suffix=SHADOW, copy_history=True))
            )
            await asyncio.sleep(1.5)  # longer than Postgres's deadlock_timeout (1 s)
            assert not swap.done()
            # the rest of the fold: its history and its upserts
            assert await Folder(cfg).apply(live, events[2:]) == events[2:]
            await tx.commit()
            caught = await asyncio.wait_for(swap, 15)
        assert caught == 4  # all four were in the live history when the swap caught up
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM case_events") == 4
            assert await conn.fetchval("SELECT count(*) FROM cases") == 4
