"""The complaint aggregate: pure decide and evolve, with `now` passed in.

`evolve(state, event)` folds one event into the state; each `decide_*` function checks a
command against the state and returns the events it causes (raising a domain error when the
command is not allowed). `timer_plan(before, after, events)` says which stored timers the new
events need, so handlers schedule exactly what the facts imply.

Lifecycle: received -> (triage) closed (invalid, kept) | assigned -> waiting_on_customer <->
assigned -> resolved -> closed (satisfied) | reopened -> resolved ...
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from claimdesk.errors import Conflict, InvalidInput, NotFound
from claimdesk.events.base import Event
from claimdesk.events.complaints import (
    ClockDue,
    ComplaintAssigned,
    ComplaintClockBreached,
    ComplaintClockPaused,
    ComplaintClockResumed,
    ComplaintClockStarted,
    ComplaintClockStopped,
    ComplaintClosed,
    ComplaintDeadlineExtended,
    ComplaintDeadlineWarned,
    ComplaintEscalated,
    ComplaintReceived,
    ComplaintReopened,
    ComplaintResolved,
    ComplaintTriaged,
    CustomerFeedbackRecorded,
    ImprovementCompleted,
    ImprovementRecorded,
    WorkItemHandedOver,
)

from complaints import clock as ck
from complaints.sla import ResolvedClock, StoredPolicy, resolve_clocks

LADDER: tuple[Literal["team_lead", "supervisor", "manager"], ...] = (
    "team_lead",
    "supervisor",
    "manager",
)
OPEN_STATUSES = ("received", "assigned", "waiting_on_customer", "reopened")
EPSILON_S = 0.001


def stream_id(complaint_id: str) -> str:
    return f"complaint-{complaint_id}"


@dataclass
class Clock:
    name: str
    state: ck.ClockState
    policy_name: str
    policy_version: int
    started_at: datetime
    business_hours: bool
    max_extended_s: float | None
    re_escalate_after_s: float | None
    generation: int = 1
    status: Literal["running", "paused", "stopped"] = "running"
    warned: bool = False
    breached: bool = False
    met: bool | None = None
    extended: bool = False
    extension_reason: str | None = None

    def due_at(self) -> datetime | None:
        return ck.due_at(self.state)

    def warn_at(self) -> datetime | None:
        return None if self.warned else ck.warn_at(self.state)


@dataclass
class Improvement:
    improvement_id: str
    action: str
    owner: str
    due_at: datetime | None
    done: bool = False
    note: str = ""


@dataclass
class Complaint:
    complaint_id: str = ""
    version: int = 0
    status: str = "new"
    case_id: str | None = None
    category: str = ""
    severity: str = ""
    channel: str = ""
    caller_name: str = ""
    caller_phone: str = ""
    matter: str = ""
    surveyor_id: str | None = None
    insurer_code: str | None = None
    owner: str = ""
    assignee: str | None = None
    promised_answer_at: datetime | None = None
    callback_id: str | None = None
    valid: bool | None = None
    triage_reason: str | None = None
    level: int = 0
    escalated_to: str | None = None
    outcome: str | None = None
    feedback_to_customer: str | None = None
    satisfied: bool | None = None
    reopened: int = 0
    close_reason: str | None = None
    wait_reason: str | None = None
    clocks: dict[str, Clock] = field(default_factory=dict)
    improvements: dict[str, Improvement] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return self.version > 0

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


# -- evolve -------------------------------------------------------------------------------------


def evolve(s: Complaint, e: Event, at: datetime) -> None:
    """Fold one event into the state (in place; the state is rebuilt from its stream)."""
    s.version += 1
    match e:
        case ComplaintReceived():
            s.complaint_id = e.complaint_id
            s.status = "received"
            s.case_id, s.category, s.severity, s.channel = (
                e.case_id,
                e.category,
                e.severity,
                e.channel,
            )
            s.caller_name, s.caller_phone, s.matter = e.caller_name, e.caller_phone, e.matter
            s.surveyor_id, s.insurer_code, s.owner = e.surveyor_id, e.insurer_code, e.owner
            s.promised_answer_at, s.callback_id = e.promised_answer_at, e.callback_id
        case ComplaintClockStarted():
            previous = s.clocks.get(e.clock)
            cal = ck.Calendar.from_dict(e.calendar) if e.calendar else None
            s.clocks[e.clock] = Clock(
                name=e.clock,
                state=ck.start_clock(e.started_at, e.budget_s, e.warn_before_s, cal),
                policy_name=e.policy_name,
                policy_version=e.policy_version,
                started_at=e.started_at,
                business_hours=e.business_hours,
                max_extended_s=e.max_extended_s,
                re_escalate_after_s=e.re_escalate_after_s,
                generation=(previous.generation + 1) if previous else 1,
            )
        case ComplaintClockStopped():
            c = s.clocks[e.clock]
            c.state = ck.pause(c.state, at)
            c.status, c.met = "stopped", e.met
        case ComplaintClockPaused():
            s.status, s.wait_reason = "waiting_on_customer", e.reason
            for name in e.clocks:
                c = s.clocks[name]
                c.state, c.status = ck.pause(c.state, at), "paused"
        case ComplaintClockResumed():
            s.status = "reopened" if s.reopened else ("assigned" if s.assignee else "received")
            s.wait_reason = None
            for due in e.clocks:
                c = s.clocks[due.clock]
                c.state, c.status = ck.resume(c.state, at), "running"
                c.generation += 1
        case ComplaintDeadlineWarned():
            s.clocks[e.clock].warned = True
        case ComplaintClockBreached():
            s.clocks[e.clock].breached = True
        case ComplaintEscalated():
            s.level, s.escalated_to = e.level, e.escalated_to
        case ComplaintDeadlineExtended():
            c = s.clocks[e.clock]
            c.state = ck.extend(c.state, e.budget_s)
            c.extended, c.extension_reason, c.warned = True, e.reason, False
            c.generation += 1
        case ComplaintTriaged():
            s.valid, s.triage_reason = e.valid, e.reason
        case ComplaintAssigned():
            s.assignee = e.assignee
            if s.status == "received":
                s.status = "assigned"
        case ComplaintResolved():
            s.status, s.outcome, s.feedback_to_customer = (
                "resolved",
                e.outcome,
                e.feedback_to_customer,
            )
        case CustomerFeedbackRecorded():
            s.satisfied = e.satisfied
        case ComplaintReopened():
            s.status, s.reopened, s.satisfied = "reopened", s.reopened + 1, None
        case ComplaintClosed():
            s.status, s.close_reason = "closed", e.reason
        case ImprovementRecorded():
            s.improvements[e.improvement_id] = Improvement(
                e.improvement_id, e.action, e.owner, e.due_at
            )
        case ImprovementCompleted():
            imp = s.improvements[e.improvement_id]
            imp.done, imp.note = True, e.note
        case WorkItemHandedOver():
            if e.item_type == "complaint":
                s.owner = e.to_owner
            elif e.item_type == "improvement":
                s.improvements[e.item_id].owner = e.to_owner
        case _:
            pass


def fold(events: list[tuple[Event, datetime]]) -> Complaint:
    s = Complaint()
    for e, at in events:
        evolve(s, e, at)
    return s


# -- decide -------------------------------------------------------------------------------------


def _require(s: Complaint) -> None:
    if not s.exists:
        raise NotFound("no such complaint")


def _require_open(s: Complaint, doing: str) -> None:
    if not s.is_open:
        raise Conflict(f"cannot {doing}: the complaint is {s.status}", status=s.status)


def start_events(
    complaint_id: str,
    case_id: str | None,
    resolved: ResolvedClock,
    policy: StoredPolicy,
    now: datetime,
) -> ComplaintClockStarted:
    cal = ck.Calendar.from_dict(resolved.calendar) if resolved.calendar else None
    st = ck.start_clock(now, resolved.budget_s, resolved.warn_before_s, cal)
    due = ck.due_at(st)
    assert due is not None
    return ComplaintClockStarted(
        complaint_id=complaint_id,
        case_id=case_id,
        clock=resolved.name,
        policy_name=policy.name,
        policy_version=policy.version,
        budget_s=resolved.budget_s,
        warn_before_s=resolved.warn_before_s,
        business_hours=resolved.business_hours,
        calendar=resolved.calendar,
        started_at=now,
        due_at=due,
        warn_at=ck.warn_at(st),
        re_escalate_after_s=resolved.re_escalate_after_s,
        max_extended_s=resolved.max_extended_s,
    )


def decide_receive(received: ComplaintReceived, policy: StoredPolicy, now: datetime) -> list[Event]:
    """A complaint is taken: its three clocks start from the chosen policy version."""
    clocks = resolve_clocks(policy.policy)
    starts = [
        start_events(received.complaint_id, received.case_id, clocks[name], policy, now)
        for name in ("first_response", "resolution", "regulatory")
    ]
    regulatory_due = starts[2].due_at
    promised = received.promised_answer_at or starts[1].due_at
    if promised <= now:
        raise InvalidInput("promised_answer_at must be in the future", field="promised_answer_at")
    if promised > regulatory_due:
        raise InvalidInput(
            f"promised_answer_at is after the regulatory limit {regulatory_due.isoformat()}",
            field="promised_answer_at",
        )
    return [received.model_copy(update={"promised_answer_at": promised}), *starts]


def _stop(s: Complaint, names: list[str], now: datetime) -> list[Event]:
    out: list[Event] = []
    for name in names:
        c = s.clocks.get(name)
        if c is None or c.status == "stopped":
            continue
        out.append(
            ComplaintClockStopped(
                complaint_id=s.complaint_id,
                case_id=s.case_id,
                clock=name,
                met=not c.breached and ck.remaining_at(c.state, now) > -EPSILON_S,
                consumed_s=round(ck.consumed_at(c.state, now), 3),
            )
        )
    return out


def decide_triage(
    s: Complaint, *, valid: bool, reason: str, assignee: str | None, by: str, now: datetime
) -> list[Event]:
    _require(s)
    if s.valid is not None:
        raise Conflict("the complaint was already triaged", valid=s.valid)
    _require_open(s, "triage")
    base = {"complaint_id": s.complaint_id, "case_id": s.case_id}
    out: list[Event] = [ComplaintTriaged(**base, valid=valid, reason=reason, triaged_by=by)]
    out += _stop(s, ["first_response"], now)
    if valid:
        if not assignee:
            raise InvalidInput("a valid complaint needs a named assignee", field="assignee")
        out.append(ComplaintAssigned(**base, assignee=assignee, assigned_by=by))
    else:
        out += _stop(s, ["resolution", "regulatory"], now)
        out.append(ComplaintClosed(**base, reason=f"invalid complaint: {reason}"))
    return out


def decide_reassign(s: Complaint, assignee: str, reason: str, by: str) -> list[Event]:
    """A valid, open complaint gets another named responsible person."""
    _require(s)
    _require_open(s, "reassign")
    if not s.valid:
        raise Conflict("only a complaint triaged as valid has a responsible person")
    if assignee == s.assignee:
        raise InvalidInput(f"{assignee} is already responsible", field="assignee")
    return [
        ComplaintAssigned(
            complaint_id=s.complaint_id,
            case_id=s.case_id,
            assignee=assignee,
            assigned_by=by,
            reason=reason,
        )
    ]


def decide_pause(s: Complaint, reason: str, by: str) -> list[Event]:
    _require(s)
    _require_open(s, "wait on the customer")
    if s.status == "waiting_on_customer":
        raise Conflict("the complaint already waits on the customer")
    running = [n for n, c in s.clocks.items() if c.status == "running"]
    return [
        ComplaintClockPaused(
            complaint_id=s.complaint_id,
            case_id=s.case_id,
            clocks=running,
            reason=reason,
            paused_by=by,
        )
    ]


def decide_resume(s: Complaint, note: str, by: str, now: datetime) -> list[Event]:
    _require(s)
    if s.status != "waiting_on_customer":
        raise Conflict("the complaint is not waiting on the customer", status=s.status)
    dues: list[ClockDue] = []
    for name, c in s.clocks.items():
        if c.status != "paused":
            continue
        st = ck.resume(c.state, now)
        due = ck.due_at(st)
        assert due is not None
        dues.append(ClockDue(clock=name, due_at=due, warn_at=None if c.warned else ck.warn_at(st)))
    return [
        ComplaintClockResumed(
            complaint_id=s.complaint_id, case_id=s.case_id, clocks=dues, note=note, resumed_by=by
        )
    ]


def decide_extend(
    s: Complaint,
    reason: str,
    extend_to_s: float | None,
    by: str,
    now: datetime,
) -> list[Event]:
    _require(s)
    _require_open(s, "extend the regulatory deadline")
    c = s.clocks.get("regulatory")
    if c is None or c.status == "stopped":
        raise Conflict("the regulatory clock is not running")
    if c.extended:
        raise Conflict("the regulatory deadline was already extended", reason=c.extension_reason)
    if c.breached:
        raise Conflict("the regulatory deadline has passed; it can no longer be extended")
    max_extended_s = c.max_extended_s or 30 * 86400.0
    target = extend_to_s if extend_to_s is not None else max_extended_s
    if target <= c.state.budget_s:
        raise InvalidInput("the extension must be longer than the current limit", field="extend_to")
    if target > max_extended_s + EPSILON_S:
        raise InvalidInput(
            f"the regulatory limit can be extended to at most {max_extended_s / 86400:g} days",
            field="extend_to",
        )
    previous = c.due_at() or now
    st = ck.extend(c.state, target)
    due = ck.due_at(st)
    return [
        ComplaintDeadlineExtended(
            complaint_id=s.complaint_id,
            case_id=s.case_id,
            clock="regulatory",
            budget_s=target,
            previous_due_at=previous,
            due_at=due or previous,
            warn_at=ck.warn_at(st),
            reason=reason,
            extended_by=by,
        )
    ]


def decide_resolve(
    s: Complaint, outcome: str, feedback: str, by: str, now: datetime
) -> list[Event]:
    _require(s)
    _require_open(s, "resolve")
    if not s.valid:
        raise Conflict("only a complaint triaged as valid can be resolved")
    base = {"complaint_id": s.complaint_id, "case_id": s.case_id}
    return [
        ComplaintResolved(**base, outcome=outcome, feedback_to_customer=feedback, resolved_by=by),
        *_stop(s, list(s.clocks), now),
    ]


def decide_feedback(
    s: Complaint,
    *,
    satisfied: bool,
    comment: str,
    reopen: bool,
    by: str,
    policy: StoredPolicy,
    now: datetime,
) -> list[Event]:
    """The customer's reaction: satisfied closes; not satisfied reopens (a fresh resolution
    clock from the policy) unless told not to, which closes it with the reason."""
    _require(s)
    if s.status != "resolved":
        raise Conflict("feedback is recorded after the resolution", status=s.status)
    base = {"complaint_id": s.complaint_id, "case_id": s.case_id}
    out: list[Event] = [
        CustomerFeedbackRecorded(**base, satisfied=satisfied, comment=comment, recorded_by=by)
    ]
    if satisfied:
        out.append(ComplaintClosed(**base, reason="resolved; customer satisfied"))
    elif reopen:
        out.append(
            ComplaintReopened(**base, reason=comment or "customer not satisfied", reopened_by=by)
        )
        out.append(
            start_events(
                s.complaint_id, s.case_id, resolve_clocks(policy.policy)["resolution"], policy, now
            )
        )
    else:
        out.append(ComplaintClosed(**base, reason=f"resolved; customer not satisfied: {comment}"))
    return out


def decide_improvement(
    s: Complaint,
    *,
    improvement_id: str,
    action: str,
    owner: str,
    due: datetime | None,
    now: datetime,
) -> list[Event]:
    _require(s)
    if s.valid is False:
        raise Conflict("an invalid complaint takes no improvement actions")
    if due is not None and due <= now:
        raise InvalidInput("due_at must be in the future", field="due_at")
    return [
        ImprovementRecorded(
            complaint_id=s.complaint_id,
            case_id=s.case_id,
            improvement_id=improvement_id,
            action=action,
            owner=owner,
            due_at=due,
        )
    ]


def decide_complete_improvement(
    s: Complaint, improvement_id: str, note: str, by: str
) -> list[Event]:
    _require(s)
    imp = s.improvements.get(improvement_id)
    if imp is None:
        raise InvalidInput(f"no improvement {improvement_id} on this complaint")
    if imp.done:
        raise Conflict("the improvement action is already done")
    return [
        ImprovementCompleted(
            complaint_id=s.complaint_id,
            case_id=s.case_id,
            improvement_id=improvement_id,
            note=note,
            completed_by=by,
        )
    ]


def decide_handover(
    s: Complaint,
    *,
    item_type: Literal["complaint", "improvement"],
    item_id: str,
    to: str,
    reason: str,
    by: str,
) -> list[Event]:
    _require(s)
    if item_type == "complaint":
        if s.status == "closed":
            raise Conflict("a closed complaint is no longer handed over")
        current = s.owner
    else:
        imp = s.improvements.get(item_id)
        if imp is None:
            raise InvalidInput(f"no improvement {item_id} on this complaint")
        if imp.done:
            raise Conflict("the improvement action is already done")
        current = imp.owner
    if to == current:
        raise InvalidInput(f"{to} already owns it", field="to_owner")
    return [
        WorkItemHandedOver(
            item_type=item_type,
            item_id=item_id,
            complaint_id=s.complaint_id,
            case_id=s.case_id,
            from_owner=current,
            to_owner=to,
            reason=reason,
            handed_over_by=by,
        )
    ]


# -- timers -------------------------------------------------------------------------------------

Phase = Literal["warn", "breach", "reescalate"]


def decide_timer(
    s: Complaint, *, clock_name: str, generation: int, phase: Phase, level: int, now: datetime
) -> list[Event]:
    """What a fired timer means now: nothing when the facts moved on (stale timer)."""
    c = s.clocks.get(clock_name)
    if not s.exists or c is None:
        return []
    base = {"complaint_id": s.complaint_id, "case_id": s.case_id}
    if phase == "reescalate":
        if (
            not s.is_open
            or s.status == "resolved"
            or not c.breached
            or c.status == "stopped"
            or s.level != level
            or s.level >= len(LADDER)
        ):
            return []
        last_due = c.due_at() or c.started_at
        return [_escalate(s, clock_name, last_due, "still_breached")]
    if c.generation != generation or c.status != "running":
        return []
    due = c.due_at()
    assert due is not None
    if phase == "warn":
        if c.warned or c.breached:
            return []
        notified = [p for p in (s.owner, s.assignee) if p]
        return [ComplaintDeadlineWarned(**base, clock=clock_name, due_at=due, notified=notified)]
    if c.breached or ck.remaining_at(c.state, now) > EPSILON_S:
        return []
    out: list[Event] = [ComplaintClockBreached(**base, clock=clock_name, due_at=due)]
    if s.level < len(LADDER):
        out.append(_escalate(s, clock_name, due, "breach"))
    return out


def _escalate(
    s: Complaint, clock_name: str, due: datetime, reason: Literal["breach", "still_breached"]
) -> ComplaintEscalated:
    return ComplaintEscalated(
        complaint_id=s.complaint_id,
        case_id=s.case_id,
        clock=clock_name,
        level=s.level + 1,
        escalated_to=LADDER[s.level],
        due_at=due,
        reason=reason,
    )


@dataclass(frozen=True)
class TimerOp:
    op: Literal["schedule", "cancel"]
    timer_id: str
    due_at: datetime | None = None
    payload: dict[str, Any] = field(default_factory=dict)


def timer_id(complaint_id: str, clock_name: str, generation: int, phase: str) -> str:
    return f"cmp:{complaint_id}:{clock_name}:{generation}:{phase}"


def timer_plan(
    before: Complaint, after: Complaint, events: list[Event], now: datetime
) -> list[TimerOp]:
    """The stored timers these new events need: schedule warn/breach for every (re)started
    clock run, cancel those of runs that paused or stopped, and a re-escalation after breaches."""
    ops: list[TimerOp] = []
    cid = after.complaint_id

    def arm(name: str) -> None:
        c = after.clocks[name]
        if c.status != "running":
            return
        payload = {"complaint_id": cid, "clock": name, "generation": c.generation}
        warn = c.warn_at()
        if warn is not None and not c.breached:
            ops.append(
                TimerOp(
                    "schedule",
                    timer_id(cid, name, c.generation, "warn"),
                    warn,
                    {**payload, "phase": "warn"},
                )
            )
        due = c.due_at()
        if due is not None and not c.breached:
            ops.append(
                TimerOp(
                    "schedule",
                    timer_id(cid, name, c.generation, "breach"),
                    due,
                    {**payload, "phase": "breach"},
                )
            )

    def disarm(name: str, generation: int) -> None:
        for phase in ("warn", "breach"):
            ops.append(TimerOp("cancel", timer_id(cid, name, generation, phase)))

    for e in events:
        match e:
            case ComplaintClockStarted():
                prior = before.clocks.get(e.clock)
                if prior is not None:
                    disarm(e.clock, prior.generation)
                arm(e.clock)
            case ComplaintClockResumed():
                for due in e.clocks:
                    arm(due.clock)
            case ComplaintDeadlineExtended():
                disarm(e.clock, after.clocks[e.clock].generation - 1)
                arm(e.clock)
            case ComplaintClockPaused():
                for name in e.clocks:
                    disarm(name, after.clocks[name].generation)
            case ComplaintClockStopped():
                disarm(e.clock, after.clocks[e.clock].generation)
            case ComplaintEscalated():
                c = after.clocks[e.clock]
                if c.re_escalate_after_s and e.level < len(LADDER):
                    ops.append(
                        TimerOp(
                            "schedule",
                            timer_id(cid, e.clock, c.generation, f"reescalate-{e.level}"),
                            now + timedelta(seconds=c.re_escalate_after_s),
                            {
                                "complaint_id": cid,
                                "clock": e.clock,
                                "generation": c.generation,
                                "phase": "reescalate",
                                "level": e.level,
                            },
                        )
                    )
            case _:
                pass
    return ops


def apply_all(s: Complaint, events: list[Event], now: datetime) -> Complaint:
    after = copy.deepcopy(s)
    for e in events:
        evolve(after, e, now)
    return after
