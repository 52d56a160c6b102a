"""Deadline arithmetic: pure functions over business calendars and pausable clocks.

No IO and no clock reads: every function takes the instant it reasons about. A clock has a
budget (seconds of counted time), the counted time consumed before its current run, and the
instant its current run started (None while paused). Counted time is either wall-clock time
(24/7) or business time: only the working window of working days in the calendar's time
zone, minus holidays, plus make-up working days (调休).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

MAX_SCAN_DAYS = 3 * 366
"""How far a calendar is searched for working time before giving up (a calendar with none)."""


class CalendarError(ValueError):
    """The calendar has no working time within MAX_SCAN_DAYS of the instant asked about."""


@dataclass(frozen=True)
class Calendar:
    """Working days and hours. `weekdays` are ISO numbers (1 = Monday ... 7 = Sunday)."""

    timezone: str = "Asia/Shanghai"
    start: time = time(9, 0)
    end: time = time(18, 0)
    weekdays: frozenset[int] = frozenset({1, 2, 3, 4, 5})
    holidays: frozenset[date] = frozenset()
    extra_workdays: frozenset[date] = frozenset()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def day_seconds(self) -> float:
        return (
            datetime.combine(date.min, self.end) - datetime.combine(date.min, self.start)
        ).total_seconds()

    def is_workday(self, d: date) -> bool:
        if d in self.extra_workdays:
            return True
        return d.isoweekday() in self.weekdays and d not in self.holidays

    def window(self, d: date) -> tuple[datetime, datetime]:
        tz = self.tz
        return datetime.combine(d, self.start, tzinfo=tz), datetime.combine(d, self.end, tzinfo=tz)

    def to_dict(self) -> dict[str, Any]:
        return {
            "timezone": self.timezone,
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
            "weekdays": sorted(self.weekdays),
            "holidays": sorted(d.isoformat() for d in self.holidays),
            "extra_workdays": sorted(d.isoformat() for d in self.extra_workdays),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calendar:
        return cls(
            timezone=str(data.get("timezone", "Asia/Shanghai")),
            start=time.fromisoformat(str(data.get("start", "09:00"))),
            end=time.fromisoformat(str(data.get("end", "18:00"))),
            weekdays=frozenset(int(x) for x in data.get("weekdays", (1, 2, 3, 4, 5))),
            holidays=frozenset(_as_date(x) for x in data.get("holidays", ())),
            extra_workdays=frozenset(_as_date(x) for x in data.get("extra_workdays", ())),
        )


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def add_counted(start: datetime, seconds: float, calendar: Calendar | None) -> datetime:
    """The instant at which `seconds` of counted time will have passed after `start`."""
    if calendar is None:
        return start + timedelta(seconds=seconds)
    if seconds <= 0:
        return start
    tz = calendar.tz
    local = start.astimezone(tz)
    day = local.date()
    left = float(seconds)
    for _ in range(MAX_SCAN_DAYS):
        if calendar.is_workday(day):
            open_at, close_at = calendar.window(day)
            cursor = max(local, open_at)
            if cursor < close_at:
                available = (close_at - cursor).total_seconds()
                if left <= available:
                    return (cursor + timedelta(seconds=left)).astimezone(UTC)
                left -= available
        day += timedelta(days=1)
        local = datetime.combine(day, time(0), tzinfo=tz)
    raise CalendarError(f"no working time within {MAX_SCAN_DAYS} days after {start.isoformat()}")


def counted_between(a: datetime, b: datetime, calendar: Calendar | None) -> float:
    """Counted seconds in [a, b] (0 when b is not after a)."""
    if b <= a:
        return 0.0
    if calendar is None:
        return (b - a).total_seconds()
    tz = calendar.tz
    day = a.astimezone(tz).date()
    last = b.astimezone(tz).date()
    total = 0.0
    while day <= last:
        if calendar.is_workday(day):
            open_at, close_at = calendar.window(day)
            lo, hi = max(a, open_at), min(b, close_at)
            if hi > lo:
                total += (hi - lo).total_seconds()
        day += timedelta(days=1)
    return total


# -- durations ----------------------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_WORDS = {"seconds": "s", "minutes": "m", "hours": "h", "days": "d", "weeks": "w"}


def parse_duration(value: Any, business_day_s: float | None = None) -> float:
    """Seconds from `90`, `"90s"`, `"4h"`, `"1d12h"`, `{"days": 15}` or `{"seconds": 30}`.

    With `business_day_s` (a business-hours clock), a day means one working day of that many
    seconds and a week five of them, so `{"days": 5}` is five working days.
    """
    day = business_day_s if business_day_s is not None else 86400.0
    units = {**_UNITS, "d": day, "w": (5 * day if business_day_s is not None else 7 * 86400)}
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds, a string like '4h' or {'days': n}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        else:
            parts = _PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(f"cannot read duration {value!r}: use e.g. '90s', '4h', '15d'")
            seconds = sum(float(n) * units[u] for n, u in parts)
    elif isinstance(value, Mapping):
        unknown = set(value) - set(_WORDS)
        if unknown or not value:
            raise ValueError(f"duration keys must be among {sorted(_WORDS)}, got {sorted(value)}")
        seconds = 0.0
        for key, amount in value.items():
            if isinstance(amount, bool) or not isinstance(amount, int | float):
                raise ValueError(f"duration {key} must be a number")
            seconds += float(amount) * units[_WORDS[key]]
    else:
        raise ValueError("a duration is a number of seconds, a string like '4h' or {'days': n}")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


# -- pausable clocks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClockState:
    """One deadline clock. `consumed_s` is counted time before the run that began at
    `running_since`; while paused `running_since` is None."""

    budget_s: float
    consumed_s: float = 0.0
    running_since: datetime | None = None
    warn_before_s: float = 0.0
    calendar: Calendar | None = None

    @property
    def running(self) -> bool:
        return self.running_since is not None


def start_clock(
    at: datetime, budget_s: float, warn_before_s: float = 0.0, calendar: Calendar | None = None
) -> ClockState:
    return ClockState(budget_s, 0.0, at, warn_before_s, calendar)


def consumed_at(state: ClockState, now: datetime) -> float:
    if state.running_since is None:
        return state.consumed_s
    return state.consumed_s + counted_between(state.running_since, now, state.calendar)


def remaining_at(state: ClockState, now: datetime) -> float:
    """Counted seconds left (negative once overdue)."""
    return state.budget_s - consumed_at(state, now)


def due_at(state: ClockState) -> datetime | None:
    """When the budget runs out if the clock keeps running (None while paused)."""
    if state.running_since is None:
        return None
    return add_counted(
        state.running_since, max(state.budget_s - state.consumed_s, 0.0), state.calendar
    )


def warn_at(state: ClockState) -> datetime | None:
    """When the warning is due: `warn_before_s` of counted time before the due time."""
    if state.running_since is None or state.warn_before_s <= 0:
        return None
    lead = state.budget_s - state.consumed_s - state.warn_before_s
    if lead <= 0:
        return None
    return add_counted(state.running_since, lead, state.calendar)


def pause(state: ClockState, at: datetime) -> ClockState:
    if state.running_since is None:
        return state
    return replace(state, consumed_s=consumed_at(state, at), running_since=None)


def resume(state: ClockState, at: datetime) -> ClockState:
    if state.running_since is not None:
        return state
    return replace(state, running_since=at)


def extend(state: ClockState, budget_s: float) -> ClockState:
    return replace(state, budget_s=budget_s)
