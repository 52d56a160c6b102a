"""Intake: cases reported by insurers and by phone, corrections, consultations, ownership."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from claimdesk.events.base import REGISTRY, Event

LossType = Literal["vehicle_own_damage", "vehicle_third_party", "injury", "property", "other"]
Channel = Literal["insurer_api", "phone"]


class IntakeEvent(Event):
    context = "intake"


class CaseReported(IntakeEvent):
    """A case was entrusted to the firm (案件受理): posted by an insurer or taken by phone."""

    event_type = "CaseReported"
    schema_version = 2

    case_id: str
    insurer_code: str
    channel: Channel
    report_no: str | None = Field(None, description="the insurer's report number (报案号)")
    policy_no: str | None = None
    plate: str | None = None
    loss_type: LossType
    loss_time: datetime
    loss_address: str
    loss_lat: float | None = None
    loss_lon: float | None = None
    region: str | None = None
    description: str = ""
    reporter_name: str | None = None
    reporter_phone: str | None = None
    insured_name: str | None = None
    insured_phone: str | None = None
    survey_place: Literal["scene", "repair_shop"] = "scene"
    repair_shop: str | None = None
    injuries: bool = False
    priority: Literal["normal", "urgent"] = "normal"
    first_contact_owner: str | None = Field(None, description="staff number owning it (首问责任人)")
    callback_promised_at: datetime | None = None
    vehicle_model: str | None = Field(None, description="vehicle make and model (厂牌车型)")
    caller_name: str | None = Field(None, description="who called, for phone reports (来电人)")
    caller_phone: str | None = Field(None, description="caller's phone (来电人电话)")


@REGISTRY.upcaster("CaseReported", 1)
def _case_reported_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 had one free-text `location`; v2 names it `loss_address` and adds coordinates."""
    out = dict(payload)
    out["loss_address"] = out.pop("location")
    out.setdefault("loss_lat", None)
    out.setdefault("loss_lon", None)
    return out


class CaseDetailsCorrected(IntakeEvent):
    """Fields of a case were corrected; `previous` keeps what they were."""

    event_type = "CaseDetailsCorrected"
    case_id: str
    changes: dict[str, Any]
    previous: dict[str, Any]
    corrected_by: str
    reason: str


class CaseCancelled(IntakeEvent):
    """The case was withdrawn; it can no longer be corrected or dispatched."""

    event_type = "CaseCancelled"
    case_id: str
    reason: str
    cancelled_by: str


class DuplicateCaseLinked(IntakeEvent):
    """A case was recognised as the same loss as another (same plate, close loss time)."""

    event_type = "DuplicateCaseLinked"
    case_id: str
    duplicate_of: str
    matched_on: list[str]


class DiscrepancyRecorded(IntakeEvent):
    """An insurer's post and the agent's phone registration of one case differ in a field."""

    event_type = "DiscrepancyRecorded"
    case_id: str
    discrepancy_id: str
    field: str
    phone_value: Any = None
    insurer_value: Any = None
    agent: str | None = None
    phone_case_id: str | None = Field(None, description="the agent's phone registration")


class DiscrepancyResolved(IntakeEvent):
    """The manager reviewed a discrepancy and closed it with a note."""

    event_type = "DiscrepancyResolved"
    case_id: str
    discrepancy_id: str
    note: str
    resolved_by: str


class RequestedDocument(BaseModel):
    model_config = ConfigDict(frozen=True)
    code: str = Field(description="document code in the insurer's checklist")
    name: str = Field(description="document name shown to agents (单证名称)")


class DocumentRequested(IntakeEvent):
    """Documents (单证) the insurer requires for this loss type were asked for, in one request."""

    event_type = "DocumentRequested"
    schema_version = 2
    case_id: str
    documents: list[RequestedDocument] = Field(min_length=1)


@REGISTRY.upcaster("DocumentRequested", 1)
def _document_requested_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 was one event per document; v2 lists every document of one request."""
    return {
        "case_id": payload["case_id"],
        "documents": [{"code": payload["document_code"], "name": payload["document_name"]}],
    }


class DocumentReceived(IntakeEvent):
    """A required document arrived."""

    event_type = "DocumentReceived"
    case_id: str
    document_code: str
    received_by: str


class ConsultationLogged(IntakeEvent):
    """A claims consultation (理赔咨询) was answered, or given a follow-up owner and due time."""

    event_type = "ConsultationLogged"
    consultation_id: str
    case_id: str | None = None
    agent: str
    caller_name: str
    caller_phone: str
    topic: str
    answer: str
    resolved: bool
    follow_up_owner: str | None = None
    follow_up_due: datetime | None = None

    def partition_key(self) -> str | None:
        return self.case_id or self.consultation_id


class OwnershipHandedOver(IntakeEvent):
    """First-contact ownership (首问责任制) moved to a named person, with a reason."""

    event_type = "OwnershipHandedOver"
    subject_type: Literal["case", "consultation"]
    subject_id: str
    case_id: str | None = None
    from_owner: str
    to_owner: str
    reason: str

    def partition_key(self) -> str | None:
        return self.case_id or self.subject_id


class StaffTokensRevoked(IntakeEvent):
    """Staff bearer tokens stopped being valid before they expire: revoked one by one, replaced
    by a rotation, or with the person deactivated. Every service refuses them from then on."""

    event_type = "StaffTokensRevoked"
    staff_id: str
    number: str
    token_ids: list[str] = Field(description="the `jti` of each revoked token")
    reason: Literal["revoked", "rotated", "deactivated"]
    expires_at: datetime = Field(
        description="when the last of them expires anyway (the refusal is needed until then)"
    )

    def partition_key(self) -> str | None:
        return f"staff-{self.staff_id}"
