"""Pure fold functions: (row before or None, event) -> row after. No I/O, time comes from events.

Rows are plain dicts with the columns of `tables`. Each function only sets the columns its
event is about, so events of one entity arriving from different topics or partitions in a
different order (Kafka gives no order across partitions) still fold to the same row; where a
value could be set twice the rule is explicit (earliest time wins, counters add up).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from claimdesk.events.base import Envelope

from analytics.codec import RawPayload
from analytics.tables import CALLBACKS, CASES, COMPLAINTS, DISCREPANCIES, JOBS, SURVEYORS, Table

Row = dict[str, Any]

CASE_DIMENSIONS = ("insurer_code", "loss_type", "channel", "region")
CASE_CORRECTABLE = {
    "insurer_code",
    "channel",
    "loss_type",
    "region",
    "plate",
    "priority",
    "first_contact_owner",
}


@dataclass(frozen=True)
class FoldConfig:
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    on_time_arrival: timedelta = timedelta(minutes=60)
    default_answer_time: timedelta = timedelta(hours=24)

    def day(self, at: datetime) -> date:
        return at.astimezone(self.tz).date()


def empty(table: Table, key: str) -> Row:
    row: Row = dict.fromkeys(table.names)
    row[table.key[0]] = key
    return row


def _min(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


def _p(env: Envelope) -> dict[str, Any]:
    """The payload's fields: a typed event's attributes, or a raw payload's dict."""
    payload = env.payload
    if type(payload) is RawPayload:
        return payload.data
    return payload.__dict__


def _ts(value: Any) -> datetime | None:
    """A timestamp field of a payload (a datetime, or ISO text in a raw payload)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


# -- periods --------------------------------------------------------------------------------

GRANULARITIES = ("day", "week", "month")


def period_start(day: date, granularity: str) -> date:
    if granularity == "day":
        return day
    if granularity == "week":
        return day - timedelta(days=day.weekday())  # ISO week starts on Monday
    if granularity == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown granularity {granularity!r}")


def period_label(start: date, granularity: str) -> str:
    if granularity == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    if granularity == "month":
        return f"{start:%Y-%m}"
    return start.isoformat()


_PERIODS: dict[date, tuple[tuple[str, date], ...]] = {}
"""day -> its (granularity, period start) pairs: a fold meets the same few days again and again."""


def _periods(day: date) -> tuple[tuple[str, date], ...]:
    periods = _PERIODS.get(day)
    if periods is None:
        periods = tuple((g, period_start(day, g)) for g in GRANULARITIES)
        if len(_PERIODS) < 100_000:
            _PERIODS[day] = periods
    return periods


def case_count_keys(row: Row | None) -> list[tuple[Any, ...]]:
    """The case_counts keys a case row counts under (none until it was reported)."""
    if row is None:
        return []
    day = row.get("report_day")
    if day is None:
        return []
    dims = (
        row.get("insurer_code") or "",
        row.get("loss_type") or "",
        row.get("channel") or "",
        row.get("region") or "",
    )  # CASE_DIMENSIONS
    return [(g, start, *dims) for g, start in _periods(day)]


# -- cases (intake) -------------------------------------------------------------------------

INTAKE_CASE_EVENTS = {
    "CaseReported",
    "CaseDetailsCorrected",
    "CaseCancelled",
    "DuplicateCaseLinked",
}


def fold_case(row: Row | None, env: Envelope, cfg: FoldConfig) -> Row:
    p = _p(env)
    out = dict(row) if row is not None else empty(CASES, p["case_id"])
    t = env.event_type
    if t == "CaseReported":
        for k in CASE_CORRECTABLE:
            out[k] = p.get(k)
        out["reported_at"] = env.occurred_at
        out["report_day"] = cfg.day(env.occurred_at)
    elif t == "CaseDetailsCorrected":
        for k, v in (p.get("changes") or {}).items():
            if k in CASE_CORRECTABLE:
                out[k] = v
        out["corrections"] = (out.get("corrections") or 0) + 1
    elif t == "CaseCancelled":
        out["cancelled_at"] = _min(out.get("cancelled_at"), env.occurred_at)
    elif t == "DuplicateCaseLinked":
        out["duplicate_of"] = p.get("duplicate_of")
    return out


# -- jobs and surveyors (dispatch) ----------------------------------------------------------

JOB_EVENTS = {
    "JobOpened",
    "JobCancelled",
    "SurveyorAssigned",
    "JobQueuedForDispatcher",
    "JobAcknowledged",
    "JobDeclined",
    "AssignmentTimedOut",
    "SurveyorReassigned",
    "SurveyorArrived",
    "SurveyCompleted",
    "CaseClosed",
}
SURVEYOR_EVENTS = {"SurveyorRegistered", "SurveyorDetailsChanged", "SurveyorRetired"}

StatDelta = tuple[str, str, int]  # (surveyor_id, counter, amount); day: the event's day


def fold_job(row: Row | None, env: Envelope, cfg: FoldConfig) -> tuple[Row, list[StatDelta]]:
    """Fold one dispatch event into its job; also return the surveyor counter deltas."""
    p = _p(env)
    out = dict(row) if row is not None else empty(JOBS, p["job_id"])
    for k in ("declines", "timeouts", "reassignments"):
        out[k] = out.get(k) or 0
    out["case_id"] = out.get("case_id") or p.get("case_id")
    at = env.occurred_at
    t = env.event_type
    sid = p.get("surveyor_id")
    deltas: list[StatDelta] = []
    if t in ("SurveyorAssigned", "SurveyorReassigned"):
        sid = p["surveyor_id"] if t == "SurveyorAssigned" else p["to_surveyor_id"]
        out["surveyor_id"] = sid
        out["first_assigned_at"] = _min(out.get("first_assigned_at"), at)
        out["assigned_at"] = at
        out["ack_due_at"] = _ts(p.get("ack_due_at"))
        out["current_acked"] = False
        if p.get("insurer_code"):
            out["insurer_code"] = p["insurer_code"]
        if t == "SurveyorReassigned":
            out["reassignments"] += 1
        deltas.append((sid, "assigned", 1))
    elif t == "JobOpened":
        out["opened_at"] = _min(out.get("opened_at"), at)
        out["insurer_code"] = out.get("insurer_code") or p.get("insurer_code")
    elif t == "JobCancelled":
        out["cancelled_at"] = _min(out.get("cancelled_at"), at)
    elif t == "JobQueuedForDispatcher":
        out["queued_at"] = _min(out.get("queued_at"), at)
    elif t == "JobAcknowledged":
        out["acknowledged_at"] = _min(out.get("acknowledged_at"), at)
        out["current_acked"] = True
        deltas.append((sid, "acknowledged", 1))
    elif t == "JobDeclined":
        out["declines"] += 1
        deltas.append((sid, "declined", 1))
    elif t == "AssignmentTimedOut":
        out["timeouts"] += 1
        deltas.append((sid, "timed_out", 1))
    elif t == "SurveyorArrived":
        first = out.get("arrived_at") is None
        out["arrived_at"] = _min(out.get("arrived_at"), at)
        if first:
            deltas.append((sid, "arrived", 1))
            assigned = out.get("assigned_at")
            if assigned is not None and at - assigned <= cfg.on_time_arrival:
                deltas.append((sid, "on_time", 1))
    elif t == "SurveyCompleted":
        first = out.get("completed_at") is None
        out["completed_at"] = _min(out.get("completed_at"), at)
        out["loss_estimate"] = p.get("loss_estimate")
        if first:
            deltas.append((sid, "completed", 1))
            arrived = out.get("arrived_at")
            if arrived is not None:
                deltas.append((sid, "survey_ms", int((at - arrived).total_seconds() * 1000)))
    elif t == "CaseClosed":
        out["closed_at"] = _min(out.get("closed_at"), at)
    return out, deltas


def fold_surveyor(row: Row | None, env: Envelope) -> Row:
    p = _p(env)
    out = dict(row) if row is not None else empty(SURVEYORS, p["surveyor_id"])
    if env.event_type == "SurveyorRegistered":
        out["name"], out["team"] = p.get("name"), p.get("team")
        out["retired"] = bool(out.get("retired"))
    elif env.event_type == "SurveyorDetailsChanged":
        changes = p.get("changes") or {}
        for k in ("name", "team"):
            if k in changes:
                out[k] = changes[k]
    elif env.event_type == "SurveyorRetired":
        out["retired"] = True
    return out


# -- complaints and callbacks ---------------------------------------------------------------

COMPLAINT_EVENTS = {
    "ComplaintReceived",
    "ComplaintTriaged",
    "ComplaintAssigned",
    "ComplaintResolved",
    "CustomerFeedbackRecorded",
    "ComplaintClockStarted",
    "ComplaintDeadlineExtended",
    "ComplaintClockStopped",
    "ComplaintClockPaused",
    "ComplaintClockResumed",
    "ComplaintClockBreached",
    "ComplaintReopened",
    "ComplaintClosed",
}
CALLBACK_EVENTS = {
    "CallbackScheduled",
    "CallbackCompleted",
    "CallbackFailed",
    "CallbackAttemptFailed",
}
DISCREPANCY_EVENTS = {"DiscrepancyRecorded", "DiscrepancyResolved"}


def fold_complaint(row: Row | None, env: Envelope, cfg: FoldConfig) -> Row:
    """Complaint facts. The answer deadline is the nearest running clock of the complaints
    service (its SLA policy), else the promised answer time, else receipt + the default."""
    p = _p(env)
    out = dict(row) if row is not None else empty(COMPLAINTS, p["complaint_id"])
    for k in ("breaches", "reopened"):
        out[k] = out.get(k) or 0
    if p.get("case_id") and not out.get("case_id"):
        out["case_id"] = p["case_id"]
    clocks: dict[str, str] = json.loads(out.get("clocks") or "{}")
    at = env.occurred_at
    t = env.event_type
    if t == "ComplaintReceived":
        for k in ("surveyor_id", "insurer_code", "category", "severity", "channel", "owner"):
            out[k] = p.get(k)
        out["received_at"] = at
        out["received_day"] = cfg.day(at)
        if not clocks:
            promised = _ts(p.get("promised_answer_at"))
            out["answer_due_at"] = promised or at + cfg.default_answer_time
    elif t == "ComplaintTriaged":
        out["valid"] = p["valid"]
        out["triaged_at"] = _min(out.get("triaged_at"), at)
    elif t == "ComplaintAssigned":
        out["assignee"] = p.get("assignee")
    elif t == "ComplaintResolved":
        out["resolved_at"] = _min(out.get("resolved_at"), at)
        due = out.get("answer_due_at")
        out["resolved_on_time"] = out["breaches"] == 0 and (due is None or at <= due)
    elif t == "CustomerFeedbackRecorded":
        out["satisfied"] = p.get("satisfied")
    elif t in ("ComplaintClockStarted", "ComplaintDeadlineExtended"):
        clocks[p["clock"]] = _iso(p["due_at"])
    elif t == "ComplaintClockStopped":
        clocks.pop(p["clock"], None)
    elif t == "ComplaintClockPaused":
        for name in p.get("clocks") or []:
            clocks.pop(name, None)
    elif t == "ComplaintClockResumed":
        for item in p.get("clocks") or []:
            c = item if isinstance(item, dict) else item.__dict__
            clocks[c["clock"]] = _iso(c["due_at"])
    elif t == "ComplaintClockBreached":
        out["breaches"] += 1
    elif t == "ComplaintReopened":
        out["resolved_at"], out["resolved_on_time"] = None, None
        out["reopened"] += 1
    elif t == "ComplaintClosed":
        out["closed_at"] = _min(out.get("closed_at"), at)
    if t.startswith("ComplaintClock") or t == "ComplaintDeadlineExtended":
        if clocks:
            out["answer_due_at"] = min(_ts(v) for v in clocks.values())
        out["clocks"] = json.dumps(clocks, sort_keys=True)
    return out


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def escalation_row(env: Envelope, cfg: FoldConfig) -> Row:
    p = _p(env)
    return {
        "complaint_id": p["complaint_id"],
        "level": p["level"],
        "clock": p["clock"],
        "escalated_to": p["escalated_to"],
        "escalated_at": env.occurred_at,
        "escalated_day": cfg.day(env.occurred_at),
    }


def fold_callback(row: Row | None, env: Envelope, cfg: FoldConfig) -> Row:
    p = _p(env)
    out = dict(row) if row is not None else empty(CALLBACKS, p["callback_id"])
    out["case_id"] = out.get("case_id") or p.get("case_id")
    at = env.occurred_at
    t = env.event_type
    if t == "CallbackScheduled":
        out["insurer_code"], out["owner"] = p.get("insurer_code"), p.get("owner")
        out["due_at"] = _ts(p.get("due_at"))
        out["surveyor_id"] = out.get("surveyor_id") or p.get("surveyor_id")
        out["scheduled_at"] = at
        out["day"] = out.get("day") or cfg.day(at)
    elif t == "CallbackCompleted":
        out["completed_at"] = _min(out.get("completed_at"), at)
        out["satisfaction"] = p.get("satisfaction")
        out["surveyor_rating"] = p.get("surveyor_rating")
        out["reasons"] = "\n".join(p.get("reasons") or [])
        out["agent"] = p.get("agent")
        if p.get("surveyor_id"):
            out["surveyor_id"] = p["surveyor_id"]
        out["day"] = cfg.day(at) if out.get("scheduled_at") is None else out["day"]
    elif t == "CallbackFailed":
        out["failed_at"] = _min(out.get("failed_at"), at)
        out["attempts"] = max(out.get("attempts") or 0, p.get("attempts") or 0)
    elif t == "CallbackAttemptFailed":
        out["attempts"] = max(out.get("attempts") or 0, p.get("attempt") or 0)
        out["day"] = cfg.day(at) if out.get("scheduled_at") is None else out["day"]
    return out


def fold_discrepancy(row: Row | None, env: Envelope, cfg: FoldConfig) -> Row:
    p = _p(env)
    out = dict(row) if row is not None else empty(DISCREPANCIES, p["discrepancy_id"])
    out["case_id"] = out.get("case_id") or p.get("case_id")
    if env.event_type == "DiscrepancyRecorded":
        out["field"], out["agent"] = p.get("field"), p.get("agent")
        out["recorded_at"] = env.occurred_at
        out["day"] = cfg.day(env.occurred_at)
    else:
        out["resolved_at"] = _min(out.get("resolved_at"), env.occurred_at)
        out["resolved_by"] = p.get("resolved_by")
    return out


# -- routing: which table and key an event folds into -----------------------------------------


_ROUTES: dict[str, tuple[Table, str]] = {
    **dict.fromkeys(INTAKE_CASE_EVENTS, (CASES, "case_id")),
    **dict.fromkeys(JOB_EVENTS, (JOBS, "job_id")),
    **dict.fromkeys(SURVEYOR_EVENTS, (SURVEYORS, "surveyor_id")),
    **dict.fromkeys(COMPLAINT_EVENTS, (COMPLAINTS, "complaint_id")),
    **dict.fromkeys(CALLBACK_EVENTS, (CALLBACKS, "callback_id")),
    **dict.fromkeys(DISCREPANCY_EVENTS, (DISCREPANCIES, "discrepancy_id")),
}


def route(env: Envelope) -> tuple[Table, str] | None:
    """The table and key an event folds into (None: it folds into no entity row)."""
    target = _ROUTES.get(env.event_type)
    if target is None:
        return None
    table, field = target
    return table, _p(env)[field]


@dataclass
class BatchFold:
    """The in-memory result of folding a batch: rows to write and counter deltas."""

    before: dict[str, dict[str, Row | None]]
    rows: dict[str, dict[str, Row]] = field(default_factory=dict)
    case_counts: dict[tuple[Any, ...], int] = field(default_factory=dict)
    surveyor_stats: dict[tuple[str, date], dict[str, int]] = field(default_factory=dict)
    escalations: dict[tuple[Any, ...], Row] = field(default_factory=dict)


def fold_batch(
    events: list[Envelope], loaded: dict[str, dict[str, Row | None]], cfg: FoldConfig
) -> BatchFold:
    """Fold events in order over the loaded rows (table -> key -> row or None)."""
    folding = Folding(loaded, cfg)
    folding.add(events)
    return folding.finish()


class Folding:
    """A batch fold in steps: `add` events (in order, as many times as wanted), then `finish`.
    Lets the caller fold a batch a slice at a time (and do I/O in between)."""

    def __init__(self, loaded: dict[str, dict[str, Row | None]], cfg: FoldConfig) -> None:
        self.cfg = cfg
        self.result = BatchFold(before=loaded)
        self.current: dict[str, dict[str, Row | None]] = {
            t: dict(rows) for t, rows in loaded.items()
        }

    def add(
        self, events: list[Envelope], targets: list[tuple[Table, str] | None] | None = None
    ) -> None:
        """Fold `events` in order (`targets`: their routes, if the caller has them)."""
        cfg, result, current = self.cfg, self.result, self.current
        written = result.rows
        if targets is None:
            targets = [route(env) for env in events]
        stats_of = result.surveyor_stats
        for env, target in zip(events, targets, strict=True):
            if target is None:
                if env.event_type == "ComplaintEscalated":
                    r = escalation_row(env, cfg)
                    result.escalations.setdefault((r["complaint_id"], r["level"], r["clock"]), r)
                continue
            table, key = target
            name = table.name
            rows = current.get(name)
            if rows is None:
                rows = current[name] = {}
            row = rows.get(key)
            if table is JOBS:
                new, deltas = fold_job(row, env, cfg)
                if deltas:
                    day = cfg.day(env.occurred_at)
                    for sid, counter, amount in deltas:
                        if sid:
                            stats = stats_of.get((sid, day))
                            if stats is None:
                                stats = stats_of[sid, day] = {}
                            stats[counter] = stats.get(counter, 0) + amount
            elif table is CASES:
                new = fold_case(row, env, cfg)
            elif table is CALLBACKS:
                new = fold_callback(row, env, cfg)
            elif table is COMPLAINTS:
                new = fold_complaint(row, env, cfg)
            elif table is SURVEYORS:
                new = fold_surveyor(row, env)
            else:
                new = fold_discrepancy(row, env, cfg)
            rows[key] = new
            out = written.get(name)
            if out is None:
                out = written[name] = {}
            out[key] = new

    def finish(self) -> BatchFold:
        result = self.result
        loaded = result.before
        for key, after in result.rows.get(CASES.name, {}).items():
            before = loaded.get(CASES.name, {}).get(key)
            old_keys, new_keys = case_count_keys(before), case_count_keys(after)
            if old_keys == new_keys:
                continue
            for k in old_keys:
                result.case_counts[k] = result.case_counts.get(k, 0) - 1
            for k in new_keys:
                result.case_counts[k] = result.case_counts.get(k, 0) + 1
        return result


def keys_by_table(
    events: list[Envelope], targets: list[tuple[Table, str] | None] | None = None
) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for target in targets if targets is not None else map(route, events):
        if target is not None:
            out.setdefault(target[0].name, set()).add(target[1])
    return out
