"""The job lifecycle as given events / when command / then events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from claimdesk.errors import Conflict, Forbidden, InvalidInput
from claimdesk.events.dispatch import (
    AssignmentTimedOut,
    CaseClosed,
    JobAcknowledged,
    JobCancelled,
    JobDeclined,
    JobOpened,
    SurveyCompleted,
    SurveyorArrived,
    SurveyorAssigned,
    SurveyorEnRoute,
    SurveyorReassigned,
)
from dispatch import domain
from dispatch.domain import Step, decide_step, replay

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
OPENED = JobOpened(
    job_id="J-C1", case_id="C1", insurer_code="PICC", loss_type="vehicle_own_damage",
    loss_address="x",
)  # fmt: skip
ASSIGNED = SurveyorAssigned(
    job_id="J-C1", case_id="C1", surveyor_id="S1", policy_version="v", reason="r",
    ack_due_at=NOW + timedelta(minutes=5),
)  # fmt: skip


def step(name: str, who: str | None = "S1", **kw: object) -> Step:
    return Step(name=name, actor_surveyor=who, actor=f"surveyor:{who}", **kw)  # type: ignore[arg-type]


def test_happy_path_through_every_status() -> None:
    events = [OPENED, ASSIGNED]
    for name, typ, status in [
        ("ack", JobAcknowledged, "acknowledged"),
        ("en-route", SurveyorEnRoute, "en_route"),
        ("arrived", SurveyorArrived, "arrived"),
        ("complete", SurveyCompleted, "survey_completed"),
        ("close", CaseClosed, "closed"),
    ]:
        new = decide_step(replay(events), step(name, loss_estimate=100.0, photo_count=3), NOW)
        assert [type(e) for e in new] == [typ]
        events += new
        assert replay(events).status == status
    done = next(e for e in events if isinstance(e, SurveyCompleted))
    assert done.loss_estimate == 100.0 and done.photo_count == 3


def test_illegal_step_lists_the_allowed_ones() -> None:
    with pytest.raises(Conflict) as exc:
        decide_step(replay([OPENED, ASSIGNED]), step("arrived"), NOW)
    assert exc.value.details["allowed"] == ["ack", "decline", "assign", "cancel"]
    assert "allowed now: ack, decline" in exc.value.message


def test_late_ack_after_reassignment_says_the_job_moved() -> None:
    moved = SurveyorReassigned(
        job_id="J-C1", case_id="C1", from_surveyor_id="S1", to_surveyor_id="S2", attempt=2,
        reason="timed out", ack_due_at=NOW,
    )  # fmt: skip
    timed = AssignmentTimedOut(
        job_id="J-C1", case_id="C1", surveyor_id="S1", attempt=1, deadline=NOW
    )
    state = replay([OPENED, ASSIGNED, timed, moved])
    with pytest.raises(Conflict) as exc:
        decide_step(state, step("ack", "S1"), NOW)
    assert "moved" in exc.value.message and exc.value.details["now_assigned_to"] == "S2"
    with pytest.raises(Forbidden):
        decide_step(state, step("ack", "S9"), NOW)
    assert decide_step(state, step("ack", "S2"), NOW)[0].surveyor_id == "S2"  # type: ignore[attr-defined]


def test_timeout_only_for_the_current_unacknowledged_attempt() -> None:
    state = replay([OPENED, ASSIGNED])
    assert domain.decide_timeout(state, 1, NOW) == []  # before the deadline
    late = NOW + timedelta(minutes=6)
    [ev] = domain.decide_timeout(state, 1, late)
    assert isinstance(ev, AssignmentTimedOut) and ev.attempt == 1
    assert domain.decide_timeout(state, 2, late) == []  # a stale timer
    acked = replay(
        [OPENED, ASSIGNED, JobAcknowledged(job_id="J-C1", case_id="C1", surveyor_id="S1")]
    )
    assert domain.decide_timeout(acked, 1, late) == []


def test_decline_needs_a_reason_and_the_assignee() -> None:
    state = replay([OPENED, ASSIGNED])
    with pytest.raises(InvalidInput):
        domain.decide_decline(state, "S1", "  ")
    [ev] = domain.decide_decline(state, "S1", "car broke down")
    assert isinstance(ev, JobDeclined) and ev.reason == "car broke down"
    with pytest.raises(Forbidden):
        domain.decide_decline(state, "S2", "no")


def test_cancel_open_job_but_not_a_finished_one() -> None:
    [ev] = domain.decide_cancel(replay([OPENED, ASSIGNED]), "withdrawn")
    assert isinstance(ev, JobCancelled) and ev.surveyor_id == "S1"
    closed = [OPENED, ASSIGNED, CaseClosed(job_id="J-C1", case_id="C1", closed_by="x")]
    assert domain.decide_cancel(replay(closed), "late") == []


def test_negative_loss_estimate_is_refused() -> None:
    events = [OPENED, ASSIGNED, JobAcknowledged(job_id="J-C1", case_id="C1", surveyor_id="S1")]
    events += [SurveyorEnRoute(job_id="J-C1", case_id="C1", surveyor_id="S1")]
    events += [SurveyorArrived(job_id="J-C1", case_id="C1", surveyor_id="S1")]
    with pytest.raises(InvalidInput):
        decide_step(replay(events), step("complete", loss_estimate=-1.0), NOW)
