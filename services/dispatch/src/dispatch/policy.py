"""The assignment policy: a pure, versioned function from (job, roster, now) to a decision.

`choose` first filters (retired, on shift, available, skill, region, capacity, excluded),
then scores every remaining surveyor; the highest score wins. Each factor is kept on the
candidate so "why this surveyor?" has an answer. No IO, no clock: `now` is passed in.
A new policy is a new function with a new `version`; `POLICIES` maps versions to functions.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo

from claimdesk.events.dispatch import Candidate

VERSION = "balanced-v1"
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
SKILLS = ("vehicle", "heavy_vehicle", "injury", "property")

# Weights of the cost terms (lower cost is better; score = 100 / (1 + cost)).
W_TRAVEL = 1.0  # per 30 minutes of estimated travel
W_LOAD = 0.6  # per full capacity of open jobs
W_FAIRNESS = 0.3  # per job above the day's mean among eligible surveyors
W_PREFERRED = 0.5  # subtracted when the insurer prefers the surveyor's team or the surveyor
URBAN_KMH = 25.0  # average city driving speed
DETOUR = 1.3  # road distance / straight-line distance
MAX_CANDIDATES_KEPT = 10
HEAVY_WORDS = ("货车", "卡车", "重型", "挂车", "truck", "lorry", "heavy")


@dataclass(frozen=True)
class Shift:
    """A weekly working window in local time; `days` 0 = Monday. end < start spans midnight."""

    days: tuple[int, ...]
    start: time
    end: time

    def covers(self, local: datetime) -> bool:
        t = local.time()
        if self.start <= self.end:
            return local.weekday() in self.days and self.start <= t < self.end
        # over midnight: the part after midnight belongs to the previous day's shift
        if t >= self.start:
            return local.weekday() in self.days
        return t < self.end and (local.weekday() - 1) % 7 in self.days


@dataclass(frozen=True)
class SurveyorView:
    """What the policy knows about one surveyor."""

    surveyor_id: str
    team: str
    skills: frozenset[str]
    regions: frozenset[str]
    lat: float
    lon: float
    capacity: int
    open_jobs: int = 0
    assigned_today: int = 0
    available: bool = True
    retired: bool = False
    shift_override: bool | None = None  # True: started a shift, False: ended it, None: schedule
    shifts: tuple[Shift, ...] = ()
    # derived once per view (a roster keeps its views across decisions): the terms of the
    # cost that depend on the surveyor alone, the base as a point on the unit sphere
    ux: float = field(init=False, repr=False, compare=False)
    uy: float = field(init=False, repr=False, compare=False)
    uz: float = field(init=False, repr=False, compare=False)
    load: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, value in zip(("ux", "uy", "uz"), unit_vector(self.lat, self.lon), strict=True):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "load", self.open_jobs / self.capacity if self.capacity else 1.0)

    def on_shift(self, now: datetime) -> bool:
        if self.shift_override is not None:
            return self.shift_override
        if not self.shifts:
            return True  # no schedule: on call around the clock
        local = now if now.tzinfo is LOCAL_TZ else now.astimezone(LOCAL_TZ)
        return any(s.covers(local) for s in self.shifts)


@dataclass(frozen=True)
class JobFacts:
    """What the policy knows about the job."""

    case_id: str
    insurer_code: str
    required_skills: frozenset[str]
    lat: float | None = None
    lon: float | None = None
    region: str | None = None
    priority: str = "normal"


@dataclass(frozen=True)
class InsurerPreferences:
    preferred_teams: frozenset[str] = frozenset()
    preferred_surveyors: frozenset[str] = frozenset()
    avoided_surveyors: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    chosen: str | None
    team: str | None
    candidates: list[Candidate]
    reason: str
    version: str
    excluded_counts: dict[str, int] = field(default_factory=dict)


def required_skills(loss_type: str, injuries: bool = False, description: str = "") -> list[str]:
    """The skills a case needs, from its loss type, injury flag and description."""
    needed: list[str] = []
    if loss_type.startswith("vehicle") or loss_type == "other":
        text = description.lower()
        heavy = any(w in text for w in HEAVY_WORDS)
        needed.append("heavy_vehicle" if heavy else "vehicle")
    elif loss_type == "injury":
        needed.append("injury")
    elif loss_type == "property":
        needed.append("property")
    if injuries and "injury" not in needed:
        needed.append("injury")
    return needed


def travel_minutes(km: float) -> float:
    return km * DETOUR / URBAN_KMH * 60.0


EARTH_DIAMETER_KM = 12742.0


def unit_vector(lat: float, lon: float) -> tuple[float, float, float]:
    """A point as a unit vector (x, y, z): the distance to another is then a dot product away."""
    p, la = math.radians(lat), math.radians(lon)
    return math.cos(p) * math.cos(la), math.cos(p) * math.sin(la), math.sin(p)


def chord_km(dot: float) -> float:
    """Great-circle distance between two unit vectors with this dot product: haversine with
    hav(c) = (1 - cos c) / 2, cos c being the dot product (exact to well under a metre at
    city distances). `choose` inlines it; `_cost` calls it: the same floats."""
    a = (1.0 - dot) * 0.5
    return EARTH_DIAMETER_KM * math.asin(math.sqrt(a if a > 0.0 else 0.0))


def _exclusion(
    s: SurveyorView, job: JobFacts, now: datetime, exclude: frozenset[str]
) -> str | None:
    if s.retired:
        return "retired"
    if s.surveyor_id in exclude:
        return "already tried for this job"
    if not s.on_shift(now):
        return "off shift"
    if not s.available:
        return "unavailable"
    missing = job.required_skills - s.skills
    if missing:
        return "lacks skill " + ",".join(sorted(missing))
    if job.region and s.regions and job.region not in s.regions:
        return f"does not cover region {job.region}"
    if s.open_jobs >= s.capacity:
        return f"at capacity ({s.open_jobs}/{s.capacity})"
    return None


def _cost(
    s: SurveyorView,
    job: JobFacts,
    prefs: InsurerPreferences,
    mean_today: float,
    has_loc: bool,
    *,
    explain: bool = False,
) -> tuple[float, dict[str, float]]:
    """The cost of sending `s` (lower is better) and, when asked, its factors."""
    factors: dict[str, float] = {}
    travel_cost = 0.0
    if has_loc:
        jx, jy, jz = unit_vector(job.lat, job.lon)  # type: ignore[arg-type]
        km = chord_km(s.ux * jx + s.uy * jy + s.uz * jz)
        minutes = travel_minutes(km)
        travel_cost = minutes / 30.0 * W_TRAVEL
        if explain:
            factors["distance_km"] = round(km, 2)
            factors["travel_min"] = round(minutes, 1)
    load = s.open_jobs / s.capacity if s.capacity else 1.0
    fairness = (s.assigned_today - mean_today) / (mean_today + 1.0)
    preferred = s.team in prefs.preferred_teams or s.surveyor_id in prefs.preferred_surveyors
    cost = travel_cost + (W_LOAD * load + W_FAIRNESS * fairness) - (W_PREFERRED if preferred else 0)
    if explain:
        factors["load"] = round(load, 3)
        factors["assigned_today"] = float(s.assigned_today)
        factors["fairness"] = round(fairness, 3)
        factors["preferred"] = 1.0 if preferred else 0.0
        factors["cost"] = round(cost, 4)
    return cost, factors


def _ranked(
    eligible: list[SurveyorView],
    job: JobFacts,
    prefs: InsurerPreferences,
    mean_today: float,
    has_loc: bool,
) -> list[tuple[float, str, int]]:
    """The best few as (cost, surveyor id, index in `eligible`), costs as `_cost` computes
    them (the same arithmetic in the same order, so the same floats), without the calls: one
    comprehension per term over everyone, then the C heap."""
    m1 = mean_today + 1.0
    costs = [
        W_LOAD * s.load + W_FAIRNESS * ((s.assigned_today - mean_today) / m1) for s in eligible
    ]
    if has_loc:
        jx, jy, jz = unit_vector(job.lat, job.lon)  # type: ignore[arg-type]
        asin, sqrt = math.asin, math.sqrt
        costs = [
            EARTH_DIAMETER_KM
            * asin(
                sqrt(a if (a := (1.0 - (s.ux * jx + s.uy * jy + s.uz * jz)) * 0.5) > 0.0 else 0.0)
            )
            * DETOUR
            / URBAN_KMH
            * 60.0
            / 30.0
            * W_TRAVEL
            + rest
            for s, rest in zip(eligible, costs, strict=True)
        ]
    else:
        costs = [0.0 + rest for rest in costs]
    teams, people = prefs.preferred_teams, prefs.preferred_surveyors
    if teams or people:
        costs = [
            c - (W_PREFERRED if s.team in teams or s.surveyor_id in people else 0)
            for s, c in zip(eligible, costs, strict=True)
        ]
    ids = [s.surveyor_id for s in eligible]
    return heapq.nsmallest(MAX_CANDIDATES_KEPT, zip(costs, ids, range(len(ids)), strict=True))


def choose(
    job: JobFacts,
    roster: Sequence[SurveyorView],
    now: datetime,
    prefs: InsurerPreferences | None = None,
    exclude: frozenset[str] = frozenset(),
) -> Decision:
    """Pick the best surveyor for `job`, or none with the reason (policy `balanced-v1`)."""
    prefs = prefs or InsurerPreferences()
    now = now.astimezone(LOCAL_TZ)  # once, not per surveyor
    eligible: list[SurveyorView] = []
    excluded: list[Candidate] = []
    counts: dict[str, int] = {}
    needed, region, avoided = job.required_skills, job.region, prefs.avoided_surveyors
    for s in roster:
        # the common case in one cheap test; `_exclusion` names the reason otherwise
        if (
            not s.retired
            and s.available
            and s.open_jobs < s.capacity
            and needed <= s.skills
            and not (region and s.regions and region not in s.regions)
            and s.surveyor_id not in exclude
            and s.surveyor_id not in avoided
            and s.on_shift(now)
        ):
            eligible.append(s)
            continue
        why = _exclusion(s, job, now, exclude) or f"avoided by insurer {job.insurer_code}"
        key = why.split(" (")[0]
        counts[key] = counts.get(key, 0) + 1
        if len(excluded) < MAX_CANDIDATES_KEPT:
            excluded.append(Candidate(surveyor_id=s.surveyor_id, score=0.0, excluded=why))
    if not eligible:
        summary = ", ".join(f"{n} {why}" for why, n in sorted(counts.items())) or "empty roster"
        return Decision(
            chosen=None,
            team=None,
            candidates=excluded,
            reason=f"no suitable surveyor among {len(roster)}: {summary}",
            version=VERSION,
            excluded_counts=counts,
        )
    mean_today = sum(s.assigned_today for s in eligible) / len(eligible)
    has_loc = job.lat is not None and job.lon is not None
    # cheap pass over everyone: the cost only (the same arithmetic as `_cost`, in the same
    # order, so the same floats); factors and Candidate objects for the best few
    scored: list[tuple[float, str, Candidate, SurveyorView]] = []
    for cost, sid, k in _ranked(eligible, job, prefs, mean_today, has_loc):
        s = eligible[k]
        _, factors = _cost(s, job, prefs, mean_today, has_loc, explain=True)
        score = round(100.0 / (1.0 + max(cost, -0.99)), 3)
        scored.append((-score, sid, Candidate(surveyor_id=sid, score=score, factors=factors), s))
    best = scored[0]
    best_s, best_c = best[3], best[2]
    parts = []
    if "travel_min" in best_c.factors:
        parts.append(f"~{best_c.factors['travel_min']:.0f} min away")
    else:
        parts.append("no coordinates for the loss, travel not scored")
    parts.append(f"{best_s.open_jobs}/{best_s.capacity} open jobs")
    parts.append(f"{best_s.assigned_today} jobs today")
    if best_c.factors["preferred"]:
        parts.append(f"preferred by {job.insurer_code}")
    reason = (
        f"best of {len(eligible)} eligible (of {len(roster)}): {best_s.surveyor_id} "
        f"({best_s.team}) score {best_c.score}: " + ", ".join(parts)
    )
    kept = [t[2] for t in scored]
    return Decision(
        chosen=best_s.surveyor_id,
        team=best_s.team,
        candidates=kept + excluded[: max(0, MAX_CANDIDATES_KEPT - len(kept))],
        reason=reason,
        version=VERSION,
        excluded_counts=counts,
    )


Policy = Callable[..., Decision]
POLICIES: dict[str, Policy] = {VERSION: choose}
