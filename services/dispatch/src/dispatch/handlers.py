"""Handlers: load -> decide -> append, with the read model and timers in the same transaction.

Streams: `surveyor-<id>` for a surveyor, `job-<case_id>` for the one job of a case (its first
append uses expected_version 0, so a case can never get two jobs). Every append goes through
`record`, which projects the new events into dispatch's own tables (surveyors, jobs,
assignments, job_feed), schedules or cancels the stored timers (ack deadlines, SMS, webhooks)
and signals the live feed, all in the caller's transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import asyncpg
from claimdesk.context import caused_by
from claimdesk.errors import Conflict, InvalidInput, NotFound
from claimdesk.events.base import Envelope, Event
from claimdesk.events.dispatch import (
    CaseClosed,
    JobAcknowledged,
    JobCancelled,
    JobDetailsUpdated,
    JobNotified,
    JobOpened,
    JobQueuedForDispatcher,
    SurveyCompleted,
    SurveyorArrived,
    SurveyorAssigned,
    SurveyorAvailabilityChanged,
    SurveyorDetailsChanged,
    SurveyorEnRoute,
    SurveyorLocationUpdated,
    SurveyorReassigned,
    SurveyorRegistered,
    SurveyorRetired,
    SurveyorShiftEnded,
    SurveyorShiftStarted,
    SurveyorTokenRotated,
)
from claimdesk.events.intake import CaseCancelled, CaseDetailsCorrected, CaseReported
from claimdesk.eventstore import ANY, ConcurrencyConflict, PreparedAppend
from claimdesk.telemetry import current_trace_context, extract_context, tracer
from claimdesk.timers import (
    HOUSEKEEPING_CHUNK,
    TRACE_KEY,
    Timer,
    cancel,
    rearm,
    schedule,
    schedule_many,
)

from dispatch import domain, policy
from dispatch.notify import customer_sms_text, feed_channel, job_sms_text, sign_webhook
from dispatch.roster import RosterCache, local_day_start, policy_view
from dispatch.settings import DispatchSettings

if TYPE_CHECKING:
    from claimdesk.service import Runtime

log = logging.getLogger(__name__)

OPEN = list(domain.OPEN_STATUSES)
ASSIGN_LOCK = "dispatch:assign"


def dsettings(rt: Runtime) -> DispatchSettings:
    s: DispatchSettings = rt.extras["dispatch_settings"]
    return s


def job_stream(case_id: str) -> str:
    return f"job-{case_id}"


def job_id_for(case_id: str) -> str:
    return f"J-{case_id}"


def surveyor_stream(surveyor_id: str) -> str:
    return f"surveyor-{surveyor_id}"


async def assign_lock(conn: asyncpg.Connection) -> None:
    """Serialise every decision that reads the roster's load (across processes too)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", ASSIGN_LOCK)


# -- append + project ----------------------------------------------------------------------


async def record(
    rt: Runtime,
    conn: asyncpg.Connection,
    stream: str,
    events: Sequence[Event],
    expected: int,
    *,
    occurred_at: datetime | None = None,
) -> list[Envelope]:
    if (
        len(events) == 2
        and isinstance(events[0], JobOpened)
        and isinstance(events[1], SurveyorAssigned)
        and occurred_at is None
    ):
        # a new case's job, assigned at once: the path every case takes, in one statement
        prepared = _prepare_opened_assigned(rt, stream, events[0], events[1], expected)
        await rt.store.append_prepared(conn, [prepared])
        return prepared.envelopes
    envs: list[Envelope] = await rt.store.append(
        conn, stream, events, expected, occurred_at=occurred_at
    )
    for env in envs:
        await project(rt, conn, env)
    return envs


async def record_any(
    rt: Runtime, conn: asyncpg.Connection, stream: str, events: Sequence[Event]
) -> None:
    """Append at the stream's end, again if someone appended meanwhile.

    One event (a notification, the common case): a lost race leaves the transaction intact
    (`ConcurrencyConflict.aborted`), and the next statement sees the other writer's committed
    event, so it just runs again. Several: in a savepoint, undone before the next try."""
    for attempt in range(6):
        try:
            if len(events) == 1:
                await record(rt, conn, stream, events, ANY)
            else:
                async with conn.transaction():
                    await record(rt, conn, stream, events, ANY)
            return
        except ConcurrencyConflict as exc:
            if len(events) == 1 and exc.aborted:
                raise
            await asyncio.sleep(0.005 * attempt)
    raise Conflict(f"stream {stream} is too busy; try again")


_FEED_SQL = """
WITH upd AS (
    -- the UPDATE takes the surveyor's row lock before the feed row gets its position, so one
    -- surveyor's feed rows commit in position order and a resumed stream never skips one;
    -- it also refreshes the load counters from indexed rows (they can never drift)
    UPDATE surveyors SET
        open_jobs = (SELECT count(*) FROM jobs
                     WHERE surveyor_id = $1 AND status = ANY($6::text[])),
        assigned_today = (SELECT count(*) FROM assignments
                          WHERE surveyor_id = $1 AND assigned_at >= $7),
        today_start = $7
    WHERE surveyor_id = $1
    RETURNING surveyor_id
), ins AS (
    INSERT INTO job_feed (surveyor_id, job_id, kind, attempt, at)
    SELECT upd.surveyor_id, $2, $3, $4, $5 FROM upd
    RETURNING surveyor_id
)
SELECT pg_notify($8, ins.surveyor_id) FROM ins
"""


async def _feed(  # noqa: PLR0917
    rt: Runtime, conn: asyncpg.Connection, surveyor_id: str, job_id: str, kind: str, attempt: int
) -> None:
    """One statement: refresh the surveyor's load, add a feed row, notify after commit."""
    now = rt.clock.now()
    await conn.execute(
        _FEED_SQL,
        surveyor_id,
        job_id,
        kind,
        attempt,
        now,
        OPEN,
        local_day_start(now),
        feed_channel(rt.schema),
    )


# What `project` writes for a new job assigned at once, as CTEs to splice before its append
# (`EventStore.prepare_with`, guarded by `j`): $1-$14 the job, $15 now, $16-$19 the
# assignment, $20-$21 open statuses and the local day's start, $22 the feed channel,
# $23-$28 the timers.
_OPENED_ASSIGNED_SQL = """
s AS (SELECT team, EXISTS (SELECT 1 FROM team_webhooks w WHERE w.team = surveyors.team)
                  AS hook
      FROM surveyors WHERE surveyor_id = $16),
j AS (
    INSERT INTO jobs (job_id, case_id, status, insurer_code, priority, plate, loss_type,
                      loss_address, loss_lat, loss_lon, region, required_skills, contact_name,
                      contact_phone, description, opened_at, updated_at, surveyor_id, team,
                      attempt, ack_due_at, assignment)
    VALUES ($1, $2, 'assigned', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15,
            $16, (SELECT team FROM s), $17, $18, $19)
    RETURNING job_id
),
a AS (INSERT INTO assignments (job_id, attempt, surveyor_id, assigned_at)
      VALUES ($1, $17, $16, $15) ON CONFLICT DO NOTHING),
upd AS (
    -- as in _FEED_SQL: the surveyor's row lock before the feed row gets its position, and the
    -- load counters from indexed rows; this statement's own job and assignment are not
    -- visible to it, hence the + 1s
    UPDATE surveyors SET
        open_jobs = 1 + (SELECT count(*) FROM jobs
                         WHERE surveyor_id = $16 AND status = ANY($20::text[])),
        assigned_today = 1 + (SELECT count(*) FROM assignments
                              WHERE surveyor_id = $16 AND assigned_at >= $21),
        today_start = $21
    WHERE surveyor_id = $16
    RETURNING surveyor_id
),
feed AS (
    -- the notification is delivered after commit, to this process's hub and any other's
    INSERT INTO job_feed (surveyor_id, job_id, kind, attempt, at)
    SELECT upd.surveyor_id, $1, 'assigned', $17, $15 FROM upd
    RETURNING pg_notify($22, surveyor_id)
),
t AS (
    INSERT INTO timers (timer_id, kind, due_at, payload)
    SELECT * FROM unnest($23::text[], $24::text[], $25::timestamptz[], $26::text[]::jsonb[])
    UNION ALL
    SELECT $27, 'notify_webhook', $15, $28::text::jsonb || jsonb_build_object('team', s.team)
    FROM s WHERE s.hook
    ON CONFLICT (timer_id) DO UPDATE
      SET kind = EXCLUDED.kind, due_at = EXCLUDED.due_at, payload = EXCLUDED.payload,
          fired_at = NULL, attempts = 0, last_error = NULL
)"""


def _assignment(e: SurveyorAssigned | SurveyorReassigned, now: datetime) -> dict[str, Any]:
    """The assignment as the job's history keeps it: why this surveyor, under which policy."""
    return {
        "attempt": e.attempt,
        "policy_version": e.policy_version,
        "reason": e.reason,
        "assigned_by": e.assigned_by,
        "candidates": [_cand(c) for c in e.candidates],
        "assigned_at": now.isoformat(),
    }


def _prepare_opened_assigned(
    rt: Runtime, stream: str, o: JobOpened, e: SurveyorAssigned, expected: int
) -> PreparedAppend:
    """The append of JobOpened and SurveyorAssigned with what `project` does for them (a new
    job, no previous surveyor, no ack timer to cancel), as one statement: the job row, the
    assignment, the surveyor's load, the feed row with its after-commit notification, and the
    ack, SMS (and, when the team has a webhook, webhook) timers, as `schedule_many` writes
    them. A stream that is not at `expected` fails the statement as a whole."""
    now = rt.clock.now()
    assignment = _assignment(e, now)
    trace_context = current_trace_context()
    extra = {TRACE_KEY: trace_context} if trace_context else {}
    payload = {"job_id": e.job_id, "case_id": e.case_id, "attempt": e.attempt}
    notify = {**payload, "surveyor_id": e.surveyor_id, "try": 1}
    return rt.store.prepare_with(
        stream,
        [o, e],
        expected,
        before=_OPENED_ASSIGNED_SQL,
        args=[
            o.job_id,
            o.case_id,
            o.insurer_code,
            o.priority,
            o.plate,
            o.loss_type,
            o.loss_address,
            o.loss_lat,
            o.loss_lon,
            o.region,
            o.required_skills,
            o.contact_name,
            o.contact_phone,
            o.description,
            now,
            e.surveyor_id,
            e.attempt,
            e.ack_due_at,
            assignment,
            OPEN,
            local_day_start(now),
            feed_channel(rt.schema),
            [f"ack:{e.job_id}:{e.attempt}", f"sms:{e.job_id}:{e.attempt}"],
            ["ack_timeout", "notify_sms"],
            [e.ack_due_at, now],
            [json.dumps({**payload, **extra}), json.dumps({**notify, **extra})],
            f"webhook:{e.job_id}:{e.attempt}",
            json.dumps({**notify, **extra}),
        ],
        guard="j",
        recorded_at=now,
    )


def _cand(c: Any) -> dict[str, Any]:
    d: dict[str, Any] = c.model_dump(mode="json")
    return d


async def project(rt: Runtime, conn: asyncpg.Connection, env: Envelope) -> None:
    e = env.payload
    now = env.recorded_at
    match e:
        case SurveyorRegistered():
            await conn.execute(
                """INSERT INTO surveyors (surveyor_id, name, phone, team, skills, regions,
                       base_lat, base_lon, lat, lon, capacity, shifts, registered_at, updated_at)
                   VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$7,$8,$9,$10,$11,$11)""",
                e.surveyor_id,
                e.name,
                e.phone,
                e.team,
                e.skills,
                e.regions,
                e.base_lat,
                e.base_lon,
                e.capacity,
                e.shifts,
                now,
            )
        case SurveyorDetailsChanged():
            sets, args = [], [e.surveyor_id, now]
            for k, v in e.changes.items():
                if k in {"name", "phone", "team", "skills", "regions", "capacity", "shifts"}:
                    args.append(v)
                    sets.append(f"{k} = ${len(args)}")
                elif k in {"base_lat", "base_lon"}:
                    # the current position follows the base until the device reports one
                    args.append(v)
                    col = k.removeprefix("base_")
                    sets.append(f"{k} = ${len(args)}")
                    sets.append(
                        f"{col} = CASE WHEN location_at IS NULL THEN ${len(args)} ELSE {col} END"
                    )
            if sets:
                await conn.execute(
                    f"UPDATE surveyors SET {', '.join(sets)}, updated_at = $2 WHERE surveyor_id = $1",
                    *args,
                )
        case SurveyorRetired():
            await conn.execute(
                "UPDATE surveyors SET retired = true, retired_reason = $2, updated_at = $3 "
                "WHERE surveyor_id = $1",
                e.surveyor_id,
                e.reason,
                now,
            )
        case SurveyorTokenRotated():
            await conn.execute(
                "UPDATE surveyors SET token_generation = $2, updated_at = $3 WHERE surveyor_id = $1",
                e.surveyor_id,
                e.generation,
                now,
            )
        case SurveyorAvailabilityChanged():
            await conn.execute(
                "UPDATE surveyors SET available = $2, availability_reason = $3, updated_at = $4 "
                "WHERE surveyor_id = $1",
                e.surveyor_id,
                e.available,
                e.reason,
                now,
            )
        case SurveyorShiftStarted() | SurveyorShiftEnded():
            await conn.execute(
                "UPDATE surveyors SET shift_override = $2, updated_at = $3 WHERE surveyor_id = $1",
                e.surveyor_id,
                isinstance(e, SurveyorShiftStarted),
                now,
            )
        case SurveyorLocationUpdated():
            await conn.execute(
                "UPDATE surveyors SET lat = $2, lon = $3, location_at = $4, updated_at = $4 "
                "WHERE surveyor_id = $1",
                e.surveyor_id,
                e.lat,
                e.lon,
                env.occurred_at,
            )
        case JobOpened():
            await conn.execute(
                """INSERT INTO jobs (job_id, case_id, status, insurer_code, priority, plate,
                       loss_type, loss_address, loss_lat, loss_lon, region, required_skills,
                       contact_name, contact_phone, description, opened_at, updated_at)
                   VALUES ($1,$2,'queued',$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$15)""",
                e.job_id,
                e.case_id,
                e.insurer_code,
                e.priority,
                e.plate,
                e.loss_type,
                e.loss_address,
                e.loss_lat,
                e.loss_lon,
                e.region,
                e.required_skills,
                e.contact_name,
                e.contact_phone,
                e.description,
                now,
            )
        case SurveyorAssigned() | SurveyorReassigned():
            to = e.surveyor_id if isinstance(e, SurveyorAssigned) else e.to_surveyor_id
            assignment = _assignment(e, now)
            # one statement (all parts see the rows as they were before it)
            info = await conn.fetchrow(
                """WITH prev AS (SELECT surveyor_id FROM jobs WHERE job_id = $1),
                        s AS (SELECT team, EXISTS (SELECT 1 FROM team_webhooks w
                                                   WHERE w.team = surveyors.team) AS hook
                              FROM surveyors WHERE surveyor_id = $2),
                        u AS (UPDATE jobs SET status = 'assigned', surveyor_id = $2,
                                  team = (SELECT team FROM s), attempt = $3, ack_due_at = $4,
                                  assignment = $5, queue_kind = NULL, queue_reason = NULL,
                                  call_the_team = false, updated_at = $6
                              WHERE job_id = $1),
                        a AS (INSERT INTO assignments (job_id, attempt, surveyor_id, assigned_at)
                              VALUES ($1, $3, $2, $6) ON CONFLICT DO NOTHING)
                   SELECT (SELECT surveyor_id FROM prev) AS previous,
                          (SELECT team FROM s) AS team, (SELECT hook FROM s) AS hook""",
                e.job_id,
                to,
                e.attempt,
                e.ack_due_at,
                assignment,
                now,
            )
            assert info is not None
            previous, team = info["previous"], info["team"]
            payload = {"job_id": e.job_id, "case_id": e.case_id, "attempt": e.attempt}
            # one timer id per attempt: a timer handler must never re-arm its own timer id
            await _cancel_ack(conn, e.job_id, e.attempt - 1)
            if previous and previous != to:
                await _feed(rt, conn, previous, e.job_id, "moved", e.attempt)
            await _feed(rt, conn, to, e.job_id, "assigned", e.attempt)
            timers = [
                (f"ack:{e.job_id}:{e.attempt}", "ack_timeout", e.ack_due_at, payload),
                (
                    f"sms:{e.job_id}:{e.attempt}",
                    "notify_sms",
                    now,
                    {**payload, "surveyor_id": to, "try": 1},
                ),
            ]
            if info["hook"]:
                timers.append(
                    (
                        f"webhook:{e.job_id}:{e.attempt}",
                        "notify_webhook",
                        now,
                        {**payload, "surveyor_id": to, "team": team, "try": 1},
                    )
                )
            await schedule_many(conn, timers)
        case JobQueuedForDispatcher():
            previous = await conn.fetchval(
                "SELECT surveyor_id FROM jobs WHERE job_id = $1", e.job_id
            )
            await conn.execute(
                """UPDATE jobs SET status = 'queued', surveyor_id = NULL, team = NULL,
                       ack_due_at = NULL, queue_kind = $2, queue_reason = $3, call_the_team = $4,
                       assignment = coalesce(assignment, $5), updated_at = $6 WHERE job_id = $1""",
                e.job_id,
                e.kind,
                e.reason,
                e.call_the_team,
                {
                    "policy_version": e.policy_version,
                    "reason": e.reason,
                    "candidates": [_cand(c) for c in e.candidates],
                    "assigned_by": "none",
                },
                now,
            )
            await _cancel_ack(conn, e.job_id, e.attempt)
            if previous:
                await _feed(rt, conn, previous, e.job_id, "moved", e.attempt)
        case JobAcknowledged():
            await _status(conn, e.job_id, "acknowledged", now, clear_due=True)
            await _cancel_ack(conn, e.job_id)
            await _feed(rt, conn, e.surveyor_id, e.job_id, "updated", 0)
        case SurveyorEnRoute():
            await _status(conn, e.job_id, "en_route", now)
            await _feed(rt, conn, e.surveyor_id, e.job_id, "updated", 0)
            await schedule(
                conn,
                f"sms-customer:{e.job_id}",
                "notify_customer",
                now,
                {"job_id": e.job_id, "case_id": e.case_id, "surveyor_id": e.surveyor_id, "try": 1},
            )
        case SurveyorArrived():
            await _status(conn, e.job_id, "arrived", now)
            await _feed(rt, conn, e.surveyor_id, e.job_id, "updated", 0)
        case SurveyCompleted():
            await _status(conn, e.job_id, "survey_completed", now)
            await _feed(rt, conn, e.surveyor_id, e.job_id, "updated", 0)
        case CaseClosed():
            sid = await conn.fetchval("SELECT surveyor_id FROM jobs WHERE job_id = $1", e.job_id)
            await _status(conn, e.job_id, "closed", now)
            if sid:
                await _feed(rt, conn, sid, e.job_id, "updated", 0)
        case JobCancelled():
            await _status(conn, e.job_id, "cancelled", now, clear_due=True)
            await conn.execute(
                "UPDATE jobs SET queue_reason = $2 WHERE job_id = $1", e.job_id, e.reason
            )
            await _cancel_ack(conn, e.job_id)
            if e.surveyor_id:
                await _feed(rt, conn, e.surveyor_id, e.job_id, "cancelled", 0)
        case JobDetailsUpdated():
            sets, args = [], [e.job_id, now]
            for k, v in e.changes.items():
                args.append(v)
                sets.append(f"{k} = ${len(args)}")
            await conn.execute(
                f"UPDATE jobs SET {', '.join(sets)}, updated_at = $2 WHERE job_id = $1", *args
            )
            sid = await conn.fetchval("SELECT surveyor_id FROM jobs WHERE job_id = $1", e.job_id)
            if sid:
                await _feed(rt, conn, sid, e.job_id, "updated", 0)
        case _:
            pass  # JobNotified, JobDeclined, AssignmentTimedOut: in the stream, no table change


async def _cancel_ack(conn: asyncpg.Connection, job_id: str, attempt: int | None = None) -> None:
    if attempt is None:
        attempt = await conn.fetchval("SELECT attempt FROM jobs WHERE job_id = $1", job_id)
    if attempt:
        await cancel(conn, f"ack:{job_id}:{attempt}")


async def _status(
    conn: asyncpg.Connection, job_id: str, status: str, now: datetime, *, clear_due: bool = False
) -> None:
    await conn.execute(
        "UPDATE jobs SET status = $2, updated_at = $3"
        + (", ack_due_at = NULL" if clear_due else "")
        + " WHERE job_id = $1",
        job_id,
        status,
        now,
    )


# -- roster, preferences, deadlines --------------------------------------------------------


def roster_cache(rt: Runtime) -> RosterCache:
    cache = rt.extras.get("roster")
    if cache is None:
        cache = rt.extras["roster"] = RosterCache()
    assert isinstance(cache, RosterCache)
    return cache


async def ack_timeouts(rt: Runtime, conn: asyncpg.Connection) -> dict[str, Any]:
    cfg = await conn.fetchval("SELECT value FROM dispatch_config WHERE key = 'ack_timeouts'")
    base: dict[str, Any] = {
        "default_s": dsettings(rt).ack_timeout_s,
        "by_insurer": {},
        "by_priority": {},
    }
    if cfg:
        base.update(cfg)
    return base


@dataclass(frozen=True)
class DecisionContext:
    """What a decision reads besides the roster, in one round trip."""

    duplicate: bool
    prefs: policy.InsurerPreferences
    ack_timeouts: dict[str, Any]


async def load_context(
    rt: Runtime, conn: asyncpg.Connection, insurer: str, case_id: str | None = None
) -> DecisionContext:
    r = await conn.fetchrow(
        """SELECT (SELECT true FROM jobs WHERE case_id = $2) AS dup,
                  (SELECT value FROM dispatch_config WHERE key = 'ack_timeouts') AS cfg,
                  p.preferred_teams, p.preferred_surveyors, p.avoided_surveyors
           FROM (SELECT 1) AS one LEFT JOIN insurer_prefs p ON p.insurer_code = $1""",
        insurer,
        case_id,
    )
    assert r is not None
    return context_of(rt, r)


def context_of(rt: Runtime, r: asyncpg.Record) -> DecisionContext:
    """A DecisionContext from `load_context`'s row."""
    return _context(rt, r["cfg"], r, bool(r["dup"]))


def _context(
    rt: Runtime, raw_cfg: dict[str, Any] | None, prefs: Any, duplicate: bool
) -> DecisionContext:
    cfg: dict[str, Any] = {
        "default_s": dsettings(rt).ack_timeout_s,
        "by_insurer": {},
        "by_priority": {},
    }
    if raw_cfg:
        cfg.update(raw_cfg)
    return DecisionContext(
        duplicate,
        policy.InsurerPreferences(
            preferred_teams=frozenset((prefs and prefs["preferred_teams"]) or ()),
            preferred_surveyors=frozenset((prefs and prefs["preferred_surveyors"]) or ()),
            avoided_surveyors=frozenset((prefs and prefs["avoided_surveyors"]) or ()),
        ),
        cfg,
    )


def ack_timeout_s(cfg: dict[str, Any], insurer: str, priority: str) -> float:
    """A specific setting (insurer, priority) beats the default; with both, the shorter wins."""
    specific = [
        float(v)
        for v in (cfg["by_insurer"].get(insurer), cfg["by_priority"].get(priority))
        if v is not None
    ]
    return min(specific) if specific else float(cfg["default_s"])


def facts_from_job(job: asyncpg.Record | dict[str, Any]) -> policy.JobFacts:
    return policy.JobFacts(
        case_id=job["case_id"],
        insurer_code=job["insurer_code"],
        required_skills=frozenset(job["required_skills"]),
        lat=job["loss_lat"],
        lon=job["loss_lon"],
        region=job["region"],
        priority=job["priority"],
    )


async def assignment_events(
    rt: Runtime,
    conn: asyncpg.Connection,
    state: domain.JobState,
    facts: policy.JobFacts,
    now: datetime,
    *,
    why: str,
    previous: str | None,
    ctx: DecisionContext | None = None,
    roster: list[policy.SurveyorView] | None = None,
) -> list[Event]:
    """Run the policy for the next attempt: an assignment, or the dispatcher queue."""
    ctx = ctx or await load_context(rt, conn, facts.insurer_code)
    if roster is None:
        roster = await roster_cache(rt).load(conn, now)
    return decide_assignment(
        rt, state, facts, now, why=why, previous=previous, ctx=ctx, roster=roster
    )


def decide_assignment(
    rt: Runtime,
    state: domain.JobState,
    facts: policy.JobFacts,
    now: datetime,
    *,
    why: str,
    previous: str | None,
    ctx: DecisionContext,
    roster: list[policy.SurveyorView],
) -> list[Event]:
    """`assignment_events` with its context and roster at hand (no I/O)."""
    ds = dsettings(rt)
    prefs = ctx.prefs
    decision = policy.choose(facts, roster, now, prefs, exclude=frozenset(state.tried))
    common = {"job_id": state.job_id, "case_id": state.case_id}
    if state.attempt >= ds.max_attempts:
        return [
            JobQueuedForDispatcher(
                **common,
                reason=f"{state.attempt} assignment(s) without acknowledgement ({why}): "
                "call the team",
                call_the_team=True,
                kind="timed_out" if why.startswith("timed out") else "declined",
                attempt=state.attempt,
                policy_version=decision.version,
            )
        ]
    if decision.chosen is None:
        kind: Literal["no_candidate", "timed_out", "declined"] = "no_candidate"
        if previous is not None:
            kind = "timed_out" if why.startswith("timed out") else "declined"
        return [
            JobQueuedForDispatcher(
                **common,
                reason=(f"{why}; " if previous else "") + decision.reason,
                call_the_team=previous is not None,
                kind=kind,
                attempt=state.attempt,
                candidates=decision.candidates,
                policy_version=decision.version,
            )
        ]
    due = now + timedelta(
        seconds=ack_timeout_s(ctx.ack_timeouts, facts.insurer_code, facts.priority)
    )
    if state.attempt == 0:
        return [
            SurveyorAssigned(
                **common,
                surveyor_id=decision.chosen,
                insurer_code=facts.insurer_code,
                attempt=1,
                policy_version=decision.version,
                candidates=decision.candidates,
                reason=decision.reason,
                ack_due_at=due,
            )
        ]
    return [
        SurveyorReassigned(
            **common,
            from_surveyor_id=previous,
            to_surveyor_id=decision.chosen,
            attempt=state.attempt + 1,
            reason=f"{why}; {decision.reason}",
            policy_version=decision.version,
            candidates=decision.candidates,
            ack_due_at=due,
        )
    ]


# -- loading a job ---------------------------------------------------------------------------


async def job_row(conn: asyncpg.Connection, job_id: str) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM jobs WHERE job_id = $1", job_id)
    if row is None:
        raise NotFound(f"no job {job_id}")
    return row


async def load_state(rt: Runtime, conn: asyncpg.Connection, case_id: str) -> domain.JobState:
    envs = await rt.store.read_stream(conn, job_stream(case_id))
    return domain.replay([e.payload for e in envs])


# -- consumers -----------------------------------------------------------------------------


async def on_intake_event(rt: Runtime, conn: asyncpg.Connection, env: Envelope) -> None:
    e = env.payload
    if isinstance(e, CaseReported):
        await on_case_reported(rt, conn, e)
    elif isinstance(e, CaseCancelled):
        await assign_lock(conn)
        state = await load_state(rt, conn, e.case_id)
        events = domain.decide_cancel(state, f"case cancelled at intake: {e.reason}")
        if events:
            await record(rt, conn, job_stream(e.case_id), events, state.version)
    elif isinstance(e, CaseDetailsCorrected):
        await assign_lock(conn)
        state = await load_state(rt, conn, e.case_id)
        if state.status in ("new", "closed", "cancelled"):
            return
        changes = _job_changes(e.changes)
        if changes:
            await record(
                rt,
                conn,
                job_stream(e.case_id),
                [JobDetailsUpdated(job_id=state.job_id, case_id=e.case_id, changes=changes)],
                state.version,
            )


_CORRECTABLE = {
    "plate": "plate",
    "loss_address": "loss_address",
    "loss_lat": "loss_lat",
    "loss_lon": "loss_lon",
    "region": "region",
    "priority": "priority",
    "description": "description",
    "insured_name": "contact_name",
    "insured_phone": "contact_phone",
}


def _job_changes(changes: dict[str, Any]) -> dict[str, Any]:
    return {_CORRECTABLE[k]: v for k, v in changes.items() if k in _CORRECTABLE}


async def on_case_reported(rt: Runtime, conn: asyncpg.Connection, case: CaseReported) -> bool:
    """Open the case's job and assign it; False when the case already has a job."""
    return await cases_reported(rt, conn, [case]) == 1


async def cases_reported(
    rt: Runtime,
    conn: asyncpg.Connection,
    cases: Sequence[CaseReported],
    envs: Sequence[Envelope] | None = None,
) -> int:
    """Open each case's job and assign it, in order, one decision after the other as if each
    were alone: one lock and one read of the roster (with the insurers' preferences, the
    deadlines and which cases have a job) for all of them, then the decisions, and then every
    new job assigned at once (the common case) written in one round trip
    (`EventStore.append_prepared`). `envs` (the cases' envelopes, from a consumer batch): each
    case's events are caused by its own. Returns how many jobs were opened (a case with a job
    is skipped)."""
    await assign_lock(conn)  # its own statement: what follows must see rows committed meanwhile
    now = rt.clock.now()
    roster, head = await roster_cache(rt).load_with(
        conn, now, sorted({c.insurer_code for c in cases}), [c.case_id for c in cases]
    )
    done: set[str] = set(head["dups"] or ())
    prefs = {p["insurer_code"]: p for p in head["prefs"] or ()}
    where = {v.surveyor_id: i for i, v in enumerate(roster)}
    opened_jobs = 0
    batch: list[PreparedAppend] = []
    for i, case in enumerate(cases):
        if case.case_id in done:
            continue
        done.add(case.case_id)
        ctx = _context(rt, head["cfg"], prefs.get(case.insurer_code), False)
        stream = job_stream(case.case_id)
        # the append's cause and trace are read when it is prepared, inside this block
        with _caused_by(envs[i] if envs is not None else None):
            events = _open_and_assign(rt, case, rt.clock.now(), ctx, roster)
            # expected version 0: even a writer that skipped the lock could not open a second
            # job; its ConcurrencyConflict fails the transaction, and the redelivery then
            # finds the job
            opened, chosen = events
            if isinstance(opened, JobOpened) and isinstance(chosen, SurveyorAssigned):
                batch.append(_prepare_opened_assigned(rt, stream, opened, chosen, 0))
            else:  # no suitable surveyor: to the dispatcher's queue
                await record(rt, conn, stream, events, 0)
        opened_jobs += 1
        if isinstance(chosen, SurveyorAssigned) and chosen.surveyor_id in where:
            # the next decision sees this one's load (as a fresh read of the roster would)
            k = where[chosen.surveyor_id]
            v = roster[k]
            roster[k] = replace(v, open_jobs=v.open_jobs + 1, assigned_today=v.assigned_today + 1)
    if batch:
        await rt.store.append_prepared(conn, batch)
    return opened_jobs


@contextlib.contextmanager
def _caused_by(env: Envelope | None) -> Iterator[None]:
    """What `EventConsumer._handle` sets around one event: its cause, and its trace (a span in
    the event's trace, so what the event causes joins it)."""
    if env is None:
        yield
        return
    with (
        tracer().start_as_current_span(
            f"handle {env.event_type}",
            context=extract_context(env.trace_context or {}),
            attributes={"messaging.message.id": str(env.event_id)},
        ),
        caused_by(correlation_id=env.correlation_id, causation_id=env.event_id, actor=None),
    ):
        yield


def _open_and_assign(
    rt: Runtime,
    case: CaseReported,
    now: datetime,
    ctx: DecisionContext,
    roster: list[policy.SurveyorView],
) -> list[Event]:
    opened = JobOpened(
        job_id=job_id_for(case.case_id),
        case_id=case.case_id,
        insurer_code=case.insurer_code,
        plate=case.plate,
        loss_type=case.loss_type,
        loss_address=case.loss_address,
        loss_lat=case.loss_lat,
        loss_lon=case.loss_lon,
        region=case.region,
        priority=case.priority,
        required_skills=policy.required_skills(case.loss_type, case.injuries, case.description),
        contact_name=case.insured_name or case.reporter_name,
        contact_phone=case.insured_phone or case.reporter_phone,
        description=case.description,
        survey_place=case.survey_place,
        repair_shop=case.repair_shop,
    )
    state = domain.evolve(domain.JobState(), opened)
    facts = policy.JobFacts(
        case_id=case.case_id,
        insurer_code=case.insurer_code,
        required_skills=frozenset(opened.required_skills),
        lat=case.loss_lat,
        lon=case.loss_lon,
        region=case.region,
        priority=case.priority,
    )
    return [
        opened,
        *decide_assignment(
            rt, state, facts, now, why="new case", previous=None, ctx=ctx, roster=roster
        ),
    ]


async def on_intake_batch(rt: Runtime, conn: asyncpg.Connection, envs: list[Envelope]) -> None:
    """The consumer's batch path (a fetch of several events, one transaction): runs of
    CaseReported go through `cases_reported` together; the others one by one, in order."""
    run: list[Envelope] = []

    async def flush() -> None:
        if run:
            await cases_reported(rt, conn, [e.payload for e in run], run)  # type: ignore[misc]
            run.clear()

    for env in envs:
        if isinstance(env.payload, CaseReported):
            run.append(env)
            continue
        await flush()
        with _caused_by(env):
            await on_intake_event(rt, conn, env)
    await flush()


# -- timers --------------------------------------------------------------------------------


async def on_ack_timeout(
    rt: Runtime, conn: asyncpg.Connection, timer: Timer, now: datetime
) -> None:
    await assign_lock(conn)
    case_id = timer.payload["case_id"]
    state = await load_state(rt, conn, case_id)
    events = domain.decide_timeout(state, int(timer.payload["attempt"]), now)
    if not events:
        return
    row = await job_row(conn, state.job_id)
    why = f"timed out: {state.surveyor_id} did not acknowledge by {state.ack_due_at:%H:%M:%S}"
    after = domain.evolve(state, events[0])
    events += await assignment_events(
        rt, conn, after, facts_from_job(row), now, why=why, previous=state.surveyor_id
    )
    await record(rt, conn, job_stream(case_id), events, state.version)


PRUNE_TIMER = "prune"  # a housekeeping timer (claimdesk.timers): re-arms itself
FEED_PRUNED_KEY = "feed_pruned_through"  # dispatch_config: the last feed position pruned


async def on_prune(rt: Runtime, conn: asyncpg.Connection, timer: Timer, now: datetime) -> None:
    """Drop the rows only the live service needed, once older than `retention_days`: the
    stream's feed rows (the oldest first, by position; the position pruned through is kept,
    and a phone resuming from before it gets a snapshot instead) and the assignment rows (the
    fairness count reads today's only). The events keep the whole history."""
    ds = dsettings(rt)
    before = now - timedelta(days=ds.retention_days)
    row = await conn.fetchrow(
        """WITH head AS (SELECT seq, at FROM job_feed ORDER BY seq LIMIT $2),
                feed AS (DELETE FROM job_feed WHERE seq IN (SELECT seq FROM head WHERE at < $1)
                         RETURNING seq),
                asg AS (DELETE FROM assignments WHERE (job_id, attempt) IN (
                            SELECT job_id, attempt FROM assignments
                            WHERE assigned_at < $1 ORDER BY assigned_at LIMIT $2)
                        RETURNING 1),
                mark AS (INSERT INTO dispatch_config (key, value)
                         SELECT $3, to_jsonb(max(seq)) FROM feed HAVING count(*) > 0
                         ON CONFLICT (key) DO UPDATE SET value = to_jsonb(GREATEST(
                             (dispatch_config.value #>> '{}')::bigint,
                             (EXCLUDED.value #>> '{}')::bigint)))
           SELECT (SELECT count(*) FROM feed) AS feed, (SELECT count(*) FROM asg) AS asg""",
        before,
        HOUSEKEEPING_CHUNK,
        FEED_PRUNED_KEY,
    )
    assert row is not None
    if row["feed"] or row["asg"]:
        log.info(
            "pruned",
            extra={"cd_feed_rows": row["feed"], "cd_assignment_rows": row["asg"]},
        )
    more = max(row["feed"], row["asg"]) >= HOUSEKEEPING_CHUNK
    await rearm(conn, timer, now, more=more, every=timedelta(seconds=ds.prune_interval_s))


async def feed_pruned_through(conn: asyncpg.Connection) -> int:
    value = await conn.fetchval(
        "SELECT (value #>> '{}')::bigint FROM dispatch_config WHERE key = $1", FEED_PRUNED_KEY
    )
    return int(value or 0)


async def _still_for(conn: asyncpg.Connection, payload: dict[str, Any]) -> asyncpg.Record | None:
    """The job, if it is still the payload's surveyor's (and attempt's), with that surveyor's
    name and phone (`surveyor_name`, `surveyor_phone`): one round trip per notification."""
    row = await conn.fetchrow(
        "SELECT j.*, s.name AS surveyor_name, s.phone AS surveyor_phone FROM jobs j "
        "LEFT JOIN surveyors s ON s.surveyor_id = j.surveyor_id WHERE j.job_id = $1",
        payload["job_id"],
    )
    if row is None or row["surveyor_id"] != payload["surveyor_id"]:
        return None
    if "attempt" in payload and row["attempt"] != payload["attempt"]:
        return None
    return row


async def on_notify_sms(rt: Runtime, conn: asyncpg.Connection, timer: Timer, now: datetime) -> None:
    p = timer.payload
    job = await _still_for(conn, p)
    if job is None or job["status"] != "assigned":
        return
    await _send_sms(rt, conn, timer, now, job, job["surveyor_phone"], job_sms_text(job), "surveyor")


async def on_notify_customer(
    rt: Runtime, conn: asyncpg.Connection, timer: Timer, now: datetime
) -> None:
    p = timer.payload
    job = await _still_for(conn, p)
    if job is None or not job["contact_phone"]:
        return
    s = {"name": job["surveyor_name"], "phone": job["surveyor_phone"]}
    await _send_sms(
        rt, conn, timer, now, job, job["contact_phone"], customer_sms_text(job, s), "customer"
    )


async def _send_sms(  # noqa: PLR0917
    rt: Runtime,
    conn: asyncpg.Connection,
    timer: Timer,
    now: datetime,
    job: asyncpg.Record,
    phone: str,
    text: str,
    recipient: Literal["surveyor", "team", "customer"],
) -> None:
    p = timer.payload
    tries = int(p.get("try", 1))
    outcome: Literal["delivered", "failed"] = "delivered"
    try:
        detail = str(await rt.extras["sms"].send(phone, text))
    except Exception as exc:
        detail, outcome = f"{type(exc).__name__}: {exc}"[:500], "failed"
    await record_any(
        rt,
        conn,
        job_stream(job["case_id"]),
        [
            JobNotified(
                job_id=job["job_id"],
                case_id=job["case_id"],
                surveyor_id=p["surveyor_id"],
                channel="sms",
                outcome=outcome,
                detail=detail,
                recipient=recipient,
                attempt=tries,
            )
        ],
    )
    if outcome == "failed" and tries < dsettings(rt).sms_max_attempts:
        await schedule(
            conn,
            f"{timer.timer_id}:retry{tries}",
            timer.kind,
            now + timedelta(seconds=2.0**tries),
            {**p, "try": tries + 1},
        )


async def on_notify_webhook(
    rt: Runtime, conn: asyncpg.Connection, timer: Timer, now: datetime
) -> None:
    p = timer.payload
    job = await _still_for(conn, p)
    hook = await conn.fetchrow("SELECT url, secret FROM team_webhooks WHERE team = $1", p["team"])
    if job is None or hook is None or job["status"] != "assigned":
        return
    tries = int(p.get("try", 1))
    body = json.dumps(
        {
            "type": "job.assigned",
            "delivery_id": f"{timer.timer_id}",
            "attempt": tries,
            "job": job_json(job),
            "sms_text": job_sms_text(job),
        },
        ensure_ascii=False,
    ).encode()
    ts = str(int(now.timestamp()))
    headers = {
        "Content-Type": "application/json",
        "X-ClaimDesk-Timestamp": ts,
        "X-ClaimDesk-Signature": sign_webhook(hook["secret"], ts, body),
        "X-ClaimDesk-Delivery": timer.timer_id,
    }
    try:
        r = await rt.http.post(hook["url"], content=body, headers=headers, timeout=3.0)
        ok = 200 <= r.status_code < 300
        detail = f"HTTP {r.status_code}"
    except Exception as exc:
        ok, detail = False, f"{type(exc).__name__}: {exc}"[:500]
    await record_any(
        rt,
        conn,
        job_stream(job["case_id"]),
        [
            JobNotified(
                job_id=job["job_id"],
                case_id=job["case_id"],
                surveyor_id=p["surveyor_id"],
                channel="webhook",
                outcome="delivered" if ok else "failed",
                detail=detail,
                recipient="team",
                attempt=tries,
            )
        ],
    )
    ds = dsettings(rt)
    if not ok and tries < ds.webhook_max_attempts:
        base = timer.timer_id.split(":retry")[0]
        await schedule(
            conn,
            f"{base}:retry{tries}",
            timer.kind,
            now + timedelta(seconds=ds.webhook_backoff_s * 2 ** (tries - 1)),
            {**p, "try": tries + 1},
        )


# -- commands ------------------------------------------------------------------------------


async def _retrying(coro_factory: Any) -> Any:
    """Re-run a command whose append lost a race (e.g. with a notification record)."""
    for attempt in range(5):
        try:
            return await coro_factory()
        except ConcurrencyConflict:
            if attempt == 4:
                raise Conflict("the job changed meanwhile; try again") from None
            await asyncio.sleep(0.01 * (attempt + 1))
    return None


async def job_step(
    rt: Runtime,
    job_id: str,
    step: domain.Step,
    device_time: datetime | None,
) -> dict[str, Any]:
    now = rt.clock.now()
    if device_time is not None and device_time > now + timedelta(minutes=5):
        raise InvalidInput("device_time is in the future")

    async def run() -> dict[str, Any]:
        async with rt.pool.acquire() as conn, conn.transaction():
            row = await job_row(conn, job_id)
            state = await load_state(rt, conn, row["case_id"])
            events = domain.decide_step(state, step, now)
            await record(
                rt, conn, job_stream(row["case_id"]), events, state.version, occurred_at=device_time
            )
            return await job_view(rt, conn, job_id)

    result: dict[str, Any] = await _retrying(run)
    return result


async def job_decline(
    rt: Runtime, job_id: str, surveyor: str | None, reason: str
) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async with rt.pool.acquire() as conn, conn.transaction():
            await assign_lock(conn)
            row = await job_row(conn, job_id)
            state = await load_state(rt, conn, row["case_id"])
            events = domain.decide_decline(state, surveyor, reason)
            after = domain.evolve(state, events[0])
            why = f"declined by {state.surveyor_id}: {reason.strip()}"
            events += await assignment_events(
                rt,
                conn,
                after,
                facts_from_job(row),
                rt.clock.now(),
                why=why,
                previous=state.surveyor_id,
            )
            await record(rt, conn, job_stream(row["case_id"]), events, state.version)
            return await job_view(rt, conn, job_id)

    result: dict[str, Any] = await _retrying(run)
    return result


async def manual_assign(
    rt: Runtime, job_id: str, surveyor_id: str, reason: str, actor: str
) -> dict[str, Any]:
    if not reason.strip():
        raise InvalidInput("a manual assignment needs a reason")

    async def run() -> dict[str, Any]:
        async with rt.pool.acquire() as conn, conn.transaction():
            await assign_lock(conn)
            row = await job_row(conn, job_id)
            s = await conn.fetchrow("SELECT * FROM surveyors WHERE surveyor_id = $1", surveyor_id)
            if s is None:
                raise NotFound(f"no surveyor {surveyor_id}")
            if s["retired"]:
                raise Conflict(f"surveyor {surveyor_id} is retired")
            state = await load_state(rt, conn, row["case_id"])
            if "assign" not in domain.allowed(state):
                raise Conflict(
                    f"cannot assign a job that is {state.status}; allowed now: "
                    + (", ".join(domain.allowed(state)) or "nothing"),
                    allowed=domain.allowed(state),
                )
            if state.surveyor_id == surveyor_id:
                raise Conflict(f"the job is already assigned to {surveyor_id}")
            now = rt.clock.now()
            cfg = await ack_timeouts(rt, conn)
            due = now + timedelta(seconds=ack_timeout_s(cfg, row["insurer_code"], row["priority"]))
            common = {"job_id": job_id, "case_id": row["case_id"]}
            event: Event
            if state.attempt == 0:
                event = SurveyorAssigned(
                    **common,
                    surveyor_id=surveyor_id,
                    insurer_code=row["insurer_code"],
                    attempt=1,
                    policy_version="manual",
                    reason=reason.strip(),
                    assigned_by=actor,
                    ack_due_at=due,
                )
            else:
                event = SurveyorReassigned(
                    **common,
                    from_surveyor_id=state.surveyor_id,
                    to_surveyor_id=surveyor_id,
                    attempt=state.attempt + 1,
                    reason=reason.strip(),
                    policy_version="manual",
                    assigned_by=actor,
                    ack_due_at=due,
                )
            await record(rt, conn, job_stream(row["case_id"]), [event], state.version)
            return await job_view(rt, conn, job_id)

    result: dict[str, Any] = await _retrying(run)
    return result


# -- surveyors -----------------------------------------------------------------------------


@dataclass
class NewSurveyor:
    name: str
    phone: str
    team: str
    skills: list[str]
    regions: list[str]
    base_lat: float
    base_lon: float
    capacity: int
    shifts: list[dict[str, Any]]
    surveyor_id: str | None = None


async def register_surveyor(rt: Runtime, conn: asyncpg.Connection, s: NewSurveyor) -> str | None:
    sid = s.surveyor_id or f"S-{uuid.uuid4().hex[:8].upper()}"
    event = SurveyorRegistered(
        surveyor_id=sid,
        name=s.name,
        phone=s.phone,
        team=s.team,
        skills=s.skills,
        regions=s.regions,
        base_lat=s.base_lat,
        base_lon=s.base_lon,
        capacity=s.capacity,
        shifts=s.shifts,
    )
    try:
        async with conn.transaction():
            await record(rt, conn, surveyor_stream(sid), [event], 0)
    except ConcurrencyConflict:
        return None
    return sid


async def surveyor_event(
    rt: Runtime, surveyor_id: str, event: Event, *, occurred_at: datetime | None = None
) -> dict[str, Any]:
    async with rt.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT retired FROM surveyors WHERE surveyor_id = $1 FOR UPDATE", surveyor_id
        )
        if row is None:
            raise NotFound(f"no surveyor {surveyor_id}")
        if row["retired"]:
            raise Conflict(f"surveyor {surveyor_id} is retired")
        await record(rt, conn, surveyor_stream(surveyor_id), [event], ANY, occurred_at=occurred_at)
        return await surveyor_view(conn, surveyor_id, rt.clock.now())


async def signable_surveyor(
    conn: asyncpg.Connection, surveyor_id: str, *, lock: bool = False
) -> asyncpg.Record:
    """The surveyor's name, team and `token_generation`, to sign a token with (locked for a
    rotation); 404 for an unknown surveyor, 409 for a retired one."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT name, team, retired, token_generation FROM surveyors WHERE surveyor_id = $1"
        + (" FOR UPDATE" if lock else ""),
        surveyor_id,
    )
    if row is None:
        raise NotFound(f"no surveyor {surveyor_id}")
    if row["retired"]:
        raise Conflict(f"surveyor {surveyor_id} is retired")
    return row


async def rotate_surveyor_token(rt: Runtime, surveyor_id: str, reason: str) -> asyncpg.Record:
    """Raise the surveyor's token generation (`SurveyorTokenRotated`); returns the surveyor's
    row as committed (name, team, the new `token_generation`) to sign the new token with."""
    async with rt.pool.acquire() as conn, conn.transaction():
        row = await signable_surveyor(conn, surveyor_id, lock=True)
        event = SurveyorTokenRotated(
            surveyor_id=surveyor_id, generation=row["token_generation"] + 1, reason=reason
        )
        await record(rt, conn, surveyor_stream(surveyor_id), [event], ANY)
        after: asyncpg.Record = await conn.fetchrow(
            "SELECT name, team, token_generation FROM surveyors WHERE surveyor_id = $1",
            surveyor_id,
        )
        return after


async def surveyor_view(
    conn: asyncpg.Connection, surveyor_id: str, now: datetime
) -> dict[str, Any]:
    rows = await surveyors_list(conn, now, surveyor_id=surveyor_id)
    if not rows:
        raise NotFound(f"no surveyor {surveyor_id}")
    return rows[0]


async def surveyors_list(
    conn: asyncpg.Connection,
    now: datetime,
    *,
    surveyor_id: str | None = None,
    team: str | None = None,
    include_retired: bool = False,
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT s.*, CASE WHEN s.today_start = $1 THEN s.assigned_today ELSE 0 END AS today
           FROM surveyors s
           WHERE ($2::text IS NULL OR s.surveyor_id = $2)
             AND ($3::text IS NULL OR s.team = $3)
             AND ($4 OR NOT s.retired)
           ORDER BY s.team, s.surveyor_id""",
        local_day_start(now),
        surveyor_id,
        team,
        include_retired or surveyor_id is not None,
    )
    out = []
    for r in rows:
        view = policy_view(r)
        out.append(
            {
                "surveyor_id": r["surveyor_id"],
                "name": r["name"],
                "phone": r["phone"],
                "team": r["team"],
                "skills": list(r["skills"]),
                "regions": list(r["regions"]),
                "base_lat": r["base_lat"],
                "base_lon": r["base_lon"],
                "lat": r["lat"],
                "lon": r["lon"],
                "capacity": r["capacity"],
                "shifts": r["shifts"],
                "available": r["available"],
                "availability_reason": r["availability_reason"],
                "on_shift": view.on_shift(now) and not r["retired"],
                "retired": r["retired"],
                "open_jobs": r["open_jobs"],
                "assigned_today": r["today"],
            }
        )
    return out


# -- views ---------------------------------------------------------------------------------


def job_json(r: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    def ts(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    return {
        "job_id": r["job_id"],
        "case_id": r["case_id"],
        "surveyor_id": r["surveyor_id"],
        "team": r["team"],
        "status": r["status"],
        "attempt": r["attempt"],
        "insurer_code": r["insurer_code"],
        "priority": r["priority"],
        "plate": r["plate"],
        "loss_type": r["loss_type"],
        "loss_address": r["loss_address"],
        "loss_lat": r["loss_lat"],
        "loss_lon": r["loss_lon"],
        "region": r["region"],
        "required_skills": list(r["required_skills"]),
        "contact_name": r["contact_name"],
        "contact_phone": r["contact_phone"],
        "description": r["description"],
        "ack_due_at": ts(r["ack_due_at"]),
        "queue": (
            {
                "kind": r["queue_kind"],
                "reason": r["queue_reason"],
                "call_the_team": r["call_the_team"],
            }
            if r["status"] == "queued"
            else None
        ),
        "opened_at": ts(r["opened_at"]),
        "updated_at": ts(r["updated_at"]),
    }


_SKIP = {"job_id", "case_id", "candidates"}


async def job_view(rt: Runtime, conn: asyncpg.Connection, job_id: str) -> dict[str, Any]:
    row = await job_row(conn, job_id)
    out = job_json(row)
    out["assignment"] = row["assignment"]
    envs = await rt.store.read_stream(conn, job_stream(row["case_id"]))
    out["allowed_steps"] = domain.allowed(domain.replay([e.payload for e in envs]))
    out["timeline"] = [
        {
            "event_type": e.event_type,
            "occurred_at": e.occurred_at.isoformat(),
            "recorded_at": e.recorded_at.isoformat(),
            "actor": e.actor,
            **{k: v for k, v in e.payload.model_dump(mode="json").items() if k not in _SKIP},
        }
        for e in envs
    ]
    return out
