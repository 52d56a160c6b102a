"""The job's lifecycle as pure decide/evolve: given events, when a command, then events.

Status values: queued -> assigned -> acknowledged -> en_route -> arrived -> survey_completed
-> closed (and cancelled). Assignment decisions come from `policy.choose`; this module checks
whether a step is allowed and what it records. No IO, no clock: `now` is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from claimdesk.errors import Conflict, Forbidden, InvalidInput
from claimdesk.events.base import Event
from claimdesk.events.dispatch import (
    AssignmentTimedOut,
    CaseClosed,
    JobAcknowledged,
    JobCancelled,
    JobDeclined,
    JobDetailsUpdated,
    JobOpened,
    JobQueuedForDispatcher,
    SurveyCompleted,
    SurveyorArrived,
    SurveyorAssigned,
    SurveyorEnRoute,
    SurveyorReassigned,
)

OPEN_STATUSES = ("assigned", "acknowledged", "en_route", "arrived")
STEPS: dict[str, tuple[str, ...]] = {
    # status -> steps allowed from it (names as in the URL)
    "queued": ("assign", "cancel"),
    "assigned": ("ack", "decline", "assign", "cancel"),
    "acknowledged": ("en-route", "assign", "cancel"),
    "en_route": ("arrived", "cancel"),
    "arrived": ("complete", "cancel"),
    "survey_completed": ("close",),
    "closed": (),
    "cancelled": (),
}


@dataclass(frozen=True)
class JobState:
    job_id: str = ""
    case_id: str = ""
    status: str = "new"
    surveyor_id: str | None = None
    attempt: int = 0
    tried: tuple[str, ...] = ()
    ack_due_at: datetime | None = None
    insurer_code: str = ""
    priority: str = "normal"
    moved_from: dict[str, str] = field(default_factory=dict)  # surveyor -> why it moved
    version: int = 0


def evolve(state: JobState, event: Event) -> JobState:
    s = replace(state, version=state.version + 1)
    match event:
        case JobOpened():
            return replace(
                s,
                job_id=event.job_id,
                case_id=event.case_id,
                status="queued",
                insurer_code=event.insurer_code,
                priority=event.priority,
            )
        case SurveyorAssigned():
            return replace(
                s,
                status="assigned",
                surveyor_id=event.surveyor_id,
                attempt=event.attempt,
                tried=(*s.tried, event.surveyor_id),
                ack_due_at=event.ack_due_at,
            )
        case SurveyorReassigned():
            moved = dict(s.moved_from)
            if event.from_surveyor_id:
                moved[event.from_surveyor_id] = event.reason
            return replace(
                s,
                status="assigned",
                surveyor_id=event.to_surveyor_id,
                attempt=event.attempt,
                tried=(*s.tried, event.to_surveyor_id),
                ack_due_at=event.ack_due_at,
                moved_from=moved,
            )
        case JobQueuedForDispatcher():
            moved = dict(s.moved_from)
            if s.surveyor_id:
                moved[s.surveyor_id] = event.reason
            return replace(s, status="queued", surveyor_id=None, ack_due_at=None, moved_from=moved)
        case JobAcknowledged():
            return replace(s, status="acknowledged", ack_due_at=None)
        case JobDeclined() | AssignmentTimedOut():
            return s  # always followed by a reassignment or a queueing in the same append
        case SurveyorEnRoute():
            return replace(s, status="en_route")
        case SurveyorArrived():
            return replace(s, status="arrived")
        case SurveyCompleted():
            return replace(s, status="survey_completed")
        case CaseClosed():
            return replace(s, status="closed")
        case JobCancelled():
            return replace(s, status="cancelled", ack_due_at=None)
        case JobDetailsUpdated():
            return s
    return s


def replay(events: list[Event]) -> JobState:
    state = JobState()
    for e in events:
        state = evolve(state, e)
    return state


# -- commands ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """A field step by a surveyor (or a dispatcher on their behalf)."""

    name: str  # ack, en-route, arrived, complete, close
    actor_surveyor: str | None  # the surveyor id from the token; None for staff
    actor: str
    loss_estimate: float | None = None
    photo_count: int = 0
    notes: str = ""


def allowed(state: JobState) -> list[str]:
    return list(STEPS.get(state.status, ()))


def _require(state: JobState, step: str) -> None:
    if state.status == "new":
        raise Conflict("job does not exist yet")
    if step not in STEPS.get(state.status, ()):
        ok = allowed(state)
        raise Conflict(
            f"cannot {step} a job that is {state.status}; allowed now: "
            + (", ".join(ok) if ok else "nothing (the job is finished)"),
            status=state.status,
            allowed=ok,
        )


def _check_surveyor(state: JobState, step: Step) -> str:
    """The surveyor the step is for; a surveyor may only act on a job assigned to them."""
    if step.actor_surveyor is None:
        if state.surveyor_id is None:
            raise Conflict("the job has no surveyor", status=state.status, allowed=allowed(state))
        return state.surveyor_id
    if state.surveyor_id != step.actor_surveyor:
        if step.actor_surveyor in state.tried or step.actor_surveyor in state.moved_from:
            why = state.moved_from.get(step.actor_surveyor, "reassigned")
            raise Conflict(
                "the job moved: it is no longer assigned to you "
                f"(now {state.surveyor_id or 'with the dispatcher'}; {why})",
                moved=True,
                now_assigned_to=state.surveyor_id,
                reason=why,
            )
        raise Forbidden("this job is not assigned to you")
    return step.actor_surveyor


def decide_step(state: JobState, step: Step, now: datetime) -> list[Event]:
    """ack, en-route, arrived, complete, close."""
    if state.status != "new" and step.actor_surveyor is not None:
        surveyor = _check_surveyor(state, step)
    else:
        surveyor = state.surveyor_id or ""
    _require(state, step.name)
    common = {"job_id": state.job_id, "case_id": state.case_id, "surveyor_id": surveyor}
    if step.name == "ack":
        return [JobAcknowledged(**common)]
    if step.name == "en-route":
        return [SurveyorEnRoute(**common)]
    if step.name == "arrived":
        return [SurveyorArrived(**common)]
    if step.name == "complete":
        if step.loss_estimate is not None and step.loss_estimate < 0:
            raise InvalidInput("loss_estimate must not be negative")
        if step.photo_count < 0:
            raise InvalidInput("photo_count must not be negative")
        return [
            SurveyCompleted(
                **common,
                loss_estimate=step.loss_estimate,
                photo_count=step.photo_count,
                notes=step.notes,
            )
        ]
    if step.name == "close":
        return [CaseClosed(job_id=state.job_id, case_id=state.case_id, closed_by=step.actor)]
    raise InvalidInput(f"unknown step {step.name}")


def decide_decline(state: JobState, surveyor: str | None, reason: str) -> list[Event]:
    if not reason.strip():
        raise InvalidInput("a decline needs a reason")
    if surveyor is not None:
        _check_surveyor(state, Step("decline", surveyor, ""))
    _require(state, "decline")
    assert state.surveyor_id is not None
    return [
        JobDeclined(
            job_id=state.job_id,
            case_id=state.case_id,
            surveyor_id=state.surveyor_id,
            reason=reason.strip(),
        )
    ]


def decide_timeout(state: JobState, attempt: int, now: datetime) -> list[Event]:
    """The ack deadline of `attempt` passed: time it out unless something moved on since."""
    if state.status != "assigned" or state.attempt != attempt or state.surveyor_id is None:
        return []
    if state.ack_due_at is not None and now < state.ack_due_at:
        return []
    return [
        AssignmentTimedOut(
            job_id=state.job_id,
            case_id=state.case_id,
            surveyor_id=state.surveyor_id,
            attempt=attempt,
            deadline=state.ack_due_at or now,
        )
    ]


def decide_cancel(state: JobState, reason: str) -> list[Event]:
    if state.status in ("new", "closed", "cancelled", "survey_completed"):
        return []
    return [
        JobCancelled(
            job_id=state.job_id,
            case_id=state.case_id,
            surveyor_id=state.surveyor_id,
            reason=reason,
        )
    ]
