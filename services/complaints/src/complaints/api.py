"""HTTP edge of the complaints service: thin routes over the handlers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from claimdesk.auth import AnyStaff, Principal, require_roles
from claimdesk.context import set_actor
from claimdesk.errors import Conflict, InvalidInput, NotFound
from claimdesk.events.complaints import ComplaintReceived
from claimdesk.service import Runtime
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import ValidationError

from complaints import callbacks, domain, handlers
from complaints.clock import parse_duration
from complaints.handlers import Ctx
from complaints.models import (
    CASE_ID,
    STAFF_ID,
    AssignIn,
    AttemptIn,
    ComplaintIn,
    CompleteIn,
    ExtendIn,
    FeedbackIn,
    HandoverIn,
    ImprovementIn,
    RateIn,
    ResolveIn,
    ResumeIn,
    TriageIn,
    WaitIn,
)
from complaints.settings import ComplaintsSettings
from complaints.sla import SlaPolicy

router = APIRouter()
Staff = AnyStaff
Leads = Annotated[Principal, Depends(require_roles("supervisor", "manager"))]
ComplaintId = Annotated[str, Path(pattern=CASE_ID, description="complaint id 投诉编号")]
PolicyName = Annotated[
    str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="policy name 策略名")
]

COMPLAINT_EXAMPLE: dict[str, Any] = {
    "complaint_id": "CP1A2B3C4D5E6F",
    "case_id": "C20261126-0001",
    "status": "assigned",
    "valid": True,
    "category": "delay",
    "severity": "high",
    "owner": "A001",
    "assignee": "T003",
    "promised_answer_at": "2026-11-27T09:00:00Z",
    "escalation_level": 1,
    "escalated_to": "team_lead",
    "clocks": [
        {
            "clock": "first_response",
            "status": "stopped",
            "due_at": None,
            "remaining_s": -120.0,
            "breached": True,
            "met": False,
            "policy": "default@v1",
        },
        {
            "clock": "resolution",
            "status": "running",
            "due_at": "2026-12-03T09:00:00Z",
            "remaining_s": 158400.0,
            "breached": False,
            "policy": "default@v1",
        },
    ],
    "history": [
        {
            "sequence": 1,
            "event_type": "ComplaintReceived",
            "occurred_at": "2026-11-26T01:00:00Z",
            "actor": "agent:A001",
            "data": {"category": "delay"},
        }
    ],
}


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def cfg_of(rt: Runtime) -> ComplaintsSettings:
    cfg: ComplaintsSettings = rt.extras["complaints_settings"]
    return cfg


def staff_id(p: Principal) -> str:
    return str(p.number or p.subject)


@asynccontextmanager
async def tx(
    request: Request, p: Principal | None = None
) -> AsyncIterator[tuple[Ctx, asyncpg.Connection]]:
    rt = _rt(request)
    if p is not None:
        set_actor(p.actor)
    async with rt.pool.acquire() as conn, conn.transaction():
        yield Ctx(rt.store, rt.clock.now()), conn


async def _view(request: Request, conn: asyncpg.Connection, complaint_id: str) -> dict[str, Any]:
    rt = _rt(request)
    envs = await handlers.history(conn, rt.store, complaint_id)
    if not envs:
        raise NotFound(f"no complaint {complaint_id}")
    s = domain.fold([(e.payload, e.occurred_at) for e in envs])
    return handlers.view(s, envs, rt.clock.now())


def _ok(example: Any, description: str = "OK") -> dict[int | str, dict[str, Any]]:
    return {
        200: {"description": description, "content": {"application/json": {"example": example}}}
    }


# -- complaints ---------------------------------------------------------------------------------


@router.post(
    "/v1/complaints",
    status_code=201,
    tags=["complaints"],
    summary="File a complaint (投诉受理)",
    description="An agent records a complaint. The receiving agent becomes its first-contact "
    "owner (首问责任人); the three clocks start from the SLA policy chosen by insurer, category "
    "and severity; the promised answer time is recorded (default: the resolution due time). "
    "With an `Idempotency-Key` header a repeated submission returns the first complaint (200).",
    responses={
        201: {
            "content": {
                "application/json": {
                    "example": {
                        "complaint_id": "CP1A2B3C4D5E6F",
                        "owner": "A001",
                        "status": "received",
                        "promised_answer_at": "2026-12-03T09:00:00Z",
                        "policy": "default@v1",
                    }
                }
            }
        }
    },
)
async def file_complaint(
    body: ComplaintIn,
    request: Request,
    response: Response,
    p: Staff,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=100,
            pattern=r"^[A-Za-z0-9_.:-]+$",
            description="repeat-safe submission: the same key returns the first complaint",
        ),
    ] = None,
) -> dict[str, Any]:
    async with tx(request, p) as (ctx, conn):
        if idempotency_key:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"{p.actor}|{idempotency_key}"
            )
            seen = await conn.fetchval(
                "SELECT complaint_id FROM idempotency_keys WHERE actor = $1 AND key = $2",
                p.actor,
                idempotency_key,
            )
            if seen:
                state = await handlers.load(conn, ctx.store, seen)
                response.status_code = 200
                c = state.clocks["resolution"]
                return _filed(state, f"{c.policy_name}@v{c.policy_version}")
        complaint_id = handlers.new_complaint_id()
        state, policy = await handlers.receive(
            ctx,
            conn,
            ComplaintReceived(complaint_id=complaint_id, owner=staff_id(p), **body.model_dump()),
        )
        if idempotency_key:
            await conn.execute(
                "INSERT INTO idempotency_keys (actor, key, complaint_id, created_at) "
                "VALUES ($1, $2, $3, $4)",
                p.actor,
                idempotency_key,
                complaint_id,
                ctx.now,
            )
    return _filed(state, f"{policy.name}@v{policy.version}")


def _filed(state: domain.Complaint, policy: str) -> dict[str, Any]:
    return {
        "complaint_id": state.complaint_id,
        "owner": state.owner,
        "status": state.status,
        "promised_answer_at": state.promised_answer_at,
        "policy": policy,
    }


@router.get(
    "/v1/complaints/{complaint_id}",
    tags=["complaints"],
    summary="A complaint with its clocks and history",
    description="Status, first-contact owner, assignee, each clock (due time, remaining "
    "counted seconds, warned/breached/met), the escalation level and every event.",
    responses=_ok(COMPLAINT_EXAMPLE),
)
async def get_complaint(complaint_id: ComplaintId, request: Request, _: Staff) -> dict[str, Any]:
    async with _rt(request).pool.acquire() as conn:
        return await _view(request, conn, complaint_id)


@router.get(
    "/v1/complaints",
    tags=["complaints"],
    summary="List complaints",
    description="Newest first; filter by status, owner or escalation level.",
    responses=_ok(
        {"items": [{"complaint_id": "CP1A2B3C4D5E6F", "status": "assigned", "level": 1}]}
    ),
)
async def list_complaints(
    request: Request,
    _: Staff,
    status: Annotated[str | None, Query(max_length=30)] = None,
    owner: Annotated[str | None, Query(pattern=STAFF_ID)] = None,
    min_level: Annotated[int, Query(ge=0, le=3)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    async with _rt(request).pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT * FROM complaints WHERE ($1::text IS NULL OR status = $1)
                 AND ($2::text IS NULL OR owner = $2 OR assignee = $2) AND level >= $3
               ORDER BY received_at DESC LIMIT $4""",
            status,
            owner,
            min_level,
            limit,
        )
    return {"items": [dict(r) for r in rows]}


async def _command(
    request: Request, p: Principal, complaint_id: str, decide: Any
) -> dict[str, Any]:
    async with tx(request, p) as (ctx, conn):
        await handlers.run(ctx, conn, complaint_id, lambda s: decide(s, ctx))
        return await _view(request, conn, complaint_id)


@router.post(
    "/v1/complaints/{complaint_id}/triage",
    tags=["complaints"],
    summary="Judge validity (有效投诉判定)",
    description="An invalid complaint is closed and kept (never deleted); a valid one is "
    "assigned to a named responsible person (ComplaintAssigned). Stops the first-response clock.",
    responses=_ok(COMPLAINT_EXAMPLE),
)
async def triage(
    complaint_id: ComplaintId, body: TriageIn, request: Request, p: Staff
) -> dict[str, Any]:
    return await _command(
        request,
        p,
        complaint_id,
        lambda s, ctx: domain.decide_triage(
            s,
            valid=body.valid,
            reason=body.reason,
            assignee=body.assignee,
            by=staff_id(p),
            now=ctx.now,
        ),
    )


@router.post(
    "/v1/complaints/{complaint_id}/assignment",
    tags=["complaints"],
    summary="Change the responsible person",
    description="A valid, open complaint is given to another named person (ComplaintAssigned); "
    "the first-contact owner does not change (that is a handover).",
    responses=_ok(COMPLAINT_EXAMPLE),
)
async def reassign(
    complaint_id: ComplaintId, body: AssignIn, request: Request, p: Staff
) -> dict[str, Any]:
    return await _command(
        request,
        p,
        complaint_id,
        lambda s, _ctx: domain.decide_reassign(s, body.assignee, body.reason, staff_id(p)),
    )


@router.post(
    "/v1/complaints/{complaint_id}/waiting",
    tags=["complaints"],
    summary="Wait on the customer (clocks pause)",
    description="The running clocks stop counting until the customer answers.",
    responses=_ok(COMPLAINT_EXAMPLE),
)
async def wait(
    complaint_id: ComplaintId, body: WaitIn, request: Request, p: Staff
) -> dict[str, Any]:
    return await _command(
        request, p, complaint_id, lambda s, ctx: domain.decide_pause(s, body.reason, staff_id(p))
    )


@router.post(
    "/v1/complaints/{complaint_id}/resumption",
    tags=["complaints"],
    summary="The customer answered (clocks resume)",
    description="Paused clocks count again; their due times move by the time spent waiting.",
    responses=_ok(COMPLAINT_EXAMPLE),
)
async def resume(
    complaint_id: ComplaintId, body: ResumeIn, request: Request, p: Staff
) -> dict[str, Any]:
    return await _command(
        request,
        p,
        complaint_id,
        lambda s, ctx: domain.decide_resume(s, body.note, staff_id(p), ctx.now),
    )


@router.post(
    "/v1/complaints/{complaint_id}/extensions",
    tags=["complaints"],
    summary="Extend the regulatory deadline (15 -> at most 30 days)",
    description="Once per complaint, with a reason, before the deadline passed.",
    responses=_ok(COMPLAINT_EXAMPLE),
)
async def extend(
    complaint_id: ComplaintId, body: ExtendIn, request: Request, p: Staff
) -> dict[str, Any]:
    def decide(s: domain.Complaint, ctx: Ctx) -> list[Any]:
        target = None
        if body.extend_to is not None:
            c = s.clocks.get("regulatory")
            unit = c.state.calendar.day_seconds if c and c.state.calendar else None
            try:
                target = parse_duration(body.extend_to, unit)
            except ValueError as exc:
                raise InvalidInput(str(exc), field="extend_to") from None
        return domain.decide_extend(s, body.reason, target, staff_id(p), ctx.now)

    return await _command(request, p, complaint_id, decide)


@router.post(
    "/v1/complaints/{complaint_id}/resolution",
    tags=["complaints"],
    summary="Resolve: outcome and feedback to the customer",
    description="Stops the resolution and regulatory clocks; the customer's reaction follows.",
    responses=_ok(COMPLAINT_EXAMPLE),
)
async def resolve(
    complaint_id: ComplaintId, body: ResolveIn, request: Request, p: Staff
) -> dict[str, Any]:
    return await _command(
        request,
        p,
        complaint_id,
        lambda s, ctx: domain.decide_resolve(
            s, body.outcome, body.feedback_to_customer, staff_id(p), ctx.now
        ),
    )


@router.post(
    "/v1/complaints/{complaint_id}/feedback",
    tags=["complaints"],
    summary="The customer's reaction to the resolution",
    description="Satisfied: closed. Not satisfied: reopened with a fresh resolution clock "
    "(or closed with the reason when `reopen` is false).",
    responses=_ok(COMPLAINT_EXAMPLE),
)
async def feedback(
    complaint_id: ComplaintId, body: FeedbackIn, request: Request, p: Staff
) -> dict[str, Any]:
    async with tx(request, p) as (ctx, conn):
        state = await handlers.load(conn, ctx.store, complaint_id)
        policy = await handlers.policy_of(conn, state) if state.exists else None
        await handlers.run(
            ctx,
            conn,
            complaint_id,
            lambda s: domain.decide_feedback(
                s,
                satisfied=body.satisfied,
                comment=body.comment,
                reopen=body.reopen,
                by=staff_id(p),
                policy=policy,  # type: ignore[arg-type]
                now=ctx.now,
            ),
            state=state,
        )
        return await _view(request, conn, complaint_id)


@router.post(
    "/v1/complaints/{complaint_id}/improvements",
    status_code=201,
    tags=["complaints"],
    summary="Record an improvement action (整改措施)",
    description="Tracked in its owner's worklist until completed.",
    responses={201: {"content": {"application/json": {"example": COMPLAINT_EXAMPLE}}}},
)
async def improvement(
    complaint_id: ComplaintId, body: ImprovementIn, request: Request, p: Staff
) -> dict[str, Any]:
    iid = f"IMP{uuid.uuid4().hex[:10].upper()}"
    result = await _command(
        request,
        p,
        complaint_id,
        lambda s, ctx: domain.decide_improvement(
            s,
            improvement_id=iid,
            action=body.action,
            owner=body.owner,
            due=body.due_at,
            now=ctx.now,
        ),
    )
    return {"improvement_id": iid, **result}


@router.post(
    "/v1/complaints/{complaint_id}/improvements/{improvement_id}/completion",
    tags=["complaints"],
    summary="An improvement action was done",
    description="Records ImprovementCompleted; the action leaves its owner's worklist.",
    responses=_ok(COMPLAINT_EXAMPLE),
)
async def complete_improvement(
    complaint_id: ComplaintId,
    improvement_id: Annotated[str, Path(pattern=CASE_ID)],
    body: CompleteIn,
    request: Request,
    p: Staff,
) -> dict[str, Any]:
    return await _command(
        request,
        p,
        complaint_id,
        lambda s, _ctx: domain.decide_complete_improvement(
            s, improvement_id, body.note, staff_id(p)
        ),
    )


# -- ownership ----------------------------------------------------------------------------------


@router.post(
    "/v1/handovers",
    tags=["ownership"],
    summary="Hand a work item to a named person (首问责任制)",
    description="Complaints, callbacks and improvement actions change owner only to a named "
    "person, with a reason; nothing is ever ownerless. Consultations are handed over in intake.",
    responses=_ok({"item_type": "complaint", "item_id": "CP1A2B3C4D5E6F", "owner": "A007"}),
)
async def handover(body: HandoverIn, request: Request, p: Staff) -> dict[str, Any]:
    by = staff_id(p)
    async with tx(request, p) as (ctx, conn):
        if body.item_type == "callback":
            await callbacks.handover_callback(
                ctx, conn, body.item_id, body.to_owner, body.reason, by
            )
        else:
            complaint_id = body.item_id if body.item_type == "complaint" else body.complaint_id
            if not complaint_id:
                raise InvalidInput(
                    "an improvement is named with its complaint_id", field="complaint_id"
                )
            await handlers.run(
                ctx,
                conn,
                complaint_id,
                lambda s: domain.decide_handover(
                    s,
                    item_type=body.item_type,  # type: ignore[arg-type]
                    item_id=body.item_id,
                    to=body.to_owner,
                    reason=body.reason,
                    by=by,
                ),
            )
    return {"item_type": body.item_type, "item_id": body.item_id, "owner": body.to_owner}


@router.get(
    "/v1/worklist",
    tags=["ownership"],
    summary="Everything a person owns, most urgent first",
    description="Complaints (as first-contact owner or assignee), improvement actions, "
    "callbacks and consultation follow-ups learnt from intake, ordered by due time (overdue "
    "first, no due time last). `owner` defaults to the caller.",
    responses=_ok(
        {
            "owner": "A001",
            "items": [
                {
                    "item_type": "complaint",
                    "item_id": "CP1A2B3C4D5E6F",
                    "relation": "owner",
                    "title": "[delay/high] 查勘员迟到三小时",
                    "due_at": "2026-11-26T03:00:00Z",
                    "overdue": True,
                    "level": 1,
                }
            ],
        }
    ),
)
async def worklist(
    request: Request, p: Staff, owner: Annotated[str | None, Query(pattern=STAFF_ID)] = None
) -> dict[str, Any]:
    who = owner or staff_id(p)
    rt = _rt(request)
    now = rt.clock.now()
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT item_type, item_id, relation, case_id, complaint_id, title, due_at, status,
                      level, link FROM work_items WHERE holder = $1
               ORDER BY due_at ASC NULLS LAST, level DESC, updated_at""",
            who,
        )
    items = []
    for r in rows:
        item = dict(r)
        due: datetime | None = r["due_at"]
        item["overdue"] = due is not None and due < now
        item["due_in_s"] = None if due is None else round((due - now).total_seconds(), 1)
        items.append(item)
    return {"owner": who, "now": now, "items": items}


# -- SLA policies -------------------------------------------------------------------------------


@router.put(
    "/v1/sla-policies/{name}",
    tags=["sla"],
    summary="Save a new version of an SLA policy",
    description="Durations are seconds or days (see docs/complaints.md). Every PUT is a new "
    "version; complaints filed afterwards use it, running clocks keep theirs.",
    responses=_ok({"name": "picc-high", "version": 2}),
)
async def put_policy(
    name: PolicyName, body: SlaPolicy, request: Request, p: Leads
) -> dict[str, Any]:
    async with tx(request, p) as (ctx, conn):
        version = await handlers.publish_policy(ctx, conn, name, body, staff_id(p))
    return {"name": name, "version": version}


@router.get(
    "/v1/sla-policies",
    tags=["sla"],
    summary="Current version of every SLA policy",
    description="The policy used for a complaint is the most specific match (insurer, then "
    "category, then severity), then the highest priority.",
    responses=_ok({"items": [{"name": "default", "version": 1, "policy": {}}]}),
)
async def list_policies(request: Request, _: Staff) -> dict[str, Any]:
    async with _rt(request).pool.acquire() as conn:
        items = await handlers.current_policies(conn)
    return {
        "items": [
            {"name": s.name, "version": s.version, "policy": s.policy.model_dump(mode="json")}
            for s in items
        ]
    }


@router.get(
    "/v1/sla-policies/{name}",
    tags=["sla"],
    summary="An SLA policy with all its versions",
    description="Versions newest first, with who published each and when.",
    responses=_ok({"name": "default", "versions": [{"version": 1, "policy": {}}]}),
)
async def get_policy(name: PolicyName, request: Request, _: Staff) -> dict[str, Any]:
    async with _rt(request).pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT version, body, published_by, published_at FROM sla_policies WHERE name = $1 "
            "ORDER BY version DESC",
            name,
        )
    if not rows:
        raise NotFound(f"no SLA policy {name}")
    return {
        "name": name,
        "versions": [
            {
                "version": r["version"],
                "policy": r["body"],
                "published_by": r["published_by"],
                "published_at": r["published_at"],
            }
            for r in rows
        ],
    }


# -- callbacks ----------------------------------------------------------------------------------


@router.put(
    "/v1/callback-rates/{insurer_code}",
    tags=["callbacks"],
    summary="Set an insurer's callback sampling rate (回访比例)",
    description="0..1; 1 (every case) by default. Sampling is deterministic by case id.",
    responses=_ok({"insurer_code": "PICC", "rate": 0.3}),
)
async def put_rate(
    insurer_code: Annotated[str, Path(pattern=r"^[A-Z0-9_]{2,20}$")],
    body: RateIn,
    request: Request,
    p: Leads,
) -> dict[str, Any]:
    async with tx(request, p) as (ctx, conn):
        await callbacks.set_rate(ctx, conn, insurer_code, body.rate, staff_id(p))
    return {"insurer_code": insurer_code, "rate": body.rate}


@router.get(
    "/v1/callback-rates",
    tags=["callbacks"],
    summary="Callback sampling rates",
    description="Insurers without a row use the default rate.",
    responses=_ok({"default": 1.0, "items": [{"insurer_code": "PICC", "rate": 0.3}]}),
)
async def list_rates(request: Request, _: Staff) -> dict[str, Any]:
    rt = _rt(request)
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch("SELECT insurer_code, rate FROM callback_rates ORDER BY 1")
    return {"default": cfg_of(rt).callback_rate, "items": [dict(r) for r in rows]}


@router.get(
    "/v1/callbacks",
    tags=["callbacks"],
    summary="The callback queue",
    description="Open callbacks (scheduled or retrying) by due time; filter by owner or status.",
    responses=_ok({"items": [{"callback_id": "CB-J1", "case_id": "C1", "status": "scheduled"}]}),
)
async def list_callbacks(
    request: Request,
    _: Staff,
    owner: Annotated[str | None, Query(pattern=STAFF_ID)] = None,
    status: Annotated[str | None, Query(pattern=r"^(scheduled|retrying|completed|failed)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    async with _rt(request).pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT * FROM callbacks WHERE ($1::text IS NULL OR owner = $1)
                 AND (($2::text IS NULL AND status IN ('scheduled', 'retrying')) OR status = $2)
               ORDER BY due_at LIMIT $3""",
            owner,
            status,
            limit,
        )
    return {"items": [{k: v for k, v in dict(r).items() if k != "version"} for r in rows]}


@router.get(
    "/v1/callbacks/{callback_id}",
    tags=["callbacks"],
    summary="One callback",
    description="Status, tries, answers and the complaint it opened, if any.",
    responses=_ok({"callback_id": "CB-J1", "status": "completed", "satisfaction": 4}),
)
async def get_callback(
    callback_id: Annotated[str, Path(pattern=CASE_ID)], request: Request, _: Staff
) -> dict[str, Any]:
    async with _rt(request).pool.acquire() as conn:
        return await callbacks.get_callback(conn, callback_id)


@router.post(
    "/v1/callbacks/{callback_id}/attempts",
    tags=["callbacks"],
    summary="Record a callback try",
    description="Not reached: due again later, CallbackFailed after the last allowed try. "
    "Reached: CallbackCompleted with satisfaction 1-5, reasons and the surveyor's rating; "
    "`open_complaint` opens a linked complaint in the same step (satisfaction 1-3).",
    responses=_ok({"callback_id": "CB-J1", "status": "completed", "complaint_id": "CP1A2B"}),
)
async def attempt(
    callback_id: Annotated[str, Path(pattern=CASE_ID)], body: AttemptIn, request: Request, p: Staff
) -> dict[str, Any]:
    cfg = cfg_of(_rt(request))
    async with tx(request, p) as (ctx, conn):
        if not body.reached:
            if not body.reason:
                raise InvalidInput("say why the customer was not reached", field="reason")
            return await callbacks.record_unreachable(
                ctx, conn, callback_id, body.reason, staff_id(p), cfg
            )
        if body.satisfaction is None:
            raise InvalidInput("a reached customer gives a satisfaction 1-5", field="satisfaction")
        return await callbacks.record_completed(
            ctx,
            conn,
            callback_id,
            body.satisfaction,
            body.surveyor_rating,
            body.reasons,
            body.comment,
            staff_id(p),
            body.open_complaint.model_dump() if body.open_complaint else None,
        )


def validation_message(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]


__all__ = ["Conflict", "router"]
