"""The complaint aggregate: given events, when a command, then events (no IO)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from claimdesk.errors import Conflict, InvalidInput, NotFound
from claimdesk.events.base import Event
from claimdesk.events.complaints import ComplaintReceived
from complaints import domain
from complaints.sla import Clocks, ClockSpec, SlaPolicy, StoredPolicy, choose_policy

T0 = datetime(2026, 1, 5, 2, tzinfo=UTC)
POLICY = StoredPolicy(
    "fast",
    3,
    SlaPolicy(
        clocks=Clocks(
            first_response=ClockSpec(duration=10, warn_before=4),
            resolution=ClockSpec(duration=60),
            regulatory=ClockSpec(duration=120, max_extended=240),
        ),
        re_escalate_after=5,
    ),
)


def received(**kw: object) -> ComplaintReceived:
    values: dict[str, object] = {
        "complaint_id": "CP1",
        "case_id": "C-1",
        "category": "delay",
        "severity": "high",
        "channel": "phone",
        "caller_name": "王",
        "caller_phone": "13800138000",
        "matter": "迟到",
        "owner": "A001",
    }
    values.update(kw)
    return ComplaintReceived(**values)  # type: ignore[arg-type]


class History:
    """Events with the instants they happened at, folded like the store would."""

    def __init__(self) -> None:
        self.events: list[tuple[Event, datetime]] = []

    def add(self, events: list[Event], at: datetime) -> list[Event]:
        self.events += [(e, at) for e in events]
        return events

    @property
    def state(self) -> domain.Complaint:
        return domain.fold(self.events)


def filed(at: datetime = T0) -> History:
    h = History()
    h.add(domain.decide_receive(received(), POLICY, at), at)
    return h


def types(events: list[Event]) -> list[str]:
    return [e.event_type for e in events]


def test_receiving_starts_three_clocks_from_the_policy() -> None:
    events = domain.decide_receive(received(), POLICY, T0)
    assert types(events) == ["ComplaintReceived"] + ["ComplaintClockStarted"] * 3
    first = events[1]
    assert first.clock == "first_response"  # type: ignore[attr-defined]
    assert first.due_at == T0 + timedelta(seconds=10)  # type: ignore[attr-defined]
    assert first.warn_at == T0 + timedelta(seconds=6)  # type: ignore[attr-defined]
    assert first.policy_version == 3  # type: ignore[attr-defined]
    assert events[0].promised_answer_at == T0 + timedelta(seconds=60)  # type: ignore[attr-defined]
    s = domain.fold([(e, T0) for e in events])
    assert s.status == "received"
    assert s.owner == "A001"
    assert s.clocks["regulatory"].max_extended_s == 240


def test_timer_plan_arms_warn_and_breach_for_each_clock() -> None:
    events = domain.decide_receive(received(), POLICY, T0)
    after = domain.apply_all(domain.Complaint(), events, T0)
    plan = domain.timer_plan(domain.Complaint(), after, events, T0)
    scheduled = {(op.timer_id, op.due_at) for op in plan if op.op == "schedule"}
    assert scheduled == {
        ("cmp:CP1:first_response:1:warn", T0 + timedelta(seconds=6)),
        ("cmp:CP1:first_response:1:breach", T0 + timedelta(seconds=10)),
        ("cmp:CP1:resolution:1:breach", T0 + timedelta(seconds=60)),
        ("cmp:CP1:regulatory:1:breach", T0 + timedelta(seconds=120)),
    }


def test_triage_twice_or_unknown_is_refused() -> None:
    h = filed()
    h.add(domain.decide_triage(h.state, valid=True, reason="r", assignee="T1", by="A1", now=T0), T0)
    with pytest.raises(Conflict):
        domain.decide_triage(h.state, valid=False, reason="r", assignee=None, by="A1", now=T0)
    with pytest.raises(NotFound):
        domain.decide_triage(
            domain.Complaint(), valid=False, reason="r", assignee=None, by="A", now=T0
        )
    with pytest.raises(InvalidInput):
        domain.decide_triage(filed().state, valid=True, reason="r", assignee=None, by="A", now=T0)


def test_stale_timers_do_nothing() -> None:
    h = filed()
    at = T0 + timedelta(seconds=3)
    h.add(domain.decide_pause(h.state, "wait", "A1"), at)
    # the breach timer of generation 1 fires late: the clock is paused, nothing happens
    late = T0 + timedelta(seconds=30)
    assert (
        domain.decide_timer(
            h.state, clock_name="first_response", generation=1, phase="breach", level=0, now=late
        )
        == []
    )
    h.add(domain.decide_resume(h.state, "", "A1", late), late)
    s = h.state
    assert s.clocks["first_response"].generation == 2
    assert s.clocks["first_response"].due_at() == late + timedelta(seconds=7)
    # generation 1 is still stale after the resume
    assert (
        domain.decide_timer(
            s,
            clock_name="first_response",
            generation=1,
            phase="breach",
            level=0,
            now=late + timedelta(seconds=8),
        )
        == []
    )
    # too early for generation 2
    assert (
        domain.decide_timer(
            s,
            clock_name="first_response",
            generation=2,
            phase="breach",
            level=0,
            now=late + timedelta(seconds=6),
        )
        == []
    )
    fired = domain.decide_timer(
        s,
        clock_name="first_response",
        generation=2,
        phase="breach",
        level=0,
        now=late + timedelta(seconds=7),
    )
    assert types(fired) == ["ComplaintClockBreached", "ComplaintEscalated"]


def test_breach_escalates_one_level_and_never_twice() -> None:
    h = filed()
    at = T0 + timedelta(seconds=10)
    esc = h.add(
        domain.decide_timer(
            h.state, clock_name="first_response", generation=1, phase="breach", level=0, now=at
        ),
        at,
    )
    assert esc[1].level == 1 and esc[1].escalated_to == "team_lead"  # type: ignore[attr-defined]
    assert (
        domain.decide_timer(
            h.state, clock_name="first_response", generation=1, phase="breach", level=0, now=at
        )
        == []
    )
    # re-escalation for level 1 goes to supervisor once; a duplicate for level 1 is ignored
    at2 = at + timedelta(seconds=5)
    up = h.add(
        domain.decide_timer(
            h.state, clock_name="first_response", generation=1, phase="reescalate", level=1, now=at2
        ),
        at2,
    )
    assert [(e.level, e.escalated_to) for e in up] == [(2, "supervisor")]  # type: ignore[attr-defined]
    assert (
        domain.decide_timer(
            h.state, clock_name="first_response", generation=1, phase="reescalate", level=1, now=at2
        )
        == []
    )
    h.add(
        domain.decide_timer(
            h.state, clock_name="first_response", generation=1, phase="reescalate", level=2, now=at2
        ),
        at2,
    )
    assert h.state.level == 3
    assert (
        domain.decide_timer(
            h.state, clock_name="first_response", generation=1, phase="reescalate", level=3, now=at2
        )
        == []
    )
    # a later breach at the top of the ladder is recorded but escalates no further
    at3 = T0 + timedelta(seconds=60)
    late = domain.decide_timer(
        h.state, clock_name="resolution", generation=1, phase="breach", level=0, now=at3
    )
    assert types(late) == ["ComplaintClockBreached"]


def test_warning_only_once_and_not_after_breach() -> None:
    h = filed()
    at = T0 + timedelta(seconds=6)
    warned = h.add(
        domain.decide_timer(
            h.state, clock_name="first_response", generation=1, phase="warn", level=0, now=at
        ),
        at,
    )
    assert warned[0].notified == ["A001"]  # type: ignore[attr-defined]
    assert (
        domain.decide_timer(
            h.state, clock_name="first_response", generation=1, phase="warn", level=0, now=at
        )
        == []
    )


def test_resolution_stops_clocks_and_met_depends_on_time() -> None:
    h = filed()
    h.add(domain.decide_triage(h.state, valid=True, reason="r", assignee="T1", by="A1", now=T0), T0)
    at = T0 + timedelta(seconds=70)
    events = domain.decide_resolve(h.state, "o", "f", "T1", at)
    stopped = {e.clock: e.met for e in events if e.event_type == "ComplaintClockStopped"}  # type: ignore[attr-defined]
    assert stopped == {"resolution": False, "regulatory": True}


def test_invalid_complaint_cannot_be_resolved_or_improved() -> None:
    h = filed()
    h.add(
        domain.decide_triage(h.state, valid=False, reason="r", assignee=None, by="A1", now=T0), T0
    )
    assert h.state.status == "closed"
    with pytest.raises(Conflict):
        domain.decide_resolve(h.state, "o", "f", "T1", T0)
    with pytest.raises(Conflict):
        domain.decide_improvement(
            h.state, improvement_id="I", action="a", owner="T", due=None, now=T0
        )


def test_reopen_starts_a_new_resolution_run() -> None:
    h = filed()
    h.add(domain.decide_triage(h.state, valid=True, reason="r", assignee="T1", by="A1", now=T0), T0)
    h.add(domain.decide_resolve(h.state, "o", "f", "T1", T0), T0)
    at = T0 + timedelta(seconds=100)
    before = h.state
    events = h.add(
        domain.decide_feedback(
            before, satisfied=False, comment="no", reopen=True, by="A1", policy=POLICY, now=at
        ),
        at,
    )
    after = h.state
    assert after.status == "reopened"
    assert after.clocks["resolution"].generation == 2
    assert after.clocks["resolution"].due_at() == at + timedelta(seconds=60)
    plan = domain.timer_plan(before, after, events, at)
    assert {op.timer_id for op in plan if op.op == "schedule"} == {"cmp:CP1:resolution:2:breach"}


def test_extension_rules() -> None:
    h = filed()
    with pytest.raises(InvalidInput):
        domain.decide_extend(h.state, "r", 300, "A1", T0)
    with pytest.raises(InvalidInput):
        domain.decide_extend(h.state, "r", 100, "A1", T0)
    ext = h.add(domain.decide_extend(h.state, "r", None, "A1", T0), T0)
    assert ext[0].due_at == T0 + timedelta(seconds=240)  # type: ignore[attr-defined]
    with pytest.raises(Conflict):
        domain.decide_extend(h.state, "r", None, "A1", T0)


def test_handover_names_a_different_owner() -> None:
    h = filed()
    with pytest.raises(InvalidInput):
        domain.decide_handover(
            h.state, item_type="complaint", item_id="CP1", to="A001", reason="r", by="A1"
        )
    h.add(
        domain.decide_handover(
            h.state, item_type="complaint", item_id="CP1", to="A7", reason="r", by="A1"
        ),
        T0,
    )
    assert h.state.owner == "A7"


def test_policy_choice_prefers_specific_then_priority() -> None:
    def pol(name: str, prio: int = 0, **match: list[str]) -> StoredPolicy:
        return StoredPolicy(
            name,
            1,
            POLICY.policy.model_copy(
                update={"priority": prio, "match": POLICY.policy.match.model_copy(update=match)}
            ),
        )

    policies = [
        pol("default"),
        pol("by-cat", categories=["delay"]),
        pol("by-sev", 9, severities=["high"]),
        pol("picc", insurers=["PICC"]),
        pol("picc-delay", insurers=["PICC"], categories=["delay"]),
    ]
    assert choose_policy(policies, "PICC", "delay", "high").name == "picc-delay"
    assert choose_policy(policies, "PICC", "damage", "high").name == "picc"
    assert choose_policy(policies, "CPIC", "delay", "high").name == "by-cat"
    assert choose_policy(policies, None, "other", "high").name == "by-sev"
    assert choose_policy(policies, None, "other", "low").name == "default"
    assert choose_policy([], None, "other", "low").version == 0
