"""A case's history across services, and its state as of a moment (pure fold over history)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from claimdesk.db import loads

STATUS_ORDER = [
    "reported",
    "queued",
    "assigned",
    "acknowledged",
    "en_route",
    "on_site",
    "surveyed",
    "closed",
]
_STATUS_OF = {
    "CaseReported": "reported",
    "JobQueuedForDispatcher": "queued",
    "SurveyorAssigned": "assigned",
    "SurveyorReassigned": "assigned",
    "AssignmentTimedOut": "queued",
    "JobDeclined": "queued",
    "JobAcknowledged": "acknowledged",
    "SurveyorEnRoute": "en_route",
    "SurveyorArrived": "on_site",
    "SurveyCompleted": "surveyed",
    "CaseClosed": "closed",
}


def case_state(case_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold history items (type, occurred_at, payload) in order into the case's state."""
    state: dict[str, Any] = {
        "case_id": case_id,
        "known": False,
        "status": None,
        "insurer_code": None,
        "loss_type": None,
        "surveyor_id": None,
        "job_id": None,
        "open_complaints": [],
        "resolved_complaints": [],
        "callbacks": [],
        "events": 0,
    }
    open_c: dict[str, dict[str, Any]] = {}
    for e in events:
        t, p = e["type"], e["payload"]
        state["events"] += 1
        if t == "CaseReported":
            state["known"] = True
            state["insurer_code"] = p.get("insurer_code")
            state["loss_type"] = p.get("loss_type")
            state["reported_at"] = e["occurred_at"]
        elif t == "CaseDetailsCorrected":
            for k in ("insurer_code", "loss_type"):
                if k in (p.get("changes") or {}):
                    state[k] = p["changes"][k]
        elif t == "CaseCancelled":
            state["status"] = "cancelled"
        if t in ("SurveyorAssigned", "SurveyorReassigned"):
            state["surveyor_id"] = p.get("surveyor_id") or p.get("to_surveyor_id")
            state["job_id"] = p.get("job_id")
        if t in ("JobDeclined", "AssignmentTimedOut"):
            state["surveyor_id"] = None
        if t in _STATUS_OF and state["status"] != "cancelled":
            state["status"] = _STATUS_OF[t]
        if t == "ComplaintReceived":
            open_c[p["complaint_id"]] = {
                "complaint_id": p["complaint_id"],
                "category": p.get("category"),
                "received_at": e["occurred_at"],
                "level": 0,
            }
        elif t == "ComplaintEscalated" and p.get("complaint_id") in open_c:
            open_c[p["complaint_id"]]["level"] = p.get("level")
        elif t == "ComplaintResolved" and p.get("complaint_id") in open_c:
            state["resolved_complaints"].append(open_c.pop(p["complaint_id"])["complaint_id"])
        elif (
            t == "ComplaintTriaged" and p.get("valid") is False and p.get("complaint_id") in open_c
        ):
            open_c[p["complaint_id"]]["valid"] = False
        if t in ("CallbackCompleted", "CallbackFailed"):
            state["callbacks"].append(
                {
                    "callback_id": p.get("callback_id"),
                    "outcome": t,
                    "satisfaction": p.get("satisfaction"),
                }
            )
    state["open_complaints"] = list(open_c.values())
    return state


async def case_history(
    conn: asyncpg.Connection, case_id: str, as_of: datetime | None = None
) -> list[dict[str, Any]]:
    """Every stored event of the case (from every service) in the order it happened.

    With `as_of`, only what had been recorded by then ("what did we know at 14:05").
    """
    rows = await conn.fetch(
        """SELECT event_id, event_type, context, producer, occurred_at, recorded_at, actor,
                  stream_id, sequence, known, payload
           FROM case_events
           WHERE case_id = $1 AND ($2::timestamptz IS NULL OR recorded_at <= $2)
           ORDER BY occurred_at, recorded_at, producer, stream_id, sequence""",
        case_id,
        as_of,
    )
    return [
        {
            "event_id": str(r["event_id"]),
            "type": r["event_type"],
            "context": r["context"],
            "producer": r["producer"],
            "occurred_at": r["occurred_at"],
            "recorded_at": r["recorded_at"],
            "actor": r["actor"],
            "stream_id": r["stream_id"],
            "sequence": r["sequence"],
            "known_type": r["known"],
            "payload": loads(r["payload"]),  # stored as the JSON text published
        }
        for r in rows
    ]
