"""Complaints (投诉受理) with their deadline clocks, and satisfaction callbacks (客户回访)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from claimdesk.events.base import Event

Category = Literal["attitude", "delay", "assessed_amount", "damage", "other"]


class ComplaintsEvent(Event):
    context = "complaints"

    def partition_key(self) -> str | None:
        case_id = getattr(self, "case_id", None)
        return case_id or getattr(self, "complaint_id", None) or getattr(self, "callback_id", None)


class ComplaintReceived(ComplaintsEvent):
    """A complaint was taken; the receiving agent owns it (首问责任制) and promised an answer time."""

    event_type = "ComplaintReceived"
    complaint_id: str
    case_id: str | None = None
    category: Category
    severity: Literal["low", "medium", "high"]
    channel: Literal["phone", "web", "email", "insurer", "callback"]
    caller_name: str
    caller_phone: str
    matter: str
    surveyor_id: str | None = None
    insurer_code: str | None = None
    owner: str
    promised_answer_at: datetime | None = None
    callback_id: str | None = None


class ComplaintTriaged(ComplaintsEvent):
    """The complaint was judged valid or not (有效投诉), with the reason."""

    event_type = "ComplaintTriaged"
    complaint_id: str
    case_id: str | None = None
    valid: bool
    reason: str
    triaged_by: str


class ComplaintAssigned(ComplaintsEvent):
    """A valid complaint was given to a named responsible person."""

    event_type = "ComplaintAssigned"
    complaint_id: str
    case_id: str | None = None
    assignee: str
    assigned_by: str
    reason: str = ""


class ComplaintEscalated(ComplaintsEvent):
    """A deadline clock was breached and the complaint went up one level."""

    event_type = "ComplaintEscalated"
    complaint_id: str
    case_id: str | None = None
    clock: str
    level: int
    escalated_to: Literal["team_lead", "supervisor", "manager"]
    due_at: datetime
    reason: Literal["breach", "still_breached"] = "breach"


class ComplaintResolved(ComplaintsEvent):
    """The complaint was answered: outcome and the feedback given to the customer."""

    event_type = "ComplaintResolved"
    complaint_id: str
    case_id: str | None = None
    outcome: str
    feedback_to_customer: str
    resolved_by: str


class CustomerFeedbackRecorded(ComplaintsEvent):
    """The customer's reaction to the resolution."""

    event_type = "CustomerFeedbackRecorded"
    complaint_id: str
    case_id: str | None = None
    satisfied: bool
    comment: str = ""
    recorded_by: str | None = None


class ImprovementRecorded(ComplaintsEvent):
    """An improvement action was decided for a complaint, to be tracked until done."""

    event_type = "ImprovementRecorded"
    complaint_id: str
    case_id: str | None = None
    improvement_id: str
    action: str
    owner: str
    due_at: datetime | None = None


class CallbackScheduled(ComplaintsEvent):
    """A satisfaction callback (回访) was put into an agent's work queue."""

    event_type = "CallbackScheduled"
    callback_id: str
    case_id: str
    job_id: str | None = None
    surveyor_id: str | None = None
    insurer_code: str | None = None
    owner: str
    due_at: datetime


class CallbackCompleted(ComplaintsEvent):
    """The customer was reached and rated the service and the surveyor."""

    event_type = "CallbackCompleted"
    callback_id: str
    case_id: str
    surveyor_id: str | None = None
    satisfaction: int
    surveyor_rating: int | None = None
    reasons: list[str] = []
    agent: str
    comment: str = ""
    attempts: int = 1
    complaint_id: str | None = None


class CallbackFailed(ComplaintsEvent):
    """The customer could not be reached after every allowed try."""

    event_type = "CallbackFailed"
    callback_id: str
    case_id: str
    attempts: int
    last_reason: str


# -- additions for issue 6: clocks, escalation, reopen, improvements, callbacks, handover ------


class ComplaintClockStarted(ComplaintsEvent):
    """A deadline clock (first_response, resolution, regulatory) started from an SLA policy."""

    event_type = "ComplaintClockStarted"
    complaint_id: str
    case_id: str | None = None
    clock: str
    policy_name: str
    policy_version: int
    budget_s: float
    warn_before_s: float = 0
    business_hours: bool = False
    calendar: dict[str, Any] | None = None
    started_at: datetime
    due_at: datetime
    warn_at: datetime | None = None
    re_escalate_after_s: float | None = None
    max_extended_s: float | None = None


class ComplaintClockStopped(ComplaintsEvent):
    """A clock stopped because what it measured happened (met) or after it was breached."""

    event_type = "ComplaintClockStopped"
    complaint_id: str
    case_id: str | None = None
    clock: str
    met: bool
    consumed_s: float


class ComplaintClockPaused(ComplaintsEvent):
    """The complaint waits on the customer: its running clocks stopped counting."""

    event_type = "ComplaintClockPaused"
    complaint_id: str
    case_id: str | None = None
    clocks: list[str]
    reason: str
    paused_by: str


class ClockDue(BaseModel):
    model_config = ConfigDict(frozen=True)
    clock: str
    due_at: datetime
    warn_at: datetime | None = None


class ComplaintClockResumed(ComplaintsEvent):
    """The customer answered: paused clocks count again, with their new due times."""

    event_type = "ComplaintClockResumed"
    complaint_id: str
    case_id: str | None = None
    clocks: list[ClockDue]
    note: str = ""
    resumed_by: str


class ComplaintDeadlineWarned(ComplaintsEvent):
    """A clock is close to its due time: the owner and assignee are warned."""

    event_type = "ComplaintDeadlineWarned"
    complaint_id: str
    case_id: str | None = None
    clock: str
    due_at: datetime
    notified: list[str] = []


class ComplaintClockBreached(ComplaintsEvent):
    """A clock passed its due time before what it measured happened."""

    event_type = "ComplaintClockBreached"
    complaint_id: str
    case_id: str | None = None
    clock: str
    due_at: datetime


class ComplaintDeadlineExtended(ComplaintsEvent):
    """The regulatory deadline was extended (15 to at most 30 days), with the reason."""

    event_type = "ComplaintDeadlineExtended"
    complaint_id: str
    case_id: str | None = None
    clock: str
    budget_s: float
    previous_due_at: datetime
    due_at: datetime
    warn_at: datetime | None = None
    reason: str
    extended_by: str


class ComplaintReopened(ComplaintsEvent):
    """The customer was not satisfied with the resolution: the complaint is open again."""

    event_type = "ComplaintReopened"
    complaint_id: str
    case_id: str | None = None
    reason: str
    reopened_by: str


class ComplaintClosed(ComplaintsEvent):
    """The complaint is finished: answered and accepted, or judged invalid (kept, never deleted)."""

    event_type = "ComplaintClosed"
    complaint_id: str
    case_id: str | None = None
    reason: str


class ImprovementCompleted(ComplaintsEvent):
    """An improvement action decided for a complaint was carried out."""

    event_type = "ImprovementCompleted"
    complaint_id: str
    case_id: str | None = None
    improvement_id: str
    note: str = ""
    completed_by: str


class CallbackAttemptFailed(ComplaintsEvent):
    """A callback try did not reach the customer; it is due again later."""

    event_type = "CallbackAttemptFailed"
    callback_id: str
    case_id: str
    attempt: int
    reason: str
    agent: str
    next_due_at: datetime | None = None


class WorkItemHandedOver(ComplaintsEvent):
    """Ownership of a complaint, callback or improvement moved to a named person (首问责任制)."""

    event_type = "WorkItemHandedOver"
    item_type: Literal["complaint", "callback", "improvement"]
    item_id: str
    complaint_id: str | None = None
    callback_id: str | None = None
    case_id: str | None = None
    from_owner: str
    to_owner: str
    reason: str
    handed_over_by: str


class SlaPolicyPublished(ComplaintsEvent):
    """A new version of an SLA policy was saved; clocks started later use it."""

    event_type = "SlaPolicyPublished"
    name: str
    version: int
    policy: dict[str, Any]
    published_by: str

    def partition_key(self) -> str | None:
        return f"sla-policy:{self.name}"


class CallbackRateSet(ComplaintsEvent):
    """The share of an insurer's completed surveys that get a satisfaction callback changed."""

    event_type = "CallbackRateSet"
    insurer_code: str
    rate: float
    set_by: str

    def partition_key(self) -> str | None:
        return f"callback-rate:{self.insurer_code}"
