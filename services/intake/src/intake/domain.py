"""Pure case rules: evolve a case's state from its events, decide corrections and cancellations,
spot duplicates and discrepancies. No IO and no clock: `now` is passed in."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from claimdesk.errors import Conflict, InvalidInput
from claimdesk.events.base import Event
from claimdesk.events.intake import (
    CaseCancelled,
    CaseDetailsCorrected,
    CaseReported,
    DocumentReceived,
    DuplicateCaseLinked,
    OwnershipHandedOver,
)

CaseState = dict[str, Any]

STATUS_RANK = {
    "reported": 0,
    "assigned": 1,
    "surveyor_arrived": 2,
    "survey_completed": 3,
    "closed": 4,
}
FINAL = {"closed", "cancelled"}

CORRECTABLE = (
    "policy_no",
    "plate",
    "loss_type",
    "loss_time",
    "loss_address",
    "loss_lat",
    "loss_lon",
    "region",
    "description",
    "reporter_name",
    "reporter_phone",
    "insured_name",
    "insured_phone",
    "survey_place",
    "repair_shop",
    "injuries",
    "priority",
    "vehicle_model",
)
"""Fields a correction may change (identity, channel and report number never change)."""

COMPARED = (
    "report_no",
    "policy_no",
    "plate",
    "loss_type",
    "loss_time",
    "loss_address",
    "reporter_name",
    "reporter_phone",
    "insured_name",
    "insured_phone",
    "survey_place",
    "repair_shop",
    "injuries",
    "priority",
)
"""Fields compared between an insurer's post and an agent's phone registration."""


def evolve(state: CaseState | None, event: Event, at: datetime) -> CaseState:
    """The case after `event` (recorded at `at`)."""
    if isinstance(event, CaseReported):
        s: CaseState = event.model_dump(mode="json")
        s.update(status="reported", duplicate_of=None, reported_at=at.isoformat())
        s.setdefault("cancel_reason", None)
        s["updated_at"] = at.isoformat()
        return s
    if state is None:
        raise ValueError(f"{event.event_type} before CaseReported")
    s = dict(state)
    s["updated_at"] = at.isoformat()
    if isinstance(event, CaseDetailsCorrected):
        s.update(event.changes)
    elif isinstance(event, CaseCancelled):
        s["status"] = "cancelled"
        s["cancel_reason"] = event.reason
    elif isinstance(event, DuplicateCaseLinked):
        s["duplicate_of"] = event.duplicate_of
    elif isinstance(event, OwnershipHandedOver):
        s["first_contact_owner"] = event.to_owner
    elif isinstance(event, DocumentReceived):
        pass
    return s


def decide_correction(
    state: CaseState, changes: dict[str, Any], validated: dict[str, Any], reason: str, who: str
) -> list[Event]:
    """`changes` as sent, `validated` the same fields after validation and normalisation."""
    status = state["status"]
    if status in FINAL:
        raise Conflict(
            f"case {state['case_id']} is {status}; a {status} case cannot be corrected",
            state=status,
        )
    unknown = sorted(set(changes) - set(CORRECTABLE))
    if unknown:
        raise InvalidInput(
            f"these fields cannot be corrected: {', '.join(unknown)}",
            correctable=list(CORRECTABLE),
        )
    effective = {k: v for k, v in validated.items() if k in changes and state.get(k) != v}
    if not effective:
        return []
    previous = {k: state.get(k) for k in effective}
    return [
        CaseDetailsCorrected(
            case_id=state["case_id"],
            changes=effective,
            previous=previous,
            corrected_by=who,
            reason=reason,
        )
    ]


def decide_cancel(state: CaseState, reason: str, who: str) -> list[Event]:
    status = state["status"]
    if status in FINAL:
        raise Conflict(f"case {state['case_id']} is {status}; it cannot be cancelled", state=status)
    return [CaseCancelled(case_id=state["case_id"], reason=reason, cancelled_by=who)]


def decide_handover(state_owner: str | None, to_owner: str, reason: str) -> None:
    if state_owner == to_owner:
        raise Conflict(f"{to_owner} already owns it")


def advance_status(current: str, new: str) -> str | None:
    """The status after a dispatch step, or None when it does not move (never backwards)."""
    if current in ("cancelled", new):
        return None
    if STATUS_RANK.get(new, -1) > STATUS_RANK.get(current, -1):
        return new
    return None


def within(a: datetime, b: datetime, window_s: int) -> bool:
    return abs(a - b) <= timedelta(seconds=window_s)


def _comparable(field: str, value: Any) -> Any:
    if value is None:
        return None
    if field == "loss_time":
        t = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return t.replace(second=0, microsecond=0).timestamp()
    if isinstance(value, str):
        return "".join(value.split())
    return value


def differences(phone: CaseState, insurer: CaseState) -> list[tuple[str, Any, Any]]:
    """Fields both registrations filled in, with different values (minute precision for time)."""
    out = []
    for field in COMPARED:
        pv, iv = phone.get(field), insurer.get(field)
        if pv is None or iv is None or pv == "" or iv == "":
            continue
        if _comparable(field, pv) != _comparable(field, iv):
            out.append((field, pv, iv))
    return out
