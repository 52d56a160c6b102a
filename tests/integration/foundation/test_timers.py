"""Stored timers: fired ones are kept for a while, then pruned; an id scheduled again fires."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import asyncpg
from claimdesk.clock import ManualClock, SystemClock
from claimdesk.settings import Settings
from claimdesk.testing.plugin import eventually
from claimdesk.timers import PRUNE_FIRED, Housekeeping, Timer, TimerScheduler, rearm, schedule
from prometheus_client import REGISTRY

from tests.support import store_in_schema


async def test_fired_timers_are_pruned_once_older_than_keep_fired(settings: Settings) -> None:
    async with store_in_schema(settings, "timers") as (pool, _):
        fired: list[str] = []

        async def handler(conn: asyncpg.Connection, timer: Timer, now: datetime) -> None:
            fired.append(timer.timer_id)

        clock = SystemClock()
        scheduler = TimerScheduler(
            pool, clock, {"k": handler}, service="t", keep_fired=timedelta(days=7)
        )
        now = clock.now()
        async with pool.acquire() as conn:
            for timer_id in ("old-1", "old-2", "recent"):
                await schedule(conn, timer_id, "k", now - timedelta(seconds=1), {})
            await schedule(conn, "later", "k", now + timedelta(days=1), {})
        assert await scheduler.fire_due() == 3
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE timers SET fired_at = fired_at - interval '8 days' "
                "WHERE timer_id LIKE 'old-%'"
            )
        async with pool.acquire() as conn:
            assert await scheduler.prune_fired(conn, clock.now()) == 2
            assert await scheduler.prune_fired(conn, clock.now()) == 0
        async with pool.acquire() as conn:
            left = sorted(r["timer_id"] for r in await conn.fetch("SELECT timer_id FROM timers"))
        assert left == ["later", "recent"]  # the unfired one and the one fired just now stay
        # an id scheduled again after its row was pruned is a new timer, and fires
        async with pool.acquire() as conn:
            await schedule(conn, "old-1", "k", now - timedelta(seconds=1), {})
        assert await scheduler.fire_due() == 1
        assert fired[-1] == "old-1"


async def test_the_scheduler_prunes_through_its_own_stored_timer(settings: Settings) -> None:
    """Pruning is a stored timer the scheduler arms at start: it fires once due (once across
    replicas, like any timer), deletes what is past keep_fired and re-arms itself an hour on."""
    async with store_in_schema(settings, "timers_hk") as (pool, _):

        async def handler(conn: asyncpg.Connection, timer: Timer, now: datetime) -> None:
            pass

        clock = ManualClock()
        start = clock.now()
        async with pool.acquire() as conn:
            await schedule(conn, "old", "k", start - timedelta(days=9), {})
            await schedule(conn, "kept", "k", start - timedelta(days=1), {})
        scheduler = TimerScheduler(
            pool, clock, {"k": handler}, service="t", keep_fired=timedelta(days=7), poll_s=0.05
        )

        async def row() -> asyncpg.Record | None:
            async with pool.acquire() as conn:
                return await conn.fetchrow(
                    "SELECT due_at, fired_at FROM timers WHERE timer_id = $1", PRUNE_FIRED
                )

        async def ids() -> list[str]:
            async with pool.acquire() as conn:
                return sorted(
                    r["timer_id"] for r in await conn.fetch("SELECT timer_id FROM timers")
                )

        task = asyncio.create_task(scheduler.run())
        try:

            async def armed() -> bool:
                r = await row()
                return r is not None and r["due_at"] == start + timedelta(minutes=1)

            await eventually(armed, timeout=10, interval=0.05)
            # both handler timers fire now; their fired_at is the virtual now
            await eventually(lambda: _fired_count(pool, 2), timeout=10, interval=0.05)
            async with pool.acquire() as conn:  # one of them fired long ago
                await conn.execute(
                    "UPDATE timers SET fired_at = fired_at - interval '8 days' "
                    "WHERE timer_id = 'old'"
                )
            assert await ids() == sorted(["old", "kept", PRUNE_FIRED])  # not due yet: nothing gone
            clock.advance(timedelta(minutes=1, seconds=1))

            async def pruned_and_rearmed() -> bool:
                r = await row()
                return (
                    await ids() == sorted(["kept", PRUNE_FIRED])
                    and r is not None
                    and r["fired_at"] is None
                    and r["due_at"] == clock.now() + timedelta(hours=1)
                )

            await eventually(pruned_and_rearmed, timeout=10, interval=0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _fired_count(pool: asyncpg.Pool, n: int) -> bool:
    async with pool.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM timers WHERE fired_at IS NOT NULL") == n


async def test_a_housekeeping_timer_is_armed_at_start_and_not_counted_as_a_deadline(
    settings: Settings,
) -> None:
    """A service's housekeeping kind (`Housekeeping`): the scheduler arms it `first` after it
    starts, it fires when due and re-arms itself; the open-timers gauge counts deadlines only."""
    async with store_in_schema(settings, "timers_hk2") as (pool, _):
        tidied: list[datetime] = []

        async def tidy(conn: asyncpg.Connection, timer: Timer, now: datetime) -> None:
            tidied.append(now)
            await rearm(conn, timer, now, more=False, every=timedelta(hours=2))

        async def handler(conn: asyncpg.Connection, timer: Timer, now: datetime) -> None:
            pass

        clock = ManualClock()
        start = clock.now()
        async with pool.acquire() as conn:
            await schedule(conn, "deadline", "k", start + timedelta(days=1), {})
        service = f"hk-{settings.schema_prefix}"
        scheduler = TimerScheduler(
            pool,
            clock,
            {"k": handler, "tidy": Housekeeping(tidy, first=timedelta(minutes=5))},
            service=service,
            poll_s=0.05,
        )

        async def due(timer_id: str) -> datetime | None:
            async with pool.acquire() as conn:
                value: datetime | None = await conn.fetchval(
                    "SELECT due_at FROM timers WHERE timer_id = $1 AND fired_at IS NULL", timer_id
                )
                return value

        task = asyncio.create_task(scheduler.run())
        try:

            async def armed() -> bool:
                return await due("tidy") == start + timedelta(minutes=5)

            await eventually(armed, timeout=10, interval=0.05)
            assert await due(PRUNE_FIRED) == start + timedelta(minutes=1)

            def deadlines_counted() -> bool:  # the deadline; neither housekeeping timer
                labels = {"service": service}
                return REGISTRY.get_sample_value("claimdesk_open_timers", labels) == 1

            await eventually(deadlines_counted, timeout=10, interval=0.05)
            clock.advance(timedelta(minutes=5, seconds=1))

            async def tidied_and_rearmed() -> bool:
                return len(tidied) == 1 and await due("tidy") == clock.now() + timedelta(hours=2)

            await eventually(tidied_and_rearmed, timeout=10, interval=0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
