"""Pure folds: cases and counters, jobs and surveyor deltas, order independence, score."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from analytics.codec import OpaquePayload, decode_envelope
from analytics.history import case_state
from analytics.projections import (
    FoldConfig,
    case_count_keys,
    fold_batch,
    fold_complaint,
    fold_job,
    period_label,
    period_start,
)
from analytics.queries import SCORE_WEIGHTS, composite, score_parts
from claimdesk.events import complaints as ce
from claimdesk.events import dispatch as de
from claimdesk.events import intake as ie
from claimdesk.events.base import Envelope, Event

T0 = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)  # 07:30 on the 26th in Shanghai
CFG = FoldConfig()


def env(e: Event, at: datetime = T0) -> Envelope:
    return Envelope(
        event_id=uuid.uuid4(),
        event_type=e.event_type,
        schema_version=e.schema_version,
        stream_id="s",
        sequence=1,
        occurred_at=at,
        recorded_at=at,
        producer=e.context,
        correlation_id=uuid.uuid4(),
        key=e.partition_key() or "s",
        payload=e,
    )


def reported(case_id: str = "C1", **kw: Any) -> ie.CaseReported:
    values: dict[str, Any] = {
        "case_id": case_id,
        "insurer_code": "PICC",
        "channel": "phone",
        "loss_type": "injury",
        "loss_time": T0,
        "loss_address": "x",
    }
    values.update(kw)
    return ie.CaseReported(**values)


def test_periods_use_iso_weeks_and_months() -> None:
    d = date(2026, 11, 26)  # a Thursday
    assert period_start(d, "week") == date(2026, 11, 23)
    assert period_label(period_start(d, "week"), "week") == "2026-W48"
    assert period_label(period_start(d, "month"), "month") == "2026-11"
    assert period_label(date(2027, 1, 1), "week") == "2026-W53"


def test_case_counted_on_its_local_day_and_moved_by_a_correction() -> None:
    result = fold_batch([env(reported())], {"cases": {"C1": None}}, CFG)
    row = result.rows["cases"]["C1"]
    assert row["report_day"] == date(2026, 11, 26)  # Shanghai, not UTC
    assert result.case_counts == {k: 1 for k in case_count_keys(row)}
    fix = ie.CaseDetailsCorrected(
        case_id="C1", changes={"insurer_code": "CPIC"}, previous={}, corrected_by="A", reason="r"
    )
    again = fold_batch([env(fix)], {"cases": {"C1": row}}, CFG)
    deltas = again.case_counts
    assert sorted(deltas.values()) == [-1, -1, -1, 1, 1, 1]
    assert {k[2] for k, n in deltas.items() if n > 0} == {"CPIC"}
    # A correction of a field that is no dimension moves nothing.
    plate = ie.CaseDetailsCorrected(
        case_id="C1", changes={"plate": "沪B"}, previous={}, corrected_by="A", reason="r"
    )
    assert fold_batch([env(plate)], {"cases": {"C1": row}}, CFG).case_counts == {}


def test_job_fold_counts_timeouts_reassignment_and_on_time_arrival() -> None:
    due = T0 + timedelta(minutes=5)
    steps = [
        de.SurveyorAssigned(
            job_id="J",
            case_id="C1",
            surveyor_id="S1",
            policy_version="v",
            reason="r",
            ack_due_at=due,
        ),
        de.AssignmentTimedOut(job_id="J", case_id="C1", surveyor_id="S1", attempt=1, deadline=due),
        de.SurveyorReassigned(
            job_id="J",
            case_id="C1",
            from_surveyor_id="S1",
            to_surveyor_id="S2",
            attempt=2,
            reason="timeout",
            ack_due_at=due,
        ),
        de.JobAcknowledged(job_id="J", case_id="C1", surveyor_id="S2"),
        de.SurveyorArrived(job_id="J", case_id="C1", surveyor_id="S2"),
        de.SurveyCompleted(job_id="J", case_id="C1", surveyor_id="S2"),
    ]
    times = [T0, T0 + timedelta(minutes=5), T0 + timedelta(minutes=5), T0 + timedelta(minutes=6),
             T0 + timedelta(minutes=50), T0 + timedelta(minutes=80)]  # fmt: skip
    row = None
    deltas: list[tuple[str, str, int]] = []
    for e, at in zip(steps, times, strict=True):
        row, d = fold_job(row, env(e, at), CFG)
        deltas.extend(d)
    assert row is not None
    assert row["surveyor_id"] == "S2" and row["timeouts"] == 1 and row["reassignments"] == 1
    assert row["first_assigned_at"] == T0 and row["acknowledged_at"] == times[3]
    assert ("S1", "timed_out", 1) in deltas and ("S2", "on_time", 1) in deltas
    assert ("S2", "survey_ms", 30 * 60 * 1000) in deltas
    _, d = fold_job(
        {**row, "arrived_at": None},
        env(
            de.SurveyorArrived(job_id="J", case_id="C1", surveyor_id="S2"), T0 + timedelta(hours=3)
        ),
        CFG,
    )
    assert ("S2", "on_time", 1) not in d and ("S2", "arrived", 1) in d


def test_complaint_events_fold_the_same_in_either_order() -> None:
    received = env(
        ce.ComplaintReceived(
            complaint_id="Q",
            case_id="C1",
            category="delay",
            severity="low",
            channel="phone",
            caller_name="n",
            caller_phone="p",
            matter="m",
            owner="A",
        )
    )
    triaged = env(
        ce.ComplaintTriaged(complaint_id="Q", valid=True, reason="r", triaged_by="T"),
        T0 + timedelta(minutes=1),
    )
    a = fold_complaint(fold_complaint(None, received, CFG), triaged, CFG)
    b = fold_complaint(fold_complaint(None, triaged, CFG), received, CFG)
    assert a == b and a["valid"] is True and a["case_id"] == "C1"
    assert a["answer_due_at"] == T0 + CFG.default_answer_time


def test_unknown_event_type_decodes_to_an_opaque_payload() -> None:
    raw = {
        "event_id": str(uuid.uuid4()),
        "event_type": "NotInventedYet",
        "schema_version": 3,
        "stream_id": "s",
        "sequence": 1,
        "occurred_at": T0.isoformat(),
        "recorded_at": T0.isoformat(),
        "producer": "intake",
        "correlation_id": str(uuid.uuid4()),
        "key": "C1",
        "payload": {"case_id": "C1", "x": [1, 2]},
    }
    e = decode_envelope(raw)
    assert isinstance(e.payload, OpaquePayload) and e.payload.model_extra == {
        "case_id": "C1",
        "x": [1, 2],
    }
    assert fold_batch([e], {}, CFG).rows == {}


def test_composite_score_weights_and_missing_components() -> None:
    assert abs(sum(SCORE_WEIGHTS.values()) - 1) < 1e-9
    perfect = {"on_time_arrival": 1.0, "acknowledgement": 1.0, "survey_time": 1.0,
               "callback_satisfaction": 1.0, "complaints": 1.0}  # fmt: skip
    assert composite(perfect) == 100.0
    assert composite(dict.fromkeys(perfect)) is None
    # Only on-time (0.5) and satisfaction (1.0) known: weights renormalised over those two.
    assert composite({"on_time_arrival": 0.5, "callback_satisfaction": 1.0}) == 75.0
    parts = score_parts(
        {"assigned": 10, "acknowledged": 8, "arrived": 8, "on_time": 6, "completed": 8,
         "avg_survey_minutes": 75.0, "avg_satisfaction": 4.0, "valid_complaints": 1}
    )  # fmt: skip
    assert parts == {
        "on_time_arrival": 0.75,
        "acknowledgement": 0.8,
        "survey_time": 0.5,
        "callback_satisfaction": 0.75,
        "complaints": 0.375,
    }


def test_case_state_as_of_history() -> None:
    items = [
        {"type": "CaseReported", "occurred_at": T0, "payload": {"insurer_code": "PICC"}},
        {"type": "SurveyorAssigned", "occurred_at": T0, "payload": {"surveyor_id": "S1", "job_id": "J"}},
        {"type": "ComplaintReceived", "occurred_at": T0, "payload": {"complaint_id": "Q"}},
        {"type": "JobDeclined", "occurred_at": T0, "payload": {"surveyor_id": "S1"}},
    ]  # fmt: skip
    s = case_state("C1", items[:3])
    assert (s["status"], s["surveyor_id"], len(s["open_complaints"])) == ("assigned", "S1", 1)
    s = case_state("C1", items)
    assert (s["status"], s["surveyor_id"]) == ("queued", None)
    cancelled = [*items, {"type": "CaseCancelled", "occurred_at": T0, "payload": {}}]
    assert case_state("C1", cancelled)["status"] == "cancelled"


def test_complaint_deadline_follows_the_service_clocks() -> None:
    base = {"complaint_id": "Q", "case_id": "C1"}
    due1, due2 = T0 + timedelta(hours=2), T0 + timedelta(hours=8)
    steps: list[tuple[Event, datetime]] = [
        (ce.ComplaintReceived(**base, category="delay", severity="low", channel="phone",
                              caller_name="n", caller_phone="p", matter="m", owner="A"), T0),
        (ce.ComplaintClockStarted(**base, clock="first_response", policy_name="p",
                                  policy_version=1, budget_s=7200, started_at=T0, due_at=due1), T0),
        (ce.ComplaintClockStarted(**base, clock="resolution", policy_name="p",
                                  policy_version=1, budget_s=28800, started_at=T0, due_at=due2), T0),
    ]  # fmt: skip
    row = None
    for e, at in steps:
        row = fold_complaint(row, env(e, at), CFG)
    assert row is not None and row["answer_due_at"] == due1  # the nearest running clock
    row = fold_complaint(
        row,
        env(ce.ComplaintClockStopped(**base, clock="first_response", met=True, consumed_s=60)),
        CFG,
    )
    assert row["answer_due_at"] == due2
    row = fold_complaint(
        row, env(ce.ComplaintClockBreached(**base, clock="resolution", due_at=due2)), CFG
    )
    resolved = ce.ComplaintResolved(**base, outcome="o", feedback_to_customer="f", resolved_by="T")
    row = fold_complaint(row, env(resolved, due2 + timedelta(hours=1)), CFG)
    assert row["resolved_on_time"] is False and row["breaches"] == 1
    row = fold_complaint(row, env(ce.ComplaintReopened(**base, reason="r", reopened_by="M")), CFG)
    assert row["resolved_at"] is None and row["reopened"] == 1


def test_raw_payload_fast_path_folds_like_typed_events() -> None:
    from analytics.codec import decode_fast

    due = T0 + timedelta(minutes=5)
    e = de.SurveyorAssigned(
        job_id="J", case_id="C1", surveyor_id="S1", policy_version="v", reason="r", ack_due_at=due
    )
    typed = env(e)
    fast = decode_fast(typed.model_dump_json().encode())
    assert fast.event_id == typed.event_id and fast.occurred_at == typed.occurred_at
    assert fold_job(None, fast, CFG) == fold_job(None, typed, CFG)
    assert fold_job(None, fast, CFG)[0]["ack_due_at"] == due


def _wire(typed: Envelope, trace_context: dict[str, str] | None = None) -> bytes:
    """The message the outbox relay publishes for `typed` (claimdesk.eventstore.wire_message)."""
    from claimdesk.eventstore import wire_message

    row = typed.model_dump(exclude={"payload"})
    row["payload"] = typed.payload.model_dump_json()
    row["trace_context"] = trace_context or {}
    return wire_message(row)[1]


def test_decode_fast_keeps_the_published_payload_text() -> None:
    import json

    from analytics.codec import RawPayload, decode_fast
    from analytics.folder import history_row

    e = ie.CaseReported(
        case_id="C9",
        insurer_code="PICC",
        channel="phone",
        loss_type="injury",
        loss_time=T0,
        loss_address="上海市浦东新区",
        plate="沪A12345",
        region="浦东",
        description='a "quoted", "payload": {} and 追尾',
    )
    typed = env(e)
    message = _wire(typed, {"traceparent": "00-abc-def-01", "payload": "x"})
    fast = decode_fast(message)
    assert isinstance(fast.payload, RawPayload)
    assert fast.payload.payload_json == typed.payload.model_dump_json()  # as published
    assert fast.payload.data == json.loads(message)["payload"]
    assert fast.event_id == typed.event_id and fast.correlation_id == typed.correlation_id
    assert fast.trace_context == {"traceparent": "00-abc-def-01", "payload": "x"}
    row = history_row(fast)
    assert row["case_id"] == "C9" and row["known"] and row["context"] == "intake"

    # Other layouts (spacing, payload not last) parse whole and give the same envelope.
    whole = json.loads(message)
    for other in (
        json.dumps(whole).encode(),
        json.dumps({"payload": whole["payload"], **{k: v for k, v in whole.items()}}).encode(),
        json.dumps(whole, separators=(",", ":")).encode(),
    ):
        again = decode_fast(other)
        assert again.payload.data == fast.payload.data
        assert json.loads(again.payload.payload_json) == json.loads(fast.payload.payload_json)
        assert (again.event_id, again.occurred_at, again.key) == (
            fast.event_id,
            fast.occurred_at,
            fast.key,
        )


def test_history_copy_text_escapes_what_copy_would_misread() -> None:
    import re

    from analytics.codec import decode_fast
    from analytics.folder import copy_text, history_record

    def unescape(field: str) -> str | None:
        if field == "\\N":
            return None
        return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r"}.get(m[1], m[1]), field)

    e = ie.CaseDetailsCorrected(
        case_id="C\t1", changes={"plate": "沪A\\1\n"}, previous={}, corrected_by="a\r", reason="x"
    )
    typed = env(e)
    typed = typed.model_copy(update={"key": "k\\\t", "actor": "tab\there"})
    plain = decode_fast(_wire(env(ie.CaseCancelled(case_id="C2", reason="r", cancelled_by="u"))))
    for fast in (decode_fast(_wire(typed)), plain):
        (line,) = copy_text([fast]).splitlines()
        fields = [unescape(f) for f in line.split("\t")]
        expected = [v.isoformat() if isinstance(v, datetime) else v for v in history_record(fast)]
        expected = [
            ("t" if v else "f") if isinstance(v, bool) else (None if v is None else str(v))
            for v in expected
        ]
        assert fields == expected


def test_history_copy_text_writes_a_missing_key_as_null() -> None:
    from analytics.codec import decode_fast
    from analytics.folder import copy_text

    typed = env(ie.CaseCancelled(case_id="", reason="r", cancelled_by="u"))
    message = json.loads(_wire(typed))
    message["key"] = None
    fast = decode_fast(json.dumps(message, separators=(",", ":"), ensure_ascii=False))
    fields = copy_text([fast]).rstrip("\n").split("\t")
    assert fields[1] == "\\N" and fields[14] == "\\N"  # case_id, key
    assert fields[2] == typed.stream_id  # the subject falls back to the stream


def test_decode_fast_stores_the_payload_text_as_published_whatever_its_spelling() -> None:
    """Whatever the payload's spelling (spacing, other number forms) or the envelope's layout
    (a member after the payload, a duplicate member: the last one counts, as in any JSON
    reader), the history stores the payload's text as published and the folded dict is the
    envelope's own payload."""
    import json

    from analytics.codec import decode_fast

    typed = env(ie.CaseCancelled(case_id="C3", reason="r", cancelled_by="u"))
    message = _wire(typed)
    head, _, payload = message.rpartition(b',"payload":')
    fast = decode_fast(message)
    assert fast.payload.payload_json.encode() == payload[:-1]
    for other in (b'{"case_id": "C3", "reason": "r", "x": 1E2}', b'{"case_id":"C3","x":1.50}'):
        got = decode_fast(head + b',"payload":' + other + b"}")
        assert got.payload.payload_json.encode() == other  # as published
        assert got.payload.data == json.loads(other)
        assert got.payload.copy_line.endswith(b"\t" + other + b"\n")
    # A member after the payload (here a duplicate of an earlier one).
    odd = head + b',"payload":{"case_id":"C3"},"key":"K2"}'
    got = decode_fast(odd)
    assert got.key == "K2" and got.payload.data == {"case_id": "C3"}
    assert got.payload.payload_json == '{"case_id":"C3"}'


def test_decode_fast_refuses_what_is_not_an_envelope() -> None:
    """A ValueError (the consumer dead-letters the message), never a half-read envelope."""
    from analytics.codec import decode_fast

    good = json.loads(_wire(env(ie.CaseCancelled(case_id="C4", reason="r", cancelled_by="u"))))
    broken: list[bytes | str] = [
        b"not json",
        b"[]",
        json.dumps({k: v for k, v in good.items() if k != "event_id"}),
        json.dumps({**good, "payload": ["not", "an", "object"]}),
        json.dumps({**good, "sequence": "three"}),
        json.dumps({**good, "occurred_at": "2026-01-05T10:00:00", "recorded_at": "x"}),
        json.dumps({**good, "event_id": "not-a-uuid"}),
    ]
    for message in broken:
        with pytest.raises(ValueError, match=r"envelope|time zone|UUID|isoformat"):
            decode_fast(message)
    assert decode_fast(json.dumps({**good, "sequence": "3"})).sequence == 3  # as a string
