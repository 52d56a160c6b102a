"""Satisfaction callbacks (客户回访) and what complaints learns from intake and dispatch.

- SurveyCompleted (dispatch) -> a callback for a deterministic sample of cases (rate per
  insurer, 100% by default) in an agent's queue.
- An unreachable customer is tried again later, up to N tries, then CallbackFailed.
- A completed callback records satisfaction 1-5, reasons and a surveyor rating; a dissatisfied
  answer can open a complaint in the same transaction, linked both ways.
- CaseReported / CaseDetailsCorrected (intake) -> the case's insurer and caller for sampling
  and for complaints; ConsultationLogged / OwnershipHandedOver -> consultation follow-ups in
  the owner's worklist.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from claimdesk.errors import Conflict, InvalidInput, NotFound
from claimdesk.events.base import Envelope, Event
from claimdesk.events.complaints import (
    CallbackAttemptFailed,
    CallbackCompleted,
    CallbackFailed,
    CallbackRateSet,
    CallbackScheduled,
    ComplaintReceived,
    WorkItemHandedOver,
)
from claimdesk.events.dispatch import SurveyCompleted, SurveyorAssigned
from claimdesk.events.intake import (
    CaseDetailsCorrected,
    CaseReported,
    ConsultationLogged,
    OwnershipHandedOver,
)
from claimdesk.eventstore import ConcurrencyConflict

from complaints import handlers
from complaints.handlers import Ctx
from complaints.settings import ComplaintsSettings


def sample_point(case_id: str) -> float:
    """A stable number in [0, 1) for a case: the same case is always in or out of a sample."""
    digest = hashlib.sha256(case_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def sampled(case_id: str, rate: float) -> bool:
    return sample_point(case_id) < rate


def pick_agent(case_id: str, agents: list[str]) -> str:
    digest = hashlib.sha256(f"agent:{case_id}".encode()).digest()
    return agents[int.from_bytes(digest[:4], "big") % len(agents)]


def callback_stream(callback_id: str) -> str:
    return f"callback-{callback_id}"


async def rate_for(conn: asyncpg.Connection, insurer: str | None, default: float) -> float:
    if insurer is None:
        return default
    rate = await conn.fetchval("SELECT rate FROM callback_rates WHERE insurer_code = $1", insurer)
    return default if rate is None else float(rate)


async def set_rate(ctx: Ctx, conn: asyncpg.Connection, insurer: str, rate: float, by: str) -> None:
    await ctx.store.append(
        conn,
        f"callback-rate-{insurer}",
        [CallbackRateSet(insurer_code=insurer, rate=rate, set_by=by)],
        -1,
    )
    await conn.execute(
        """INSERT INTO callback_rates (insurer_code, rate, set_by, set_at) VALUES ($1,$2,$3,$4)
           ON CONFLICT (insurer_code) DO UPDATE SET rate = $2, set_by = $3, set_at = $4""",
        insurer,
        rate,
        by,
        ctx.now,
    )


# -- consumers ----------------------------------------------------------------------------------


async def on_dispatch_event(
    ctx: Ctx, conn: asyncpg.Connection, env: Envelope, cfg: ComplaintsSettings
) -> None:
    e = env.payload
    if isinstance(e, SurveyorAssigned) and e.insurer_code:
        await conn.execute(
            """INSERT INTO cases (case_id, insurer_code) VALUES ($1, $2)
               ON CONFLICT (case_id) DO UPDATE SET insurer_code = $2""",
            e.case_id,
            e.insurer_code,
        )
        return
    if not isinstance(e, SurveyCompleted):
        return
    callback_id = f"CB-{e.job_id}"
    if await conn.fetchval("SELECT 1 FROM callbacks WHERE callback_id = $1", callback_id):
        return
    insurer = await handlers.insurer_of(conn, e.case_id)
    if not sampled(e.case_id, await rate_for(conn, insurer, cfg.callback_rate)):
        return
    owner = pick_agent(e.case_id, cfg.callback_agents)
    due = ctx.now + timedelta(seconds=cfg.callback_delay_s)
    event = CallbackScheduled(
        callback_id=callback_id,
        case_id=e.case_id,
        job_id=e.job_id,
        surveyor_id=e.surveyor_id,
        insurer_code=insurer,
        owner=owner,
        due_at=due,
    )
    await ctx.store.append(conn, callback_stream(callback_id), [event], 0)
    await conn.execute(
        """INSERT INTO callbacks (callback_id, version, case_id, job_id, surveyor_id, insurer_code,
               owner, status, due_at, created_at, updated_at)
           VALUES ($1, 1, $2, $3, $4, $5, $6, 'scheduled', $7, $8, $8)""",
        callback_id,
        e.case_id,
        e.job_id,
        e.surveyor_id,
        insurer,
        owner,
        due,
        ctx.now,
    )
    await _callback_item(conn, callback_id, ctx.now)


async def on_intake_event(ctx: Ctx, conn: asyncpg.Connection, env: Envelope) -> None:
    e = env.payload
    if isinstance(e, CaseReported):
        await conn.execute(
            """INSERT INTO cases (case_id, insurer_code, caller_name, caller_phone, plate)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (case_id) DO UPDATE SET insurer_code = $2, caller_name = $3,
                   caller_phone = $4, plate = $5""",
            e.case_id,
            e.insurer_code,
            e.insured_name or e.reporter_name,
            e.insured_phone or e.reporter_phone,
            e.plate,
        )
        await conn.execute(  # a callback scheduled before the case was known here
            "UPDATE callbacks SET insurer_code = $2 WHERE case_id = $1 AND insurer_code IS NULL",
            e.case_id,
            e.insurer_code,
        )
    elif isinstance(e, CaseDetailsCorrected):
        ch = e.changes
        if "insurer_code" in ch:
            await conn.execute(
                "UPDATE cases SET insurer_code = $2 WHERE case_id = $1",
                e.case_id,
                ch["insurer_code"],
            )
        for field in ("insured_phone", "reporter_phone"):
            if ch.get(field):
                await conn.execute(
                    "UPDATE cases SET caller_phone = $2 WHERE case_id = $1", e.case_id, ch[field]
                )
    elif isinstance(e, ConsultationLogged):
        await _consultation(conn, e, ctx.now)
    elif isinstance(e, OwnershipHandedOver) and e.subject_type == "consultation":
        await conn.execute(
            "UPDATE consultations SET owner = $2 WHERE consultation_id = $1",
            e.subject_id,
            e.to_owner,
        )
        await _consultation_items(conn, e.subject_id, ctx.now)


async def _consultation(conn: asyncpg.Connection, e: ConsultationLogged, now: datetime) -> None:
    """An unresolved consultation: its first-contact owner (the agent, until a handover in
    intake) and its named follow-up owner both see it until it is logged as resolved."""
    if e.resolved:
        await conn.execute(
            "UPDATE consultations SET status = 'answered' WHERE consultation_id = $1",
            e.consultation_id,
        )
        await conn.execute(
            "DELETE FROM work_items WHERE item_type = 'consultation' AND item_id = $1",
            e.consultation_id,
        )
        return
    owner = await conn.fetchval(
        "SELECT owner FROM consultations WHERE consultation_id = $1", e.consultation_id
    )
    await conn.execute(
        """INSERT INTO consultations (consultation_id, case_id, owner, follow_up_owner, topic,
               caller_name, caller_phone, due_at, status) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,'open')
           ON CONFLICT (consultation_id) DO UPDATE SET follow_up_owner = $4, topic = $5,
               due_at = $8, status = 'open'""",
        e.consultation_id,
        e.case_id,
        owner or e.agent,
        e.follow_up_owner,
        e.topic,
        e.caller_name,
        e.caller_phone,
        e.follow_up_due,
    )
    await _consultation_items(conn, e.consultation_id, now)


async def _consultation_items(
    conn: asyncpg.Connection, consultation_id: str, now: datetime
) -> None:
    row = await conn.fetchrow(
        "SELECT * FROM consultations WHERE consultation_id = $1", consultation_id
    )
    await conn.execute(
        "DELETE FROM work_items WHERE item_type = 'consultation' AND item_id = $1", consultation_id
    )
    if row is None or row["status"] != "open":
        return
    holders = [(row["owner"], "owner")]
    if row["follow_up_owner"] and row["follow_up_owner"] != row["owner"]:
        holders.append((row["follow_up_owner"], "assignee"))
    for holder, relation in holders:
        await conn.execute(
            """INSERT INTO work_items (item_type, item_id, holder, relation, case_id, title,
                   due_at, status, link, updated_at)
               VALUES ('consultation', $1, $2, $3, $4, $5, $6, 'open', NULL, $7)""",
            consultation_id,
            holder,
            relation,
            row["case_id"],
            f"Consultation follow-up: {row['topic'][:60]} "
            f"({row['caller_name']} {row['caller_phone']})",
            row["due_at"],
            now,
        )


# -- callback commands --------------------------------------------------------------------------


async def _callback_item(conn: asyncpg.Connection, callback_id: str, now: datetime) -> None:
    row = await conn.fetchrow("SELECT * FROM callbacks WHERE callback_id = $1", callback_id)
    assert row is not None
    await conn.execute(
        "DELETE FROM work_items WHERE item_type = 'callback' AND item_id = $1", callback_id
    )
    if row["status"] in ("scheduled", "retrying"):
        tries = f", try {row['attempts'] + 1}" if row["attempts"] else ""
        await conn.execute(
            """INSERT INTO work_items (item_type, item_id, holder, relation, case_id, title, due_at,
                   status, link, updated_at)
               VALUES ('callback', $1, $2, 'owner', $3, $4, $5, $6, $7, $8)""",
            callback_id,
            row["owner"],
            row["case_id"],
            f"Satisfaction callback for case {row['case_id']}{tries}",
            row["due_at"],
            row["status"],
            f"/agent/callbacks/{callback_id}",
            now,
        )


async def get_callback(conn: asyncpg.Connection, callback_id: str) -> dict[str, Any]:
    row = await conn.fetchrow("SELECT * FROM callbacks WHERE callback_id = $1", callback_id)
    if row is None:
        raise NotFound(f"no callback {callback_id}")
    out = dict(row)
    out.pop("version", None)
    return out


async def _append_callback(
    ctx: Ctx, conn: asyncpg.Connection, row: asyncpg.Record, events: list[Event]
) -> None:
    try:
        await ctx.store.append(conn, callback_stream(row["callback_id"]), events, row["version"])
    except ConcurrencyConflict:
        raise Conflict("the callback changed meanwhile; reload and try again") from None
    await conn.execute(
        "UPDATE callbacks SET version = version + $2, updated_at = $3 WHERE callback_id = $1",
        row["callback_id"],
        len(events),
        ctx.now,
    )


async def _open_callback(conn: asyncpg.Connection, callback_id: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM callbacks WHERE callback_id = $1 FOR UPDATE", callback_id
    )
    if row is None:
        raise NotFound(f"no callback {callback_id}")
    if row["status"] not in ("scheduled", "retrying"):
        raise Conflict(f"the callback is already {row['status']}", status=row["status"])
    return row


async def record_unreachable(  # noqa: PLR0917
    ctx: Ctx,
    conn: asyncpg.Connection,
    callback_id: str,
    reason: str,
    agent: str,
    cfg: ComplaintsSettings,
) -> dict[str, Any]:
    row = await _open_callback(conn, callback_id)
    attempt = row["attempts"] + 1
    if attempt >= cfg.callback_max_attempts:
        events: list[Event] = [
            CallbackFailed(
                callback_id=callback_id,
                case_id=row["case_id"],
                attempts=attempt,
                last_reason=reason,
            )
        ]
        status, due = "failed", row["due_at"]
    else:
        due = ctx.now + timedelta(seconds=cfg.callback_retry_s)
        events = [
            CallbackAttemptFailed(
                callback_id=callback_id,
                case_id=row["case_id"],
                attempt=attempt,
                reason=reason,
                agent=agent,
                next_due_at=due,
            )
        ]
        status = "retrying"
    await _append_callback(ctx, conn, row, events)
    await conn.execute(
        "UPDATE callbacks SET attempts = $2, status = $3, due_at = $4, last_reason = $5 "
        "WHERE callback_id = $1",
        callback_id,
        attempt,
        status,
        due,
        reason,
    )
    await _callback_item(conn, callback_id, ctx.now)
    return await get_callback(conn, callback_id)


async def record_completed(  # noqa: PLR0917
    ctx: Ctx,
    conn: asyncpg.Connection,
    callback_id: str,
    satisfaction: int,
    surveyor_rating: int | None,
    reasons: list[str],
    comment: str,
    agent: str,
    complaint: dict[str, Any] | None,
) -> dict[str, Any]:
    """Record the answers; a dissatisfied customer's complaint is opened in the same step."""
    row = await _open_callback(conn, callback_id)
    if satisfaction <= 2 and not reasons:
        raise InvalidInput("a dissatisfied answer (1-2) needs its reasons", field="reasons")
    complaint_id = None
    if complaint is not None:
        if satisfaction > 3:
            raise InvalidInput(
                "a complaint is opened from a dissatisfied answer (satisfaction 1-3)",
                field="open_complaint",
            )
        case = await conn.fetchrow(
            "SELECT caller_name, caller_phone FROM cases WHERE case_id = $1", row["case_id"]
        )
        name = complaint.get("caller_name") or (case["caller_name"] if case else None)
        phone = complaint.get("caller_phone") or (case["caller_phone"] if case else None)
        if not name or not phone:
            raise InvalidInput(
                "the case's caller is unknown: give caller_name and caller_phone",
                field="open_complaint",
            )
        complaint_id = handlers.new_complaint_id()
        await handlers.receive(
            ctx,
            conn,
            ComplaintReceived(
                complaint_id=complaint_id,
                case_id=row["case_id"],
                category=complaint["category"],
                severity=complaint["severity"],
                channel="callback",
                caller_name=name,
                caller_phone=phone,
                matter=complaint.get("matter") or "; ".join(reasons) or comment,
                surveyor_id=row["surveyor_id"],
                insurer_code=row["insurer_code"],
                owner=agent,
                callback_id=callback_id,
            ),
        )
    await _append_callback(
        ctx,
        conn,
        row,
        [
            CallbackCompleted(
                callback_id=callback_id,
                case_id=row["case_id"],
                surveyor_id=row["surveyor_id"],
                satisfaction=satisfaction,
                surveyor_rating=surveyor_rating,
                reasons=reasons,
                agent=agent,
                comment=comment,
                attempts=row["attempts"] + 1,
                complaint_id=complaint_id,
            )
        ],
    )
    await conn.execute(
        """UPDATE callbacks SET status = 'completed', attempts = attempts + 1, satisfaction = $2,
               surveyor_rating = $3, reasons = $4, complaint_id = $5 WHERE callback_id = $1""",
        callback_id,
        satisfaction,
        surveyor_rating,
        reasons,
        complaint_id,
    )
    await _callback_item(conn, callback_id, ctx.now)
    return await get_callback(conn, callback_id)


async def handover_callback(  # noqa: PLR0917
    ctx: Ctx, conn: asyncpg.Connection, callback_id: str, to: str, reason: str, by: str
) -> None:
    row = await _open_callback(conn, callback_id)
    if row["owner"] == to:
        raise InvalidInput(f"{to} already owns it", field="to_owner")
    await _append_callback(
        ctx,
        conn,
        row,
        [
            WorkItemHandedOver(
                item_type="callback",
                item_id=callback_id,
                callback_id=callback_id,
                case_id=row["case_id"],
                from_owner=row["owner"],
                to_owner=to,
                reason=reason,
                handed_over_by=by,
            )
        ],
    )
    await conn.execute("UPDATE callbacks SET owner = $2 WHERE callback_id = $1", callback_id, to)
    await _callback_item(conn, callback_id, ctx.now)
