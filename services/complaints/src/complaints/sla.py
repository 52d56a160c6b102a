"""SLA policies: the document format, its validation, and choosing one for a complaint.

A policy names when it applies (insurers, categories, severities; empty means any), a
business calendar, and three clocks: first_response, resolution and regulatory (15 days,
extendable to at most 30 with a reason). Durations are seconds or days (see
`clock.parse_duration`). Policies are versioned: every PUT saves a new version; a running
clock keeps the version it started with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, time
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from complaints.clock import Calendar, parse_duration

Category = Literal["attitude", "delay", "assessed_amount", "damage", "other"]
Severity = Literal["low", "medium", "high"]
CLOCKS = ("first_response", "resolution", "regulatory")
Duration = int | float | str | dict[str, float]

_DURATION_HELP = "seconds (90), a string ('90s', '4h', '15d') or {'days': 15} / {'seconds': 30}"


class CalendarSpec(BaseModel):
    """Working hours for business-hours clocks (工作时间), in the calendar's time zone."""

    model_config = ConfigDict(extra="forbid")
    timezone: str = Field("Asia/Shanghai", description="IANA time zone 时区")
    start: str = Field("09:00", description="working day starts 上班时间 (HH:MM)")
    end: str = Field("18:00", description="working day ends 下班时间 (HH:MM)")
    weekdays: list[int] = Field(
        [1, 2, 3, 4, 5], description="ISO working weekdays 工作日 (1 = Monday ... 7 = Sunday)"
    )
    holidays: list[date] = Field([], description="public holidays 法定节假日 (no work)")
    extra_workdays: list[date] = Field([], description="make-up working days 调休上班日")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        try:
            time.fromisoformat(v)
        except ValueError:
            raise ValueError("use HH:MM, e.g. 09:00") from None
        return v

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, v: list[int]) -> list[int]:
        if any(d < 1 or d > 7 for d in v):
            raise ValueError("weekdays are ISO numbers 1..7")
        return sorted(set(v))

    @model_validator(mode="after")
    def _has_work(self) -> CalendarSpec:
        if time.fromisoformat(self.start) >= time.fromisoformat(self.end):
            raise ValueError("start must be before end")
        if not self.weekdays and not self.extra_workdays:
            raise ValueError("a calendar needs at least one working weekday")
        return self

    def calendar(self) -> Calendar:
        return Calendar.from_dict(self.model_dump(mode="json"))


class ClockSpec(BaseModel):
    """One clock: how long it runs, whether it counts business hours only, when to warn."""

    model_config = ConfigDict(extra="forbid")
    duration: Duration = Field(description=f"time allowed 时限: {_DURATION_HELP}")
    business_hours: bool = Field(
        False, description="count only working hours of the calendar 仅计工作时间"
    )
    warn_before: Duration | None = Field(
        None, description=f"warn this long before the due time 预警提前量: {_DURATION_HELP}"
    )
    max_extended: Duration | None = Field(
        None, description="regulatory clock only: the most it may be extended to 最长可延至"
    )


def _default_regulatory() -> ClockSpec:
    return ClockSpec(duration={"days": 15}, warn_before={"days": 2}, max_extended={"days": 30})


class Clocks(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first_response: ClockSpec = Field(description="first answer to the customer 首次响应")
    resolution: ClockSpec = Field(description="resolution and feedback 处理完毕并反馈")
    regulatory: ClockSpec = Field(
        default_factory=_default_regulatory,
        description="regulatory limit 监管时限: 15 days, extendable to 30 with a reason",
    )


class Match(BaseModel):
    """When the policy applies; an empty list means any value."""

    model_config = ConfigDict(extra="forbid")
    insurers: list[str] = Field([], description="insurer codes 保险公司 (PICC, PINGAN, CPIC)")
    categories: list[Category] = Field([], description="complaint categories 投诉类别")
    severities: list[Severity] = Field([], description="severities 严重程度")


class SlaPolicy(BaseModel):
    """An SLA policy document (PUT /v1/sla-policies/{name})."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "description": "PICC, high severity: answer within 2 working hours",
                    "match": {"insurers": ["PICC"], "severities": ["high"]},
                    "priority": 10,
                    "calendar": {
                        "timezone": "Asia/Shanghai",
                        "start": "09:00",
                        "end": "18:00",
                        "weekdays": [1, 2, 3, 4, 5],
                        "holidays": ["2026-10-01", "2026-10-02"],
                        "extra_workdays": ["2026-10-10"],
                    },
                    "clocks": {
                        "first_response": {
                            "duration": "2h",
                            "business_hours": True,
                            "warn_before": "30m",
                        },
                        "resolution": {
                            "duration": {"days": 3},
                            "business_hours": True,
                            "warn_before": "4h",
                        },
                        "regulatory": {
                            "duration": {"days": 15},
                            "warn_before": {"days": 2},
                            "max_extended": {"days": 30},
                        },
                    },
                    "re_escalate_after": "1d",
                }
            ]
        },
    )
    description: str = Field("", max_length=500, description="what the policy is for 说明")
    match: Match = Field(default_factory=Match, description="when it applies 适用范围")
    priority: int = Field(0, ge=-1000, le=1000, description="wins ties between equally specific")
    calendar: CalendarSpec = Field(default_factory=CalendarSpec, description="business calendar")
    clocks: Clocks = Field(
        description="first_response, resolution and regulatory clocks 时限 (首次响应/处理/监管)"
    )
    re_escalate_after: Duration | None = Field(
        None,
        description="after a breach, go up one more level each time this passes (wall-clock) "
        "while still unresolved 违约后逐级升级间隔",
    )

    @model_validator(mode="after")
    def _durations(self) -> SlaPolicy:
        day = self.calendar.calendar().day_seconds
        for name in CLOCKS:
            spec: ClockSpec = getattr(self.clocks, name)
            unit = day if spec.business_hours else None
            try:
                total = parse_duration(spec.duration, unit)
                warn = parse_duration(spec.warn_before, unit) if spec.warn_before is not None else 0
                top = (
                    parse_duration(spec.max_extended, unit) if spec.max_extended is not None else 0
                )
            except ValueError as exc:
                raise ValueError(f"clocks.{name}: {exc}") from None
            if warn >= total:
                raise ValueError(f"clocks.{name}: warn_before must be shorter than duration")
            if spec.max_extended is not None and top < total:
                raise ValueError(f"clocks.{name}: max_extended must be at least duration")
        if self.re_escalate_after is not None:
            try:
                parse_duration(self.re_escalate_after)
            except ValueError as exc:
                raise ValueError(f"re_escalate_after: {exc}") from None
        return self


@dataclass(frozen=True)
class ResolvedClock:
    """A clock of a policy version, in seconds, ready to start."""

    name: str
    budget_s: float
    warn_before_s: float
    business_hours: bool
    calendar: dict[str, Any] | None
    max_extended_s: float | None
    re_escalate_after_s: float | None


def resolve_clocks(policy: SlaPolicy) -> dict[str, ResolvedClock]:
    cal = policy.calendar.calendar()
    re_esc = parse_duration(policy.re_escalate_after) if policy.re_escalate_after else None
    out: dict[str, ResolvedClock] = {}
    for name in CLOCKS:
        spec: ClockSpec = getattr(policy.clocks, name)
        unit = cal.day_seconds if spec.business_hours else None
        out[name] = ResolvedClock(
            name=name,
            budget_s=parse_duration(spec.duration, unit),
            warn_before_s=parse_duration(spec.warn_before, unit) if spec.warn_before else 0.0,
            business_hours=spec.business_hours,
            calendar=cal.to_dict() if spec.business_hours else None,
            max_extended_s=(
                parse_duration(spec.max_extended, unit)
                if spec.max_extended is not None
                else (parse_duration({"days": 30}) if name == "regulatory" else None)
            ),
            re_escalate_after_s=re_esc,
        )
    return out


DEFAULT_POLICY_NAME = "default"
DEFAULT_POLICY = SlaPolicy(
    description="Fallback for every complaint: answer within 2 hours (24/7), resolve within "
    "5 working days, regulatory limit 15 days (extendable to 30).",
    clocks=Clocks(
        first_response=ClockSpec(duration="2h", warn_before="30m"),
        resolution=ClockSpec(duration={"days": 5}, business_hours=True, warn_before={"days": 1}),
    ),
    re_escalate_after="1d",
)


@dataclass(frozen=True)
class StoredPolicy:
    name: str
    version: int
    policy: SlaPolicy


def specificity(policy: SlaPolicy) -> int:
    m = policy.match
    return (4 if m.insurers else 0) + (2 if m.categories else 0) + (1 if m.severities else 0)


def matches(policy: SlaPolicy, insurer: str | None, category: str, severity: str) -> bool:
    m = policy.match
    if m.insurers and (insurer is None or insurer not in m.insurers):
        return False
    if m.categories and category not in m.categories:
        return False
    return not (m.severities and severity not in m.severities)


def choose_policy(
    policies: Iterable[StoredPolicy], insurer: str | None, category: str, severity: str
) -> StoredPolicy:
    """The most specific matching policy (insurer > category > severity), then priority,
    then name; the policy named `default` only when no other matches (the built-in one when
    none is stored)."""
    policies = list(policies)
    candidates = [
        p
        for p in policies
        if p.name != DEFAULT_POLICY_NAME and matches(p.policy, insurer, category, severity)
    ]
    if not candidates:
        stored_default = [p for p in policies if p.name == DEFAULT_POLICY_NAME]
        return (
            stored_default[0]
            if stored_default
            else StoredPolicy(DEFAULT_POLICY_NAME, 0, DEFAULT_POLICY)
        )
    candidates.sort(key=lambda p: (-specificity(p.policy), -p.policy.priority, p.name))
    return candidates[0]
