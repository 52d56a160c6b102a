"""Complaints (投诉受理) with their deadline clocks, and satisfaction callbacks (客户回访)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

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


class ComplaintEscalated(ComplaintsEvent):
    """A deadline clock was breached and the complaint went up one level."""

    event_type = "ComplaintEscalated"
    complaint_id: str
    case_id: str | None = None
    clock: str
    level: int
    escalated_to: Literal["team_lead", "supervisor", "manager"]
    due_at: datetime


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


class CallbackFailed(ComplaintsEvent):
    """The customer could not be reached after every allowed try."""

    event_type = "CallbackFailed"
    callback_id: str
    case_id: str
    attempts: int
    last_reason: str
