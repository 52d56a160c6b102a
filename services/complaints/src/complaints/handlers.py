"""Complaint handlers: load -> decide -> append (+ timers + read models) in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg
from claimdesk import timers
from claimdesk.errors import Conflict, NotFound
from claimdesk.events.base import Event
from claimdesk.events.complaints import ComplaintReceived, SlaPolicyPublished
from claimdesk.eventstore import ConcurrencyConflict, EventStore

from complaints import clock as ck
from complaints import domain
from complaints.domain import Complaint
from complaints.sla import (
    DEFAULT_POLICY,
    DEFAULT_POLICY_NAME,
    SlaPolicy,
    StoredPolicy,
    choose_policy,
)

TIMER_KIND = "complaint-clock"


@dataclass
class Ctx:
    """What handlers need from the runtime: the store and the time of the command."""

    store: EventStore
    now: datetime


def new_complaint_id() -> str:
    return f"CP{uuid.uuid4().hex[:12].upper()}"


async def load(conn: asyncpg.Connection, store: EventStore, complaint_id: str) -> Complaint:
    envs = await store.read_stream(conn, domain.stream_id(complaint_id))
    return domain.fold([(e.payload, e.occurred_at) for e in envs])


async def history(conn: asyncpg.Connection, store: EventStore, complaint_id: str) -> list[Any]:
    envs: list[Any] = await store.read_stream(conn, domain.stream_id(complaint_id))
    return envs


async def run(
    ctx: Ctx,
    conn: asyncpg.Connection,
    complaint_id: str,
    decide: Callable[[Complaint], list[Event]],
    state: Complaint | None = None,
) -> tuple[Complaint, list[Event]]:
    """Load the complaint, decide, append at the version read, arm or cancel its timers and
    update its read models; all on `conn` (the caller's transaction)."""
    before = state if state is not None else await load(conn, ctx.store, complaint_id)
    events = decide(before)
    if not events:
        return before, []
    try:
        await ctx.store.append(conn, domain.stream_id(complaint_id), events, before.version)
    except ConcurrencyConflict:
        raise Conflict("the complaint changed meanwhile; reload and try again") from None
    # timer_plan reads only the clocks' runs before the events: keep a shallow copy of those
    # and fold the events into the loaded state itself (no deep copy on the hot timer path)
    prior = Complaint(clocks={name: replace(c) for name, c in before.clocks.items()})
    after = before
    for e in events:
        domain.evolve(after, e, ctx.now)
    for op in domain.timer_plan(prior, after, events, ctx.now):
        if op.op == "schedule":
            assert op.due_at is not None
            await timers.schedule(conn, op.timer_id, TIMER_KIND, op.due_at, op.payload)
        else:
            await timers.cancel(conn, op.timer_id)
    await project(conn, after, ctx.now)
    return after, events


# -- read models --------------------------------------------------------------------------------


def next_due(s: Complaint) -> datetime | None:
    dues = [c.due_at() for c in s.clocks.values() if c.status == "running"]
    present = [d for d in dues if d is not None]
    return min(present) if present else None


async def project(conn: asyncpg.Connection, s: Complaint, now: datetime) -> None:
    due = next_due(s)
    await conn.execute(
        """INSERT INTO complaints (complaint_id, case_id, status, owner, assignee, category,
               severity, channel, level, next_due_at, callback_id, received_at, updated_at)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$12)
           ON CONFLICT (complaint_id) DO UPDATE SET status = EXCLUDED.status,
               owner = EXCLUDED.owner, assignee = EXCLUDED.assignee, level = EXCLUDED.level,
               next_due_at = EXCLUDED.next_due_at, updated_at = $12""",
        s.complaint_id,
        s.case_id,
        s.status,
        s.owner,
        s.assignee,
        s.category,
        s.severity,
        s.channel,
        s.level,
        due,
        s.callback_id,
        now,  # received_at: set on insert only
    )
    await conn.execute(
        "DELETE FROM work_items WHERE complaint_id = $1 AND item_type IN ('complaint', 'improvement')",
        s.complaint_id,
    )
    title = f"[{s.category}/{s.severity}] {s.matter[:80]}"
    link = f"/agent/complaints/{s.complaint_id}"
    if s.status != "closed":
        holders = [(s.owner, "owner")]
        if s.assignee and s.assignee != s.owner:
            holders.append((s.assignee, "assignee"))
        for holder, relation in holders:
            await conn.execute(
                """INSERT INTO work_items (item_type, item_id, holder, relation, case_id,
                       complaint_id, title, due_at, status, level, link, updated_at)
                   VALUES ('complaint', $1, $2, $3, $4, $1, $5, $6, $7, $8, $9, $10)""",
                s.complaint_id,
                holder,
                relation,
                s.case_id,
                title,
                due,
                s.status,
                s.level,
                link,
                now,
            )
    for imp in s.improvements.values():
        if imp.done:
            continue
        await conn.execute(
            """INSERT INTO work_items (item_type, item_id, holder, relation, case_id,
                   complaint_id, title, due_at, status, level, link, updated_at)
               VALUES ('improvement', $1, $2, 'owner', $3, $4, $5, $6, 'open', 0, $7, $8)""",
            imp.improvement_id,
            imp.owner,
            s.case_id,
            s.complaint_id,
            f"Improvement: {imp.action[:80]}",
            imp.due_at,
            link,
            now,
        )


def view(s: Complaint, envs: list[Any], now: datetime) -> dict[str, Any]:
    """The complaint as GET /v1/complaints/{id} shows it: status, owner, clocks, history."""
    clocks = []
    for name, c in s.clocks.items():
        remaining = ck.remaining_at(c.state, now)
        clocks.append(
            {
                "clock": name,
                "status": c.status,
                "due_at": c.due_at(),
                "warn_at": c.warn_at(),
                "budget_s": c.state.budget_s,
                "consumed_s": round(ck.consumed_at(c.state, now), 3),
                "remaining_s": round(remaining, 3),
                "overdue": c.status != "stopped" and remaining < 0,
                "business_hours": c.business_hours,
                "warned": c.warned,
                "breached": c.breached,
                "met": c.met,
                "extended": c.extended,
                "extension_reason": c.extension_reason,
                "policy": f"{c.policy_name}@v{c.policy_version}",
            }
        )
    return {
        "complaint_id": s.complaint_id,
        "now": now,
        "case_id": s.case_id,
        "status": s.status,
        "valid": s.valid,
        "triage_reason": s.triage_reason,
        "category": s.category,
        "severity": s.severity,
        "channel": s.channel,
        "caller_name": s.caller_name,
        "caller_phone": s.caller_phone,
        "matter": s.matter,
        "surveyor_id": s.surveyor_id,
        "insurer_code": s.insurer_code,
        "owner": s.owner,
        "assignee": s.assignee,
        "promised_answer_at": s.promised_answer_at,
        "callback_id": s.callback_id,
        "escalation_level": s.level,
        "escalated_to": s.escalated_to,
        "waiting_reason": s.wait_reason,
        "outcome": s.outcome,
        "feedback_to_customer": s.feedback_to_customer,
        "satisfied": s.satisfied,
        "reopened": s.reopened,
        "close_reason": s.close_reason,
        "clocks": clocks,
        "improvements": [
            {
                "improvement_id": i.improvement_id,
                "action": i.action,
                "owner": i.owner,
                "due_at": i.due_at,
                "done": i.done,
                "note": i.note,
            }
            for i in s.improvements.values()
        ],
        "history": [
            {
                "sequence": e.sequence,
                "event_type": e.event_type,
                "occurred_at": e.occurred_at,
                "actor": e.actor,
                "data": e.payload.model_dump(mode="json", exclude={"complaint_id", "case_id"}),
            }
            for e in envs
        ],
    }


# -- SLA policies -------------------------------------------------------------------------------


async def current_policies(conn: asyncpg.Connection) -> list[StoredPolicy]:
    rows = await conn.fetch(
        "SELECT DISTINCT ON (name) name, version, body FROM sla_policies ORDER BY name, version DESC"
    )
    return [
        StoredPolicy(r["name"], r["version"], SlaPolicy.model_validate(r["body"])) for r in rows
    ]


async def policy_version(conn: asyncpg.Connection, name: str, version: int) -> StoredPolicy:
    row = await conn.fetchrow(
        "SELECT body FROM sla_policies WHERE name = $1 AND version = $2", name, version
    )
    if row is None:
        raise NotFound(f"no SLA policy {name} version {version}")
    return StoredPolicy(name, version, SlaPolicy.model_validate(row["body"]))


async def publish_policy(
    ctx: Ctx, conn: asyncpg.Connection, name: str, policy: SlaPolicy, by: str
) -> int:
    """Save a new version (the stream version is the policy version: concurrent PUTs conflict)."""
    current = await conn.fetchval("SELECT max(version) FROM sla_policies WHERE name = $1", name)
    version = (current or 0) + 1
    body = policy.model_dump(mode="json")
    try:
        await ctx.store.append(
            conn,
            f"sla-policy-{name}",
            [SlaPolicyPublished(name=name, version=version, policy=body, published_by=by)],
            version - 1,
        )
    except ConcurrencyConflict:
        raise Conflict(f"policy {name} changed meanwhile; try again") from None
    await conn.execute(
        "INSERT INTO sla_policies (name, version, body, published_by, published_at) "
        "VALUES ($1, $2, $3, $4, $5)",
        name,
        version,
        body,
        by,
        ctx.now,
    )
    return version


async def ensure_default_policy(ctx: Ctx, conn: asyncpg.Connection) -> None:
    if await conn.fetchval("SELECT 1 FROM sla_policies WHERE name = $1", DEFAULT_POLICY_NAME):
        return
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('complaints:default-policy'))")
    if await conn.fetchval("SELECT 1 FROM sla_policies WHERE name = $1", DEFAULT_POLICY_NAME):
        return
    await publish_policy(ctx, conn, DEFAULT_POLICY_NAME, DEFAULT_POLICY, "system")


# -- commands -----------------------------------------------------------------------------------


async def insurer_of(conn: asyncpg.Connection, case_id: str | None) -> str | None:
    if not case_id:
        return None
    value: str | None = await conn.fetchval(
        "SELECT insurer_code FROM cases WHERE case_id = $1", case_id
    )
    return value


async def receive(
    ctx: Ctx, conn: asyncpg.Connection, received: ComplaintReceived
) -> tuple[Complaint, StoredPolicy]:
    """File a complaint: the receiving person owns it; clocks start from the chosen policy."""
    insurer = received.insurer_code or await insurer_of(conn, received.case_id)
    received = received.model_copy(update={"insurer_code": insurer})
    policy = choose_policy(
        await current_policies(conn), insurer, received.category, received.severity
    )
    state, _ = await run(
        ctx,
        conn,
        received.complaint_id,
        lambda s: domain.decide_receive(received, policy, ctx.now),
        state=Complaint(),
    )
    return state, policy


async def policy_of(conn: asyncpg.Connection, s: Complaint) -> StoredPolicy:
    """The policy version the complaint's clocks started with (for a reopened resolution)."""
    c = s.clocks.get("resolution")
    if c is None or c.policy_version == 0:
        return StoredPolicy(DEFAULT_POLICY_NAME, 0, DEFAULT_POLICY)
    return await policy_version(conn, c.policy_name, c.policy_version)


async def on_clock_timer(ctx: Ctx, conn: asyncpg.Connection, payload: dict[str, Any]) -> None:
    await run(
        ctx,
        conn,
        payload["complaint_id"],
        lambda s: domain.decide_timer(
            s,
            clock_name=payload["clock"],
            generation=int(payload["generation"]),
            phase=payload["phase"],
            level=int(payload.get("level", 0)),
            now=ctx.now,
        ),
    )
