"""The surveyor's live job stream (server-sent events).

Protocol (see docs/dispatch.md): on a fresh connect the server sends one `snapshot` event
(the surveyor's open jobs) whose id is the surveyor's latest feed position; after that each
change is one `job` event, `id` = feed position, `data` = {"kind", "seq", "job"} with kind
`assigned`, `updated`, `moved` (taken away: reassigned or queued) or `cancelled`. A client that
reconnects with `Last-Event-ID: <n>` gets every change after n and no snapshot. Comment
heartbeats (`: ping`) keep proxies from closing an idle stream.

New rows are found without polling: the hub wakes the stream when Postgres delivers the
after-commit notification for this surveyor; the stream then reads its rows after `last`.

Each assignment the device received is recorded once as JobNotified(stream) (the feed row's
`delivered_at` says it was). A client resuming with `Last-Event-ID: n` confirms it received
everything up to n, so those are marked too (a delivery sent just before a restart, whose mark
did not make it, is recorded then).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import asyncpg
from claimdesk.auth import REVALIDATE_S, Principal, refusal, revoked_sse
from claimdesk.events.dispatch import JobNotified
from claimdesk.eventstore import ANY, ConcurrencyConflict

from dispatch.handlers import (
    OPEN,
    feed_pruned_through,
    job_json,
    job_stream,
    record,
    record_any,
)

if TYPE_CHECKING:
    from claimdesk.service import Runtime

SAFETY_RECHECK_S = 30.0  # re-read even without a wake-up, in case a notification was lost
FEED_PAGE = 200  # feed rows per query


async def feed_events(
    rt: Runtime, surveyor_id: str, last_id: int | None, principal: Principal
) -> AsyncIterator[dict[str, Any]]:
    hub = rt.extras["hub"]
    wake = hub.subscribe(surveyor_id)
    try:
        async with rt.pool.acquire() as conn:
            if last_id is not None and last_id < await feed_pruned_through(conn):
                last_id = None  # rows after it may be pruned: start over from a snapshot
            if last_id is None:
                last = int(
                    await conn.fetchval(
                        "SELECT coalesce(max(seq), 0) FROM job_feed WHERE surveyor_id = $1",
                        surveyor_id,
                    )
                )
                rows = await conn.fetch(
                    "SELECT * FROM jobs WHERE surveyor_id = $1 AND status = ANY($2::text[]) "
                    "ORDER BY opened_at",
                    surveyor_id,
                    [*OPEN, "survey_completed"],
                )
        if last_id is None:
            yield {
                "event": "snapshot",
                "id": str(last),
                "data": json.dumps({"jobs": [job_json(r) for r in rows]}, ensure_ascii=False),
            }
            await _mark_delivered(rt, surveyor_id, up_to=last)
        else:
            last = last_id
            await _mark_delivered(rt, surveyor_id, up_to=last)  # the client confirms those
        while True:
            if (refused := refusal(rt, principal)) is not None:
                yield revoked_sse(refused)  # rotated, retired or revoked: the stream ends
                return
            wake.clear()
            async with rt.pool.acquire() as conn:
                rows = await conn.fetch(
                    """SELECT f.seq, f.kind, f.attempt AS feed_attempt, j.* FROM job_feed f
                       JOIN jobs j ON j.job_id = f.job_id
                       WHERE f.surveyor_id = $1 AND f.seq > $2 ORDER BY f.seq LIMIT $3""",
                    surveyor_id,
                    last,
                    FEED_PAGE,
                )
            for r in rows:
                yield {
                    "event": "job",
                    "id": str(r["seq"]),
                    "data": json.dumps(
                        {"kind": r["kind"], "seq": r["seq"], "job": job_json(r)},
                        ensure_ascii=False,
                    ),
                }
                last = r["seq"]
            for r in rows:
                if r["kind"] == "assigned":
                    await _mark_sent(rt, surveyor_id, r)
            if len(rows) == FEED_PAGE:
                continue  # more may wait; a short page was all there was when `wake` was cleared
            await _woken(rt, principal, wake)
    finally:
        hub.unsubscribe(surveyor_id, wake)


async def _woken(rt: Runtime, principal: Principal, wake: asyncio.Event) -> None:
    """Until a wake-up, SAFETY_RECHECK_S, or the caller's token being refused (asked every
    REVALIDATE_S: the stream of a rotated or retired surveyor ends within seconds)."""
    deadline = asyncio.get_running_loop().time() + SAFETY_RECHECK_S
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REVALIDATE_S):
                await wake.wait()
            return
        if refusal(rt, principal) is not None:
            return


def _delivered(job_id: str, case_id: str, surveyor_id: str, attempt: int) -> JobNotified:
    return JobNotified(
        job_id=job_id,
        case_id=case_id,
        surveyor_id=surveyor_id,
        channel="stream",
        outcome="delivered",
        detail="sent on the live stream",
        attempt=attempt,
    )


_MARK_SENT = """d AS (
    UPDATE job_feed f SET delivered_at = $3 FROM jobs j
    WHERE f.seq = $1 AND f.delivered_at IS NULL AND j.job_id = f.job_id
    RETURNING j.surveyor_id = $2 AND j.attempt = f.attempt AS holds
), held AS (SELECT FROM d WHERE holds)"""
MARK_TRIES = 6


async def _mark_sent(rt: Runtime, surveyor_id: str, row: asyncpg.Record) -> None:
    """Mark one feed row just sent on the live stream as delivered and, if the surveyor still
    holds that assignment, record its JobNotified(stream): one statement, no transaction
    block (`EventStore.append_with`). The feed row's `delivered_at` makes it once only; a
    concurrent append to the job (its SMS notification, a step) fails the statement as a
    whole, which then runs again."""
    event = _delivered(row["job_id"], row["case_id"], surveyor_id, row["feed_attempt"])
    for attempt in range(MARK_TRIES):
        try:
            async with rt.pool.acquire() as conn:
                await rt.store.append_with(
                    conn,
                    job_stream(row["case_id"]),
                    [event],
                    ANY,
                    before=_MARK_SENT,
                    args=[row["seq"], surveyor_id, rt.clock.now()],
                    guard="held",
                )
            return
        except ConcurrencyConflict:
            if attempt == MARK_TRIES - 1:
                raise
            await asyncio.sleep(0.005 * attempt)


async def _mark_delivered(rt: Runtime, surveyor_id: str, up_to: int) -> None:
    """Record one JobNotified(stream) per assignment the surveyor's device received.

    Plain appends first (BEGIN, the mark, the appends, COMMIT); if another writer appended to
    one of the jobs meanwhile (its SMS or webhook notification, a step), the transaction
    failed as a whole with nothing sent anywhere, and runs again with each append retried in
    a savepoint."""
    try:
        async with rt.pool.acquire() as conn, conn.transaction():
            await _marks(rt, conn, surveyor_id, up_to, retrying=False)
    except ConcurrencyConflict:
        async with rt.pool.acquire() as conn, conn.transaction():
            await _marks(rt, conn, surveyor_id, up_to, retrying=True)


async def _marks(
    rt: Runtime, conn: asyncpg.Connection, surveyor_id: str, up_to: int, *, retrying: bool
) -> None:
    rows = await conn.fetch(
        """UPDATE job_feed f SET delivered_at = $3 FROM jobs j
           WHERE f.surveyor_id = $1 AND f.seq <= $2 AND f.kind = 'assigned'
             AND f.delivered_at IS NULL AND j.job_id = f.job_id
           RETURNING f.job_id, f.attempt, j.case_id, j.surveyor_id AS holder,
                     j.attempt AS current_attempt""",
        surveyor_id,
        up_to,
        rt.clock.now(),
    )
    for r in rows:
        if r["holder"] != surveyor_id or r["current_attempt"] != r["attempt"]:
            continue  # moved on meanwhile: this surveyor no longer holds that assignment
        events = [_delivered(r["job_id"], r["case_id"], surveyor_id, r["attempt"])]
        if retrying:
            await record_any(rt, conn, job_stream(r["case_id"]), events)
        else:
            await record(rt, conn, job_stream(r["case_id"]), events, ANY)
