"""Stored timers: deadlines live in Postgres, never in an in-memory sleep, and survive restarts.

`schedule` writes a timer inside the caller's transaction (with the events that make it
needed). The scheduler claims due timers with FOR UPDATE SKIP LOCKED and marks them fired in
the same statement, then runs the handlers on the same connection in that transaction: with any
number of processes, each timer fires exactly once (a failing handler rolls its mark back with
everything else). A failing handler is retried on the next pass and its error kept on the row.
A handler sees its own timer already marked fired, so it can re-arm its own id (`schedule`
sets fired_at back to NULL) and cancelling its own id changes nothing.

Housekeeping is a timer too: a handler that deletes old rows a chunk at a time
(`HOUSEKEEPING_CHUNK`) and re-arms its own id (`rearm`: a second later while chunks come back
full, else an interval later), so it runs once across any number of processes and resumes
after a restart. A service registers one as a `Housekeeping` (its kind is its id): the
scheduler arms it when it starts (`first` later; a start in any replica moves it sooner) and
the open-timers gauge, which counts deadlines, leaves it out. The scheduler keeps one of its
own: fired timers are kept `keep_fired` (settings: `timer_keep_fired_days`, 7) for whoever
looks into what fired when, then deleted, the oldest first, about once an hour
(`PRUNE_FIRED`, armed a minute after each start). Scheduling an id again after that simply
creates it anew.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from claimdesk.clock import Clock
from claimdesk.context import caused_by
from claimdesk.metrics import OPEN_TIMERS, TIMERS_FIRED
from claimdesk.telemetry import current_trace_context, extract_context, tracer

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 20
OPEN_GAUGE_EVERY_S = 5.0
HOUSEKEEPING_CHUNK = 5_000  # rows per table per housekeeping pass: short transactions
PRUNE_FIRED = "claimdesk.prune_fired"  # the scheduler's housekeeping timer (its id and kind)
PRUNE_FIRED_EVERY = timedelta(hours=1)
PRUNE_FIRED_FIRST = timedelta(minutes=1)  # after a start: not in the way of it
TRACE_KEY = "_trace"


@dataclass(frozen=True)
class Timer:
    timer_id: str
    kind: str
    due_at: datetime
    payload: dict[str, Any]


TimerHandler = Callable[[asyncpg.Connection, Timer, datetime], Awaitable[None]]


@dataclass(frozen=True)
class Housekeeping:
    """A housekeeping kind's handler (which re-arms it, `rearm`) and when the scheduler arms
    it after a start: `first` from then."""

    handler: TimerHandler
    first: timedelta = timedelta(0)


async def schedule(
    conn: asyncpg.Connection, timer_id: str, kind: str, due_at: datetime, payload: Mapping[str, Any]
) -> None:
    """Create or move a timer (a moved timer fires again, at its new time).

    The active trace context is kept with the timer (payload key `_trace`, removed again
    before the handler sees the payload), so work a deadline triggers joins the trace of
    what scheduled it: a case's journey stays one trace across timers.
    """
    await schedule_many(conn, [(timer_id, kind, due_at, payload)])


async def schedule_many(
    conn: asyncpg.Connection, timers: Sequence[tuple[str, str, datetime, Mapping[str, Any]]]
) -> None:
    """`schedule` for several timers (id, kind, due, payload) in one statement."""
    trace_context = current_trace_context()
    extra = {TRACE_KEY: trace_context} if trace_context else {}
    await conn.execute(
        """INSERT INTO timers (timer_id, kind, due_at, payload)
           SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]::jsonb[])
           ON CONFLICT (timer_id) DO UPDATE
             SET kind = EXCLUDED.kind, due_at = EXCLUDED.due_at, payload = EXCLUDED.payload,
                 fired_at = NULL, attempts = 0, last_error = NULL""",
        [t[0] for t in timers],
        [t[1] for t in timers],
        [t[2] for t in timers],
        [json.dumps({**t[3], **extra}) for t in timers],
    )


async def rearm(
    conn: asyncpg.Connection, timer: Timer, now: datetime, *, more: bool, every: timedelta
) -> None:
    """A housekeeping timer's next turn: a second from now while `more` (its last chunk came
    back full), else `every` from now."""
    again = timedelta(seconds=1) if more else every
    await schedule(conn, timer.timer_id, timer.kind, now + again, timer.payload)


async def cancel(conn: asyncpg.Connection, timer_id: str) -> None:
    await conn.execute("DELETE FROM timers WHERE timer_id = $1 AND fired_at IS NULL", timer_id)


class TimerScheduler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        handlers: Mapping[str, TimerHandler | Housekeeping],
        *,
        service: str,
        poll_s: float = 0.2,
        batch_size: int = 200,
        keep_fired: timedelta = timedelta(days=7),
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.housekeeping = {
            **{k: h for k, h in handlers.items() if isinstance(h, Housekeeping)},
            PRUNE_FIRED: Housekeeping(self._on_prune_fired, PRUNE_FIRED_FIRST),
        }
        self.handlers: dict[str, TimerHandler] = {
            **{k: h for k, h in handlers.items() if not isinstance(h, Housekeeping)},
            **{k: h.handler for k, h in self.housekeeping.items()},
        }
        self.service = service
        self.poll_s = poll_s
        self.batch_size = batch_size
        self.fired = 0
        self.running = False
        self._gauge_at = 0.0
        self.keep_fired = keep_fired

    async def run(self) -> None:
        self.running = True
        try:
            await self._arm_housekeeping()
            while True:
                try:
                    n = await self.fire_due()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("timer pass failed", extra={"cd_error": repr(exc)})
                    n = 0
                if n < self.batch_size:
                    await asyncio.sleep(await self._sleep_for())
        finally:
            self.running = False

    async def _arm_housekeeping(self) -> None:
        now = self.clock.now()
        try:
            async with self.pool.acquire() as conn:
                await schedule_many(
                    conn, [(k, k, now + h.first, {}) for k, h in self.housekeeping.items()]
                )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("housekeeping timers not armed", extra={"cd_error": repr(exc)})

    async def _on_prune_fired(self, conn: asyncpg.Connection, timer: Timer, now: datetime) -> None:
        pruned = await self.prune_fired(conn, now)
        await rearm(conn, timer, now, more=pruned == HOUSEKEEPING_CHUNK, every=PRUNE_FIRED_EVERY)

    async def prune_fired(self, conn: asyncpg.Connection, now: datetime) -> int:
        """Delete up to HOUSEKEEPING_CHUNK timers fired more than `keep_fired` ago; how many."""
        result = await conn.execute(
            """DELETE FROM timers WHERE timer_id IN (
                   SELECT timer_id FROM timers WHERE fired_at < $1
                   ORDER BY fired_at LIMIT $2)""",
            now - self.keep_fired,
            HOUSEKEEPING_CHUNK,
        )
        return int(result.split()[-1])

    async def _sleep_for(self) -> float:
        # min(due_at) is one index probe; count(*) scans every open timer (ms per 10k), so the
        # gauge is refreshed at most once per OPEN_GAUGE_EVERY_S, not on every pass.
        async with self.pool.acquire() as conn:
            nxt = await conn.fetchval("SELECT min(due_at) FROM timers WHERE fired_at IS NULL")
            if time.monotonic() >= self._gauge_at:
                self._gauge_at = time.monotonic() + OPEN_GAUGE_EVERY_S
                OPEN_TIMERS.labels(self.service).set(  # deadlines: housekeeping not counted
                    await conn.fetchval(
                        "SELECT count(*) FROM timers "
                        "WHERE fired_at IS NULL AND kind <> ALL($1::text[])",
                        list(self.housekeeping),
                    )
                )
        if nxt is None:
            return self.poll_s
        wait = (nxt - self.clock.now()).total_seconds()
        return float(min(max(wait, 0.005), self.poll_s))

    async def fire_due(self) -> int:
        """Fire every timer due now (in batches); returns how many fired."""
        now = self.clock.now()
        kinds = list(self.handlers)
        async with self.pool.acquire() as conn:
            try:
                async with conn.transaction():
                    due = await self._claim(conn, now, kinds)
                    for row in due:
                        await self._fire(conn, row, now)
                    return len(due)
            except (asyncpg.InterfaceError, OSError):
                raise
            except Exception as exc:
                log.info("timer batch failed, firing one by one", extra={"cd_error": repr(exc)})
            fired = 0
            failed: list[str] = []
            for _ in range(self.batch_size):
                rows: list[asyncpg.Record] = []
                try:
                    async with conn.transaction():
                        rows = await self._claim(conn, now, kinds, limit=1, exclude=failed)
                        if not rows:
                            break
                        await self._fire(conn, rows[0], now)
                        fired += 1
                except (asyncpg.InterfaceError, OSError):
                    raise
                except Exception as exc:
                    if not rows:
                        raise
                    failed.append(rows[0]["timer_id"])
                    await self._record_failure(conn, rows[0]["timer_id"], repr(exc))
            return fired

    async def _claim(
        self,
        conn: asyncpg.Connection,
        now: datetime,
        kinds: list[str],
        limit: int | None = None,
        exclude: list[str] | None = None,
    ) -> list[asyncpg.Record]:
        """Lock due timers no other process holds and mark them fired, in due order (one
        statement; the caller's transaction undoes the marks if a handler fails). A timer that
        failed MAX_ATTEMPTS times stays unfired with its error for an operator, instead of
        failing forever."""
        rows = await conn.fetch(
            """UPDATE timers t SET fired_at = $1, attempts = t.attempts + 1
               FROM (SELECT timer_id FROM timers
                     WHERE fired_at IS NULL AND due_at <= $1 AND kind = ANY($2::text[])
                       AND attempts < $4 AND NOT (timer_id = ANY($5::text[]))
                     ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) due
               WHERE t.timer_id = due.timer_id
               RETURNING t.timer_id, t.kind, t.due_at, t.payload""",
            now,
            kinds,
            limit or self.batch_size,
            MAX_ATTEMPTS,
            exclude or [],
        )
        return sorted(rows, key=lambda r: r["due_at"])

    async def _fire(self, conn: asyncpg.Connection, row: asyncpg.Record, now: datetime) -> None:
        payload = dict(row["payload"])
        parent = extract_context(payload.pop(TRACE_KEY, None) or {})
        timer = Timer(row["timer_id"], row["kind"], row["due_at"], payload)
        with (
            tracer().start_as_current_span(f"timer {timer.kind}", context=parent) as span,
            caused_by(actor="system:timer"),
        ):
            span.set_attribute("claimdesk.timer.id", timer.timer_id)
            await self.handlers[timer.kind](conn, timer, now)
        self.fired += 1
        TIMERS_FIRED.labels(self.service, timer.kind).inc()

    async def _record_failure(self, conn: asyncpg.Connection, timer_id: str, error: str) -> None:
        log.warning("timer handler failed", extra={"cd_timer": timer_id, "cd_error": error})
        await conn.execute(
            "UPDATE timers SET attempts = attempts + 1, last_error = $2 WHERE timer_id = $1",
            timer_id,
            error[:2000],
        )
