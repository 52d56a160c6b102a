"""Stored timers: fired ones are kept for a while, then pruned; an id scheduled again fires."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
from claimdesk.clock import SystemClock
from claimdesk.settings import Settings
from claimdesk.timers import Timer, TimerScheduler, schedule

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
        assert await scheduler.prune_fired() == 2
        assert await scheduler.prune_fired() == 0
        async with pool.acquire() as conn:
            left = sorted(r["timer_id"] for r in await conn.fetch("SELECT timer_id FROM timers"))
        assert left == ["later", "recent"]  # the unfired one and the one fired just now stay
        # an id scheduled again after its row was pruned is a new timer, and fires
        async with pool.acquire() as conn:
            await schedule(conn, "old-1", "k", now - timedelta(seconds=1), {})
        assert await scheduler.fire_due() == 1
        assert fired[-1] == "old-1"
