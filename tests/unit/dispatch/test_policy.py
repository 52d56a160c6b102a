"""The assignment policy as a pure function: filters, scores, reasons."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from datetime import time as dtime

from dispatch import policy
from dispatch.policy import InsurerPreferences, JobFacts, Shift, SurveyorView, choose

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a Thursday
JOB = JobFacts(
    case_id="C1", insurer_code="PICC", required_skills=frozenset({"vehicle"}), lat=31.23, lon=121.47
)


def sv(sid: str, **kw: object) -> SurveyorView:
    values: dict[str, object] = {
        "surveyor_id": sid,
        "team": "T1",
        "skills": frozenset({"vehicle"}),
        "regions": frozenset(),
        "lat": 31.24,
        "lon": 121.48,
        "capacity": 3,
    }
    values.update(kw)
    return SurveyorView(**values)  # type: ignore[arg-type]


def test_filters_each_reason_and_explains_an_empty_result() -> None:
    roster = [
        sv("retired", retired=True),
        sv("off", shift_override=False),
        sv("busy", open_jobs=3),
        sv("unavail", available=False),
        sv("prop", skills=frozenset({"property"})),
        sv("region", regions=frozenset({"嘉定区"})),
    ]
    d = choose(JobFacts(**{**JOB.__dict__, "region": "浦东新区"}), roster, NOW)
    assert d.chosen is None
    reasons = {c.surveyor_id: c.excluded for c in d.candidates}
    assert reasons == {
        "retired": "retired",
        "off": "off shift",
        "busy": "at capacity (3/3)",
        "unavail": "unavailable",
        "prop": "lacks skill vehicle",
        "region": "does not cover region 浦东新区",
    }
    assert d.reason.startswith("no suitable surveyor among 6")
    assert d.version == policy.VERSION


def test_nearest_wins_then_load_and_fairness_break_ties() -> None:
    near = sv("near", lat=31.231, lon=121.471)
    far = sv("far", lat=31.40, lon=121.60)
    assert choose(JOB, [far, near], NOW).chosen == "near"
    loaded = sv("loaded", open_jobs=2)
    idle = sv("idle")
    assert choose(JOB, [loaded, idle], NOW).chosen == "idle"
    tired = sv("tired", assigned_today=8)
    fresh = sv("fresh", assigned_today=1)
    d = choose(JOB, [tired, fresh], NOW)
    assert d.chosen == "fresh"
    by_id = {c.surveyor_id: c for c in d.candidates}
    assert by_id["tired"].factors["fairness"] > by_id["fresh"].factors["fairness"]
    assert "fresh" in d.reason and "eligible" in d.reason


def test_insurer_preferences_bonus_and_avoidance() -> None:
    a = sv("a", team="T1")
    b = sv("b", team="T2", lat=31.25)  # a little further
    prefs = InsurerPreferences(preferred_teams=frozenset({"T2"}))
    d = choose(JOB, [a, b], NOW, prefs)
    assert d.chosen == "b" and "preferred by PICC" in d.reason
    d2 = choose(JOB, [a, b], NOW, InsurerPreferences(avoided_surveyors=frozenset({"a"})))
    assert d2.chosen == "b"


def test_excluded_surveyors_are_skipped_for_reassignment() -> None:
    d = choose(JOB, [sv("a"), sv("b", lat=31.3)], NOW, exclude=frozenset({"a"}))
    assert d.chosen == "b"


def test_shift_schedule_in_shanghai_time_including_overnight() -> None:
    day = Shift(days=tuple(range(7)), start=dtime(8), end=dtime(20))
    night = Shift(days=(2,), start=dtime(20), end=dtime(8))  # Wednesday night into Thursday
    assert sv("d", shifts=(day,)).on_shift(NOW)
    assert not sv("n", shifts=(night,)).on_shift(NOW)  # 10:00 Thursday
    thursday_3am = datetime(2026, 11, 25, 19, 0, tzinfo=UTC)  # 03:00 Thu in Shanghai
    assert sv("n", shifts=(night,)).on_shift(thursday_3am)
    assert sv("n", shifts=(night,), shift_override=True).on_shift(NOW)


def test_required_skills_from_the_case() -> None:
    assert policy.required_skills("vehicle_own_damage") == ["vehicle"]
    assert policy.required_skills("vehicle_third_party", description="重型货车追尾") == [
        "heavy_vehicle"
    ]
    assert policy.required_skills("vehicle_own_damage", injuries=True) == ["vehicle", "injury"]
    assert policy.required_skills("property") == ["property"]


def test_no_coordinates_means_travel_is_not_scored() -> None:
    d = choose(JobFacts(case_id="C", insurer_code="X", required_skills=frozenset()), [sv("a")], NOW)
    assert d.chosen == "a" and "travel not scored" in d.reason


def test_decision_over_1000_surveyors_is_fast() -> None:
    roster = [sv(f"s{i}", lat=31.0 + i * 0.0005, open_jobs=i % 3) for i in range(1000)]
    choose(JOB, roster, NOW)
    t0 = time.perf_counter()
    for _ in range(20):
        d = choose(JOB, roster, NOW)
    per = (time.perf_counter() - t0) / 20
    assert d.chosen is not None and len(d.candidates) == policy.MAX_CANDIDATES_KEPT
    assert per < 0.05, per  # the benchmark tracks the real figure (goal < 5 ms)


def test_the_fast_pass_ranks_exactly_as_the_explained_cost() -> None:
    """`choose` ranks with an inlined copy of `_cost`; over random rosters its pick, its kept
    candidates and their scores equal a ranking by `_cost` itself."""
    import random

    rnd = random.Random(5)
    for trial in range(200):
        roster = [
            sv(
                f"s{i}",
                team=rnd.choice(["T1", "T2", "T3"]),
                lat=31.0 + rnd.random() * 0.5,
                lon=121.2 + rnd.random() * 0.5,
                open_jobs=rnd.randrange(4),
                assigned_today=rnd.randrange(6),
                available=rnd.random() > 0.1,
                skills=frozenset(rnd.sample(policy.SKILLS, rnd.randrange(1, 4))),
            )
            for i in range(rnd.randrange(1, 40))
        ]
        prefs = InsurerPreferences(
            preferred_teams=frozenset({"T2"}) if trial % 2 else frozenset(),
            avoided_surveyors=frozenset({"s1"}),
        )
        job = (
            JOB
            if trial % 3
            else JobFacts(case_id="C", insurer_code="X", required_skills=frozenset())
        )
        d = choose(job, roster, NOW, prefs)
        ok = [
            s
            for s in roster
            if policy._exclusion(s, job, NOW, frozenset()) is None and s.surveyor_id != "s1"
        ]
        if not ok:
            assert d.chosen is None
            continue
        mean = sum(s.assigned_today for s in ok) / len(ok)
        has_loc = job.lat is not None
        ranked = sorted((policy._cost(s, job, prefs, mean, has_loc)[0], s.surveyor_id) for s in ok)[
            : policy.MAX_CANDIDATES_KEPT
        ]
        assert d.chosen == ranked[0][1]
        kept = [c for c in d.candidates if c.excluded is None]
        assert [c.surveyor_id for c in kept] == [sid for _, sid in ranked]
        assert [c.factors["cost"] for c in kept] == [round(cost, 4) for cost, _ in ranked]
