"""The in-memory roster against real Postgres: changed rows only, nothing missed, no phantoms."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
from claimdesk.db import CORE_MIGRATIONS, create_pool, migrate
from claimdesk.settings import Settings
from dispatch.migrations import MIGRATIONS
from dispatch.roster import RosterCache

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


@contextlib.asynccontextmanager
async def roster_db(settings: Settings, n: int) -> AsyncIterator[asyncpg.Pool]:
    assert settings.database_url
    schema = settings.schema_name("dispatch")
    pool = await create_pool(settings.database_url, schema, max_size=4)
    try:
        async with pool.acquire() as conn:
            await migrate(conn, schema, [*CORE_MIGRATIONS, *MIGRATIONS])
            await conn.executemany(
                """INSERT INTO surveyors (surveyor_id, name, phone, team, skills, base_lat,
                       base_lon, lat, lon, capacity, registered_at, updated_at)
                   VALUES ($1, $1, '13800138000', 'A', '{vehicle}', 31.2, 121.4, 31.2, 121.4,
                           5, now(), now())""",
                [(f"S{i}",) for i in range(n)],
            )
        yield pool
    finally:
        await pool.close()


def loads(views: list) -> dict[str, int]:  # type: ignore[type-arg]
    return {v.surveyor_id: v.open_jobs for v in views}


async def test_refresh_reads_only_changed_rows_and_sees_every_commit(settings: Settings) -> None:
    async with roster_db(settings, 50) as pool:
        cache = RosterCache()
        async with pool.acquire() as conn:
            assert len(await cache.load(conn, NOW)) == 50
        assert cache.rows_read == 50
        # a transaction that began (and wrote) before our next read but commits after it
        slow = await pool.acquire()
        tx = slow.transaction()
        await tx.start()
        await slow.execute("UPDATE surveyors SET open_jobs = 4 WHERE surveyor_id = 'S7'")
        async with pool.acquire() as conn:
            await conn.execute("UPDATE surveyors SET open_jobs = 2 WHERE surveyor_id = 'S1'")
            await conn.execute("UPDATE surveyors SET retired = true WHERE surveyor_id = 'S2'")
            before = cache.rows_read
            views = loads(await cache.load(conn, NOW))
            assert cache.rows_read - before == 2  # S1 and S2, not the 48 unchanged
        assert views["S1"] == 2 and "S2" not in views and views["S7"] == 0
        await tx.commit()
        await pool.release(slow)
        async with pool.acquire() as conn:
            views = loads(await cache.load(conn, NOW))
        assert views["S7"] == 4  # committed after our read, still not missed
        assert len(views) == 49 and cache.full_reads == 1


async def test_a_rolled_back_reader_does_not_leave_its_writes_behind(settings: Settings) -> None:
    async with roster_db(settings, 5) as pool:
        cache = RosterCache()
        async with pool.acquire() as conn:
            await cache.load(conn, NOW)
            tx = conn.transaction()
            await tx.start()
            await conn.execute("UPDATE surveyors SET open_jobs = 3 WHERE surveyor_id = 'S0'")
            assert loads(await cache.load(conn, NOW))["S0"] == 3  # its own write, uncommitted
            await tx.rollback()
        async with pool.acquire() as conn:
            views = loads(await cache.load(conn, NOW))
        assert views["S0"] == 0  # the reader aborted: everything read again
        assert cache.full_reads == 2


async def test_a_new_local_day_reads_everything(settings: Settings) -> None:
    async with roster_db(settings, 3) as pool:
        cache = RosterCache()
        async with pool.acquire() as conn:
            await cache.load(conn, NOW)
            await cache.load(conn, NOW.replace(hour=15, minute=59))  # 23:59 in Shanghai
            assert cache.full_reads == 1
            await cache.load(conn, NOW.replace(hour=16, minute=1))  # 00:01 the next day
            assert cache.full_reads == 2
