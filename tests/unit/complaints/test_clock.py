"""Pure deadline arithmetic: business calendars, durations, pause and resume."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from complaints.clock import (
    Calendar,
    CalendarError,
    ClockState,
    add_counted,
    consumed_at,
    counted_between,
    due_at,
    extend,
    parse_duration,
    pause,
    remaining_at,
    resume,
    start_clock,
    warn_at,
)

SH = ZoneInfo("Asia/Shanghai")
CAL = Calendar(
    holidays=frozenset(date(2026, 10, d) for d in range(1, 10)),  # a long holiday, 1-9 Oct
    extra_workdays=frozenset({date(2026, 10, 10)}),  # a Saturday make-up day (调休)
)


def sh(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:  # noqa: PLR0917
    return datetime(y, mo, d, h, mi, s, tzinfo=SH)


# -- add_counted ---------------------------------------------------------------------------------


def test_wall_clock_adds_plain_seconds() -> None:
    t = datetime(2026, 1, 5, 9, tzinfo=UTC)
    assert add_counted(t, 90, None) == t + timedelta(seconds=90)
    assert counted_between(t, t + timedelta(hours=30), None) == 30 * 3600


def test_within_one_working_day() -> None:
    # Monday 2026-01-05 10:00 Shanghai + 2 h = 12:00
    assert add_counted(sh(2026, 1, 5, 10), 7200, CAL) == sh(2026, 1, 5, 12)


def test_start_before_opening_counts_from_opening() -> None:
    assert add_counted(sh(2026, 1, 5, 6), 3600, CAL) == sh(2026, 1, 5, 10)


def test_rolls_over_evening_to_next_morning() -> None:
    # Monday 17:00 + 2 h = 1 h Monday + 1 h Tuesday -> Tuesday 10:00
    assert add_counted(sh(2026, 1, 5, 17), 7200, CAL) == sh(2026, 1, 6, 10)


def test_friday_evening_rolls_over_the_weekend() -> None:
    # Friday 2026-01-09 17:30 + 1 h -> Monday 2026-01-12 09:30
    assert add_counted(sh(2026, 1, 9, 17, 30), 3600, CAL) == sh(2026, 1, 12, 9, 30)


def test_started_on_a_weekend() -> None:
    assert add_counted(sh(2026, 1, 10, 12), 60, CAL) == sh(2026, 1, 12, 9, 1)


def test_holidays_are_skipped_and_make_up_days_count() -> None:
    # Wed 2026-09-30 17:00 + 2 h: 1 h Wed, 1-9 Oct are holidays, Sat 10-10 is a make-up day
    assert add_counted(sh(2026, 9, 30, 17), 7200, CAL) == sh(2026, 10, 10, 10)


def test_exact_day_end_is_the_due_instant() -> None:
    assert add_counted(sh(2026, 1, 5, 9), 9 * 3600, CAL) == sh(2026, 1, 5, 18)


def test_five_business_days() -> None:
    five = 5 * CAL.day_seconds
    # Monday 14:00 + five working days -> next Monday 14:00
    assert add_counted(sh(2026, 1, 5, 14), five, CAL) == sh(2026, 1, 12, 14)


def test_zero_seconds_is_the_start() -> None:
    t = sh(2026, 1, 10, 3)
    assert add_counted(t, 0, CAL) == t


def test_result_is_utc() -> None:
    assert add_counted(sh(2026, 1, 5, 10), 60, CAL).tzinfo == UTC


def test_calendar_without_work_is_an_error() -> None:
    with pytest.raises(CalendarError):
        add_counted(sh(2026, 1, 5), 60, Calendar(weekdays=frozenset()))


def test_custom_hours_and_time_zone() -> None:
    cal = Calendar(timezone="Europe/Berlin", start=time(8), end=time(12), weekdays=frozenset({1}))
    start = datetime(2026, 1, 5, 11, tzinfo=ZoneInfo("Europe/Berlin"))
    assert add_counted(start, 2 * 3600, cal) == datetime(
        2026, 1, 12, 9, tzinfo=ZoneInfo("Europe/Berlin")
    )


# -- counted_between ----------------------------------------------------------------------------


def test_counted_between_over_a_weekend_and_holidays() -> None:
    assert counted_between(sh(2026, 1, 9, 17), sh(2026, 1, 12, 10), CAL) == 2 * 3600
    assert counted_between(sh(2026, 9, 30, 17), sh(2026, 10, 10, 10), CAL) == 2 * 3600
    assert counted_between(sh(2026, 1, 10), sh(2026, 1, 11, 23), CAL) == 0
    assert counted_between(sh(2026, 1, 6), sh(2026, 1, 5), CAL) == 0


@pytest.mark.parametrize(
    ("start", "seconds"),
    [
        (sh(2026, 1, 5, 10), 1),
        (sh(2026, 1, 9, 17, 59, 59), 5),
        (sh(2026, 9, 29, 8), 3 * 9 * 3600 + 17),
        (sh(2026, 12, 31, 23), 40 * 3600),
    ],
)
def test_add_and_between_are_inverse(start: datetime, seconds: float) -> None:
    end = add_counted(start, seconds, CAL)
    assert counted_between(start, end, CAL) == pytest.approx(seconds)


# -- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90),
        (1.5, 1.5),
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("4h", 14400),
        ("1d12h", 129600),
        ("15d", 15 * 86400),
        ({"days": 15}, 15 * 86400),
        ({"seconds": 30}, 30),
        ({"hours": 1, "minutes": 30}, 5400),
        ("2w", 14 * 86400),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


def test_business_days_are_working_days() -> None:
    assert parse_duration({"days": 2}, business_day_s=9 * 3600) == 18 * 3600
    assert parse_duration("1w", business_day_s=9 * 3600) == 45 * 3600


@pytest.mark.parametrize("bad", [0, -5, "", "abc", "5x", "5d junk", {"years": 1}, {}, True, None])
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


# -- pausable clocks ----------------------------------------------------------------------------


def test_running_clock_due_and_warning() -> None:
    t0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
    c = start_clock(t0, 100, warn_before_s=20)
    assert due_at(c) == t0 + timedelta(seconds=100)
    assert warn_at(c) == t0 + timedelta(seconds=80)
    assert remaining_at(c, t0 + timedelta(seconds=130)) == -30


def test_pause_and_resume_shift_the_due_time_by_the_pause() -> None:
    t0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
    c = start_clock(t0, 100, warn_before_s=20)
    c = pause(c, t0 + timedelta(seconds=30))
    assert c.consumed_s == 30
    assert due_at(c) is None
    assert warn_at(c) is None
    # time passes while paused: nothing is consumed
    assert consumed_at(c, t0 + timedelta(hours=5)) == 30
    c = resume(c, t0 + timedelta(seconds=530))
    assert due_at(c) == t0 + timedelta(seconds=600)
    assert warn_at(c) == t0 + timedelta(seconds=580)
    # pause twice, resume twice: idempotent
    assert (
        pause(pause(c, t0 + timedelta(seconds=540)), t0 + timedelta(seconds=999)).consumed_s == 40
    )
    assert resume(c, t0 + timedelta(days=1)) == c


def test_pause_after_warning_point_gives_no_new_warning() -> None:
    t0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
    c = pause(start_clock(t0, 100, warn_before_s=20), t0 + timedelta(seconds=90))
    c = resume(c, t0 + timedelta(seconds=200))
    assert warn_at(c) is None
    assert due_at(c) == t0 + timedelta(seconds=210)


def test_pause_resume_on_a_business_clock() -> None:
    c = start_clock(sh(2026, 1, 9, 17), 2 * 3600, calendar=CAL)  # Friday 17:00, 2 working hours
    assert due_at(c) == sh(2026, 1, 12, 10)
    c = pause(c, sh(2026, 1, 9, 17, 30))  # 30 min used
    assert c.consumed_s == 1800
    c = resume(c, sh(2026, 1, 12, 17))  # resumed Monday 17:00: 1 h today + 30 min Tuesday
    assert due_at(c) == sh(2026, 1, 13, 9, 30)


def test_overdue_clock_due_is_its_run_start_when_budget_is_spent() -> None:
    t0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
    c = pause(start_clock(t0, 10), t0 + timedelta(seconds=50))
    c = resume(c, t0 + timedelta(seconds=60))
    assert due_at(c) == t0 + timedelta(seconds=60)
    assert remaining_at(c, t0 + timedelta(seconds=70)) == -50


def test_extend_moves_the_due_time() -> None:
    t0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
    c = extend(start_clock(t0, 15 * 86400, warn_before_s=2 * 86400), 30 * 86400)
    assert due_at(c) == t0 + timedelta(days=30)
    assert warn_at(c) == t0 + timedelta(days=28)


def test_clock_state_is_immutable() -> None:
    c = ClockState(10)
    with pytest.raises(AttributeError):
        c.budget_s = 5  # type: ignore[misc]
