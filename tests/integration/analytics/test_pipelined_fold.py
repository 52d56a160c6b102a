"""The fold's pipelined consumer: a crash between the database commit and the offset commit
loses nothing and counts nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import pytest
from analytics.bootstrap import DEFINITION
from analytics.consumers import consumer_specs, fold_config
from analytics.rebuild import rebuild
from analytics.settings import AnalyticsSettings
from analytics.tables import ALL_TABLES, MIGRATIONS
from claimdesk.clock import SystemClock
from claimdesk.consumer import EventConsumer
from claimdesk.db import CORE_MIGRATIONS, create_pool, migrate
from claimdesk.kafka import make_consumer
from claimdesk.service import Runtime
from claimdesk.settings import Settings
from claimdesk.testing.plugin import eventually

from tests.integration.analytics.workload import producers, random_workload


class Crash(BaseException):
    """Stands for the process dying between the database commit and the offset commit."""


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[str]]:
    out = {}
    async with pool.acquire() as conn:
        for t in ALL_TABLES:
            rows = await conn.fetch(f"SELECT {', '.join(t.column_names)} FROM {t.name}")
            out[t.name] = sorted(repr(tuple(r.values())) for r in rows)
    return out


async def test_crash_before_offset_commit_counts_nothing_twice(settings: Settings) -> None:
    assert settings.database_url
    runtime = Runtime(DEFINITION, settings, SystemClock())
    pool = await create_pool(settings.database_url, runtime.schema, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await migrate(conn, runtime.schema, [*CORE_MIGRATIONS, *MIGRATIONS])
    spec = consumer_specs(runtime)[0]
    assert spec.pipelined
    spec.group_id = f"{settings.topic_prefix}pipelined-fold"
    tasks: list[asyncio.Task[Any]] = []
    try:
        async with producers(settings) as p:
            await random_workload(p, cases=60)
            await eventually(lambda: _published_all(p), timeout=30)

            crashes = 0

            async def crash_once() -> None:
                nonlocal crashes
                if crashes == 0:
                    crashes += 1
                    raise Crash

            first = EventConsumer(
                spec,
                pool,
                lambda g: make_consumer(settings, g, max_poll_records=50),
                service="analytics",
                before_offset_commit=crash_once,
            )
            with pytest.raises(Crash):
                await asyncio.wait_for(first.run(), 30)
            assert first.stats.handled >= 1  # committed in Postgres, not in Kafka

            second = EventConsumer(
                spec,
                pool,
                lambda g: make_consumer(settings, g, max_poll_records=50),
                service="analytics",
            )
            tasks.append(asyncio.create_task(second.run()))

            await eventually(lambda: stored_all(pool, p.appended), timeout=30)
            await eventually(
                lambda: second.stats.skipped_duplicates >= first.stats.handled, timeout=10
            )
            assert first.stats.handled + second.stats.handled == p.appended
            live = await snapshot(pool)
        assert await rebuilt(pool, settings, runtime) == live
    finally:
        await stop(tasks, pool)


async def stop(tasks: list[asyncio.Task[Any]], pool: asyncpg.Pool) -> None:
    """Cancel the consumers' tasks (whatever they ended with), then close the pool."""
    for t in tasks:
        t.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
    await pool.close()


async def stored_all(pool: asyncpg.Pool, n: int) -> bool:
    """The history holds `n` events."""
    async with pool.acquire() as conn:
        return bool(await conn.fetchval("SELECT count(*) FROM case_events") == n)


async def rebuilt(pool: asyncpg.Pool, settings: Settings, runtime: Runtime) -> dict[str, list[str]]:
    """The tables folded anew from the whole history, once (what the live ones must equal)."""
    await rebuild(pool, settings, fold_config(AnalyticsSettings()), schema=runtime.schema)
    return await snapshot(pool)


async def _published_all(p: Any) -> bool:
    return bool(await p.published() == p.appended)
