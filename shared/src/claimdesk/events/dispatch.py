"""Dispatch: surveyors, assignment with its reasons, push, receipt and the job's lifecycle."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from claimdesk.events.base import Event


class DispatchEvent(Event):
    context = "dispatch"


class SurveyorEvent(DispatchEvent):
    """Events of a surveyor's own stream: keyed by the surveyor, not a case."""

    surveyor_id: str

    def partition_key(self) -> str | None:
        return self.surveyor_id


class SurveyorRegistered(SurveyorEvent):
    """A surveyor (公估师/查勘员) joined a survey team (查勘组)."""

    event_type = "SurveyorRegistered"
    name: str
    phone: str
    team: str
    skills: list[str]
    regions: list[str] = []
    base_lat: float
    base_lon: float
    capacity: int = 3
    shifts: list[dict[str, Any]] = []


class SurveyorDetailsChanged(SurveyorEvent):
    """A surveyor's details were edited; `changes` holds the new values."""

    event_type = "SurveyorDetailsChanged"
    changes: dict[str, Any]


class SurveyorRetired(SurveyorEvent):
    """A surveyor left the roster and gets no more jobs."""

    event_type = "SurveyorRetired"
    reason: str


class SurveyorTokenRotated(SurveyorEvent):
    """A surveyor was given a new token; tokens of earlier generations no longer work (a
    lost phone, a handed-on device). The token itself is never in the event."""

    event_type = "SurveyorTokenRotated"
    generation: int
    reason: str


class SurveyorAvailabilityChanged(SurveyorEvent):
    """A surveyor went on or off shift, or became (un)available."""

    event_type = "SurveyorAvailabilityChanged"
    available: bool
    reason: str = ""


class SurveyorLocationUpdated(SurveyorEvent):
    """The surveyor's device reported a position."""

    event_type = "SurveyorLocationUpdated"
    lat: float
    lon: float


class Candidate(BaseModel):
    model_config = ConfigDict(frozen=True)
    surveyor_id: str
    score: float
    factors: dict[str, float] = {}
    excluded: str | None = None


class SurveyorAssigned(DispatchEvent):
    """A surveyor was chosen for a case's job, with every candidate, score and the reason."""

    event_type = "SurveyorAssigned"
    job_id: str
    case_id: str
    surveyor_id: str
    insurer_code: str | None = None
    attempt: int = 1
    policy_version: str
    candidates: list[Candidate] = []
    reason: str
    assigned_by: str = "policy"
    ack_due_at: datetime


class JobQueuedForDispatcher(DispatchEvent):
    """No surveyor could be assigned automatically; a human dispatcher must act."""

    event_type = "JobQueuedForDispatcher"
    job_id: str
    case_id: str
    reason: str
    call_the_team: bool = False
    kind: Literal["no_candidate", "timed_out", "declined", "manual"] = "no_candidate"
    attempt: int = 0
    candidates: list[Candidate] = []
    policy_version: str = ""


class JobNotified(DispatchEvent):
    """A job was pushed to its surveyor through one channel, with the outcome."""

    event_type = "JobNotified"
    job_id: str
    case_id: str
    surveyor_id: str
    channel: Literal["stream", "webhook", "sms"]
    outcome: Literal["delivered", "failed", "queued"]
    detail: str = ""
    recipient: Literal["surveyor", "team", "customer"] = "surveyor"
    attempt: int = 1


class JobAcknowledged(DispatchEvent):
    """The surveyor confirmed receipt of the job (the dispatch confirmation call, in software)."""

    event_type = "JobAcknowledged"
    job_id: str
    case_id: str
    surveyor_id: str


class JobDeclined(DispatchEvent):
    """The surveyor declined the job, with a reason."""

    event_type = "JobDeclined"
    job_id: str
    case_id: str
    surveyor_id: str
    reason: str


class AssignmentTimedOut(DispatchEvent):
    """No acknowledgement came before the deadline."""

    event_type = "AssignmentTimedOut"
    job_id: str
    case_id: str
    surveyor_id: str
    attempt: int
    deadline: datetime


class SurveyorReassigned(DispatchEvent):
    """The job moved from one surveyor to another, with the reason."""

    event_type = "SurveyorReassigned"
    job_id: str
    case_id: str
    from_surveyor_id: str | None
    to_surveyor_id: str
    attempt: int
    reason: str
    policy_version: str = ""
    candidates: list[Candidate] = []
    assigned_by: str = "policy"
    ack_due_at: datetime


class SurveyorEnRoute(DispatchEvent):
    """The surveyor set off to the scene or repair shop."""

    event_type = "SurveyorEnRoute"
    job_id: str
    case_id: str
    surveyor_id: str


class SurveyorArrived(DispatchEvent):
    """The surveyor arrived at the scene or repair shop."""

    event_type = "SurveyorArrived"
    job_id: str
    case_id: str
    surveyor_id: str


class SurveyCompleted(DispatchEvent):
    """The survey and loss assessment (查勘定损) was done."""

    event_type = "SurveyCompleted"
    job_id: str
    case_id: str
    surveyor_id: str
    loss_estimate: float | None = None
    photo_count: int = 0
    notes: str = ""


class CaseClosed(DispatchEvent):
    """The case's field work is finished and the job closed."""

    event_type = "CaseClosed"
    job_id: str
    case_id: str
    closed_by: str


# -- added with the dispatch service (issue 5); additive only -------------------------------


class SurveyorShiftStarted(SurveyorEvent):
    """The surveyor started a shift (上班) and can take jobs."""

    event_type = "SurveyorShiftStarted"


class SurveyorShiftEnded(SurveyorEvent):
    """The surveyor ended a shift (下班) and gets no new jobs until the next one."""

    event_type = "SurveyorShiftEnded"


class JobOpened(DispatchEvent):
    """A survey job was opened for a reported case: what the surveyor needs to go there."""

    event_type = "JobOpened"
    job_id: str
    case_id: str
    insurer_code: str
    plate: str | None = None
    loss_type: str
    loss_address: str
    loss_lat: float | None = None
    loss_lon: float | None = None
    region: str | None = None
    priority: str = "normal"
    required_skills: list[str] = []
    contact_name: str | None = None
    contact_phone: str | None = None
    description: str = ""
    survey_place: str = "scene"
    repair_shop: str | None = None


class JobDetailsUpdated(DispatchEvent):
    """The case behind a job was corrected at intake; `changes` holds the new values."""

    event_type = "JobDetailsUpdated"
    job_id: str
    case_id: str
    changes: dict[str, Any]


class JobCancelled(DispatchEvent):
    """The case was cancelled at intake, so its open job was withdrawn."""

    event_type = "JobCancelled"
    job_id: str
    case_id: str
    surveyor_id: str | None = None
    reason: str
