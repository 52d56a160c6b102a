"""Read side: the statistics queries behind /v1/stats, the reports and the dashboard."""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg

from analytics.projections import period_label

Rows = list[dict[str, Any]]

# Composite surveyor score (考核监督): weights of each component, each scored 0..1.
SCORE_WEIGHTS: dict[str, float] = {
    "on_time_arrival": 0.30,
    "acknowledgement": 0.15,
    "survey_time": 0.10,
    "callback_satisfaction": 0.30,
    "complaints": 0.15,
}


def _r(x: Any, nd: int = 1) -> float | None:
    return None if x is None else round(float(x), nd)


def _share(n: Any, d: Any) -> float | None:
    return round(n / d, 4) if d else None


async def case_volume(
    conn: asyncpg.Connection,
    granularity: str,
    *,
    start: date | None,
    end: date | None,
    insurer: str | None = None,
    loss_type: str | None = None,
    channel: str | None = None,
    region: str | None = None,
    by: list[str] | None = None,
) -> Rows:
    dims = by if by is not None else ["insurer_code", "loss_type", "channel", "region"]
    cols = "".join(f", {d}" for d in dims)
    rows = await conn.fetch(
        f"""SELECT period{cols}, sum(count)::int AS count FROM case_counts
            WHERE granularity = $1
              AND ($2::date IS NULL OR period >= $2) AND ($3::date IS NULL OR period <= $3)
              AND ($4::text IS NULL OR insurer_code = $4)
              AND ($5::text IS NULL OR loss_type = $5)
              AND ($6::text IS NULL OR channel = $6)
              AND ($7::text IS NULL OR region = $7)
            GROUP BY period{cols} HAVING sum(count) <> 0 ORDER BY period{cols}""",
        granularity,
        _period_floor(start, granularity),
        end,
        insurer,
        loss_type,
        channel,
        region,
    )
    return [
        {
            "period": period_label(r["period"], granularity),
            "period_start": r["period"].isoformat(),
            **{d: r[d] for d in dims},
            "count": r["count"],
        }
        for r in rows
    ]


def _period_floor(day: date | None, granularity: str) -> date | None:
    from analytics.projections import period_start

    return None if day is None else period_start(day, granularity)


async def dispatch_times(
    conn: asyncpg.Connection, tz: str, start: date | None, end: date | None, insurer: str | None
) -> Rows:
    rows = await conn.fetch(
        """WITH j AS (
             SELECT coalesce(c.report_day, (j.first_assigned_at AT TIME ZONE $1)::date) AS day,
                    coalesce(c.insurer_code, j.insurer_code, '') AS insurer_code,
                    extract(epoch FROM j.first_assigned_at - c.reported_at) AS to_assignment,
                    extract(epoch FROM j.acknowledged_at - c.reported_at) AS to_acknowledgement,
                    extract(epoch FROM j.arrived_at - c.reported_at) AS to_arrival,
                    extract(epoch FROM j.completed_at - c.reported_at) AS to_survey_completed,
                    j.timeouts, j.declines, j.reassignments
             FROM jobs j LEFT JOIN cases c USING (case_id))
           SELECT day, insurer_code, count(*)::int AS jobs,
             percentile_cont(ARRAY[0.5,0.9,0.99]) WITHIN GROUP (ORDER BY to_assignment) AS a,
             percentile_cont(ARRAY[0.5,0.9,0.99]) WITHIN GROUP (ORDER BY to_acknowledgement) AS k,
             percentile_cont(ARRAY[0.5,0.9,0.99]) WITHIN GROUP (ORDER BY to_arrival) AS r,
             percentile_cont(ARRAY[0.5,0.9,0.99]) WITHIN GROUP (ORDER BY to_survey_completed) AS s,
             sum(timeouts)::int AS timeouts, sum(declines)::int AS declines,
             sum(reassignments)::int AS reassignments
           FROM j
           WHERE day IS NOT NULL AND ($2::date IS NULL OR day >= $2)
             AND ($3::date IS NULL OR day <= $3) AND ($4::text IS NULL OR insurer_code = $4)
           GROUP BY day, insurer_code ORDER BY day, insurer_code""",
        tz,
        start,
        end,
        insurer,
    )
    out: Rows = []
    for r in rows:
        row: dict[str, Any] = {
            "day": r["day"].isoformat(),
            "insurer_code": r["insurer_code"],
            "jobs": r["jobs"],
        }
        for col, name in (
            ("a", "to_assignment"),
            ("k", "to_acknowledgement"),
            ("r", "to_arrival"),
            ("s", "to_survey_completed"),
        ):
            values = r[col] or [None, None, None]
            for q, v in zip(("p50", "p90", "p99"), values, strict=True):
                row[f"{name}_{q}_s"] = _r(v)
        row.update(timeouts=r["timeouts"], declines=r["declines"], reassignments=r["reassignments"])
        out.append(row)
    return out


def composite(parts: dict[str, float | None]) -> float | None:
    """Weighted mean of the available components (0..1), as 0..100; None if none known."""
    known = {k: v for k, v in parts.items() if v is not None}
    if not known:
        return None
    total = sum(SCORE_WEIGHTS[k] for k in known)
    return round(100 * sum(SCORE_WEIGHTS[k] * v for k, v in known.items()) / total, 1)


def score_parts(s: dict[str, Any]) -> dict[str, float | None]:
    assigned, completed = s["assigned"] or 0, s["completed"] or 0
    survey_min = s["avg_survey_minutes"]
    sat = s["avg_satisfaction"]
    return {
        "on_time_arrival": s["on_time"] / s["arrived"] if s["arrived"] else None,
        "acknowledgement": (min(s["acknowledged"] / assigned, 1.0) if assigned else None),
        "survey_time": (
            None if survey_min is None else max(0.0, min(1.0, 1 - (survey_min - 30) / 90))
        ),
        "callback_satisfaction": None if sat is None else max(0.0, min(1.0, (sat - 1) / 4)),
        "complaints": (
            max(0.0, 1 - 5 * s["valid_complaints"] / completed)
            if completed
            else (0.0 if s["valid_complaints"] else None)
        ),
    }


async def surveyor_scores(
    conn: asyncpg.Connection,
    start: date | None,
    end: date | None,
    team: str | None = None,
    surveyor: str | None = None,
) -> Rows:
    rows = await conn.fetch(
        """WITH s AS (
             SELECT surveyor_id, sum(assigned)::int AS assigned,
                    sum(acknowledged)::int AS acknowledged, sum(declined)::int AS declined,
                    sum(timed_out)::int AS timed_out, sum(arrived)::int AS arrived,
                    sum(on_time)::int AS on_time, sum(completed)::int AS completed,
                    sum(survey_ms)::bigint AS survey_ms
             FROM surveyor_stats
             WHERE ($1::date IS NULL OR day >= $1) AND ($2::date IS NULL OR day <= $2)
             GROUP BY surveyor_id),
           c AS (
             SELECT surveyor_id, count(*)::int AS complaints,
                    count(*) FILTER (WHERE valid)::int AS valid_complaints
             FROM complaints WHERE surveyor_id IS NOT NULL
               AND ($1::date IS NULL OR received_day >= $1) AND ($2::date IS NULL OR received_day <= $2)
             GROUP BY surveyor_id),
           b AS (
             SELECT coalesce(cb.surveyor_id, j.surveyor_id) AS surveyor_id,
                    count(cb.completed_at)::int AS callbacks_reached,
                    avg(cb.satisfaction)::float8 AS avg_satisfaction,
                    avg(cb.surveyor_rating)::float8 AS avg_rating
             FROM callbacks cb
             LEFT JOIN LATERAL (SELECT surveyor_id FROM jobs WHERE jobs.case_id = cb.case_id
                                ORDER BY job_id LIMIT 1) j ON true
             WHERE ($1::date IS NULL OR cb.day >= $1) AND ($2::date IS NULL OR cb.day <= $2)
             GROUP BY 1),
           ids AS (SELECT surveyor_id FROM s UNION SELECT surveyor_id FROM c
                   UNION SELECT surveyor_id FROM b WHERE surveyor_id IS NOT NULL
                   UNION SELECT surveyor_id FROM surveyors WHERE NOT coalesce(retired, false))
           SELECT ids.surveyor_id, sv.name, sv.team,
                  coalesce(s.assigned, 0) AS assigned, coalesce(s.acknowledged, 0) AS acknowledged,
                  coalesce(s.declined, 0) AS declined, coalesce(s.timed_out, 0) AS timed_out,
                  coalesce(s.arrived, 0) AS arrived, coalesce(s.on_time, 0) AS on_time,
                  coalesce(s.completed, 0) AS completed,
                  CASE WHEN s.completed > 0 AND s.survey_ms > 0
                       THEN s.survey_ms / 60000.0 / s.completed END::float8 AS avg_survey_minutes,
                  coalesce(c.complaints, 0) AS complaints,
                  coalesce(c.valid_complaints, 0) AS valid_complaints,
                  coalesce(b.callbacks_reached, 0) AS callbacks_reached,
                  b.avg_satisfaction, b.avg_rating
           FROM ids LEFT JOIN s USING (surveyor_id) LEFT JOIN c USING (surveyor_id)
                LEFT JOIN b USING (surveyor_id) LEFT JOIN surveyors sv USING (surveyor_id)
           WHERE ($3::text IS NULL OR sv.team = $3) AND ($4::text IS NULL OR ids.surveyor_id = $4)""",
        start,
        end,
        team,
        surveyor,
    )
    out: Rows = []
    for r in rows:
        s = dict(r)
        parts = score_parts(s)
        s["on_time_rate"] = _share(s["on_time"], s["arrived"])
        s["avg_survey_minutes"] = _r(s["avg_survey_minutes"])
        s["avg_satisfaction"] = _r(s["avg_satisfaction"], 2)
        s["avg_rating"] = _r(s["avg_rating"], 2)
        s["score"] = composite(parts)
        out.append(s)
    out.sort(key=lambda s: (-(s["score"] if s["score"] is not None else -1), s["surveyor_id"]))
    for i, s in enumerate(out, 1):
        s["rank"] = i
    return out


async def complaint_stats(
    conn: asyncpg.Connection, start: date | None, end: date | None, insurer: str | None
) -> Rows:
    rows = await conn.fetch(
        """WITH c AS (
             SELECT cp.*, coalesce(cp.insurer_code, cs.insurer_code, '') AS ins
             FROM complaints cp LEFT JOIN cases cs USING (case_id)
             WHERE cp.received_day IS NOT NULL
               AND ($1::date IS NULL OR cp.received_day >= $1)
               AND ($2::date IS NULL OR cp.received_day <= $2)),
           e AS (SELECT complaint_id, level, count(*) AS n FROM complaint_escalations
                 GROUP BY complaint_id, level)
           SELECT c.received_day AS day, c.ins AS insurer_code, count(*)::int AS received,
                  count(*) FILTER (WHERE c.valid IS NOT NULL)::int AS triaged,
                  count(*) FILTER (WHERE c.valid)::int AS valid,
                  count(*) FILTER (WHERE c.resolved_at IS NOT NULL)::int AS resolved,
                  count(*) FILTER (WHERE c.resolved_on_time)::int AS resolved_on_time,
                  count(*) FILTER (WHERE c.breaches > 0)::int AS breached,
                  count(*) FILTER (WHERE c.reopened > 0)::int AS reopened,
                  coalesce(sum((SELECT sum(n) FROM e WHERE e.complaint_id = c.complaint_id
                                AND e.level = 1)), 0)::int AS escalations_l1,
                  coalesce(sum((SELECT sum(n) FROM e WHERE e.complaint_id = c.complaint_id
                                AND e.level = 2)), 0)::int AS escalations_l2,
                  coalesce(sum((SELECT sum(n) FROM e WHERE e.complaint_id = c.complaint_id
                                AND e.level >= 3)), 0)::int AS escalations_l3
           FROM c WHERE ($3::text IS NULL OR c.ins = $3)
           GROUP BY 1, 2 ORDER BY 1, 2""",
        start,
        end,
        insurer,
    )
    out: Rows = []
    for r in rows:
        d = dict(r)
        d["day"] = d["day"].isoformat()
        d["valid_share"] = _share(d["valid"], d["triaged"])
        d["on_time_share"] = _share(d["resolved_on_time"], d["resolved"])
        out.append(d)
    return out


async def callback_stats(
    conn: asyncpg.Connection,
    start: date | None,
    end: date | None,
    insurer: str | None,
    group: str = "day",
) -> Rows:
    key = {
        "day": "cb.day::text",
        "insurer": "coalesce(cb.insurer_code, cs.insurer_code, '')",
        "team": "coalesce(sv.team, '')",
        "surveyor": "coalesce(cb.surveyor_id, '')",
    }[group]
    rows = await conn.fetch(
        f"""SELECT {key} AS grp, count(*)::int AS callbacks,
                  count(cb.completed_at)::int AS reached,
                  count(cb.failed_at) FILTER (WHERE cb.completed_at IS NULL)::int AS failed,
                  avg(cb.satisfaction)::float8 AS avg_satisfaction,
                  stddev_samp(cb.satisfaction)::float8 AS satisfaction_stddev,
                  min(cb.satisfaction) AS min_satisfaction, max(cb.satisfaction) AS max_satisfaction,
                  count(*) FILTER (WHERE cb.satisfaction <= 1)::int AS s1,
                  count(*) FILTER (WHERE cb.satisfaction = 2)::int AS s2,
                  count(*) FILTER (WHERE cb.satisfaction = 3)::int AS s3,
                  count(*) FILTER (WHERE cb.satisfaction = 4)::int AS s4,
                  count(*) FILTER (WHERE cb.satisfaction >= 5)::int AS s5,
                  count(*) FILTER (WHERE cb.reasons <> '')::int AS with_reasons
           FROM callbacks cb LEFT JOIN cases cs USING (case_id)
                LEFT JOIN surveyors sv ON sv.surveyor_id = cb.surveyor_id
           WHERE cb.day IS NOT NULL AND ($1::date IS NULL OR cb.day >= $1)
             AND ($2::date IS NULL OR cb.day <= $2)
             AND ($3::text IS NULL OR coalesce(cb.insurer_code, cs.insurer_code) = $3)
           GROUP BY 1 ORDER BY 1""",
        start,
        end,
        insurer,
    )
    out: Rows = []
    for r in rows:
        d = dict(r)
        d[group] = d.pop("grp")
        d["reached_share"] = _share(d["reached"], d["callbacks"])
        for k in ("avg_satisfaction", "satisfaction_stddev"):
            d[k] = _r(d[k], 2)
        out.append({group: d.pop(group), **d})
    return out


async def discrepancy_stats(
    conn: asyncpg.Connection, start: date | None, end: date | None, agent: str | None
) -> Rows:
    rows = await conn.fetch(
        """SELECT coalesce(agent, '') AS agent, count(*)::int AS recorded,
                  count(resolved_at)::int AS resolved,
                  (count(*) - count(resolved_at))::int AS open,
                  string_agg(DISTINCT field, ',' ORDER BY field) AS fields
           FROM discrepancies
           WHERE day IS NOT NULL AND ($1::date IS NULL OR day >= $1)
             AND ($2::date IS NULL OR day <= $2) AND ($3::text IS NULL OR agent = $3)
           GROUP BY 1 ORDER BY recorded DESC, agent""",
        start,
        end,
        agent,
    )
    return [dict(r) for r in rows]
