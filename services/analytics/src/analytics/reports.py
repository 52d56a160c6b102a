"""The reports the manager owes (domain.md): daily case volume with trend and anomaly flag,
weekly report, monthly callback report and monthly quality per team. JSON, CSV or printable HTML.
"""

from __future__ import annotations

import html
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from claimdesk.auth import Principal
from claimdesk.errors import InvalidInput
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from analytics import queries
from analytics.api import to_csv, tz_of
from analytics.dashboard import token_principal

router = APIRouter()
REPORT_ROLES = ("team_lead", "supervisor", "manager")
ANOMALY_WEEKS = 4

Fmt = Annotated[
    Literal["json", "csv", "html"] | None,
    Query(description="json (default), csv, or html: a printable page (also by Accept header)"),
]
Token = Annotated[
    str | None, Query(description="token for opening the printable page in a browser")
]


def anomaly(count: int, history: list[int]) -> dict[str, Any]:
    """Flag a count well outside the range of the same weekday in recent weeks.

    High: above max + max(3, 50 % of max); low: below min - max(3, 50 % of min).
    Needs at least 3 earlier same weekdays; otherwise `flag` is None (not enough history)."""
    if len(history) < 3:
        return {"flag": None, "range": None, "reason": "not enough history"}
    lo, hi = min(history), max(history)
    if count > hi + max(3, hi * 0.5):
        return {"flag": "high", "range": [lo, hi], "reason": f"{count} > recent {lo}..{hi}"}
    if count < lo - max(3, lo * 0.5):
        return {"flag": "low", "range": [lo, hi], "reason": f"{count} < recent {lo}..{hi}"}
    return {"flag": None, "range": [lo, hi], "reason": "within the recent range"}


async def daily_report(request: Request, day: date) -> dict[str, Any]:
    start = day - timedelta(days=7 * ANOMALY_WEEKS)
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await queries.case_volume(conn, "day", start=start, end=day, by=["insurer_code"])
        first = await conn.fetchval("SELECT min(report_day) FROM cases")
    counts: dict[tuple[str, str], int] = {}
    insurers: set[str] = set()
    for r in rows:
        counts[(r["period"], r["insurer_code"])] = r["count"]
        insurers.add(r["insurer_code"])

    def total(d: date, ins: str | None = None) -> int:
        keys = [ins] if ins else insurers
        return sum(counts.get((d.isoformat(), i), 0) for i in keys)

    def same_weekdays(ins: str | None) -> list[int]:
        days = [day - timedelta(days=7 * w) for w in range(1, ANOMALY_WEEKS + 1)]
        return [total(d, ins) for d in days if first is not None and d >= first]

    trend = [
        {"day": (day - timedelta(days=i)).isoformat(), "count": total(day - timedelta(days=i))}
        for i in range(7, -1, -1)
    ]
    prev7 = [t["count"] for t in trend[:-1]]
    per_insurer = []
    for ins in sorted(insurers):
        n = total(day, ins)
        per_insurer.append(
            {
                "insurer_code": ins,
                "count": n,
                "previous_day": total(day - timedelta(days=1), ins),
                "same_weekday_last_week": total(day - timedelta(days=7), ins),
                "anomaly": anomaly(n, same_weekdays(ins)),
            }
        )
    n = total(day)
    return {
        "report": "daily case volume / 每日案件量",
        "date": day.isoformat(),
        "total": n,
        "previous_day": total(day - timedelta(days=1)),
        "average_previous_7_days": round(sum(prev7) / 7, 1),
        "anomaly": anomaly(n, same_weekdays(None)),
        "per_insurer": [r for r in per_insurer if r["count"] or r["anomaly"]["flag"]],
        "trend": trend,
    }


def _week_bounds(week: str | None, day: date | None, today: date) -> tuple[date, date, str]:
    if week:
        try:
            y, w = week.split("-W")
            start = date.fromisocalendar(int(y), int(w), 1)
        except ValueError:
            raise InvalidInput("`week` must look like 2026-W48") from None
    else:
        d = day or today
        start = d - timedelta(days=d.weekday())
    y, w, _ = start.isocalendar()
    return start, start + timedelta(days=6), f"{y}-W{w:02d}"


def _month_bounds(month: str | None, today: date) -> tuple[date, date, str]:
    try:
        start = date.fromisoformat(f"{month}-01") if month else today.replace(day=1)
    except ValueError:
        raise InvalidInput("`month` must look like 2026-11") from None
    end = (start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    return start, end, f"{start:%Y-%m}"


def _today(request: Request) -> date:
    from zoneinfo import ZoneInfo

    return request.app.state.runtime.clock.now().astimezone(ZoneInfo(tz_of(request))).date()


async def weekly_report(request: Request, start: date, end: date, label: str) -> dict[str, Any]:
    prev_start, prev_end = start - timedelta(days=7), end - timedelta(days=7)
    async with request.app.state.runtime.pool.acquire() as conn:
        days = await queries.case_volume(conn, "day", start=start, end=end, by=["insurer_code"])
        prev = await queries.case_volume(
            conn, "day", start=prev_start, end=prev_end, by=["insurer_code"]
        )
        callbacks = await queries.callback_stats(conn, start, end, None, "insurer")
        complaints = await queries.complaint_stats(conn, start, end, None)
        dispatch = await queries.dispatch_times(conn, tz_of(request), start, end, None)
        discrepancies = await queries.discrepancy_stats(conn, start, end, None)
    total = sum(r["count"] for r in days)
    prev_total = sum(r["count"] for r in prev)
    jobs = sum(r["jobs"] for r in dispatch)
    reached = sum(r["reached"] for r in callbacks)
    called = sum(r["callbacks"] for r in callbacks)
    sat = [r["avg_satisfaction"] * r["reached"] for r in callbacks if r["avg_satisfaction"]]
    return {
        "report": "weekly report / 周报",
        "week": label,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "cases": total,
        "cases_previous_week": prev_total,
        "change": None if not prev_total else round((total - prev_total) / prev_total, 3),
        "cases_per_day": days,
        "callbacks": called,
        "callbacks_reached_share": round(reached / called, 3) if called else None,
        "callback_avg_satisfaction": round(sum(sat) / reached, 2) if reached else None,
        "complaints": sum(r["received"] for r in complaints),
        "complaints_valid": sum(r["valid"] for r in complaints),
        "complaints_resolved_on_time": sum(r["resolved_on_time"] for r in complaints),
        "escalations": sum(
            r["escalations_l1"] + r["escalations_l2"] + r["escalations_l3"] for r in complaints
        ),
        "jobs": jobs,
        "timeouts": sum(r["timeouts"] for r in dispatch),
        "reassignments": sum(r["reassignments"] for r in dispatch),
        "discrepancies": sum(r["recorded"] for r in discrepancies),
    }


async def monthly_callback_report(
    request: Request, start: date, end: date, label: str
) -> dict[str, Any]:
    async with request.app.state.runtime.pool.acquire() as conn:
        teams = await queries.callback_stats(conn, start, end, None, "team")
        surveyors = await queries.callback_stats(conn, start, end, None, "surveyor")
        reasons = await conn.fetch(
            """SELECT r AS reason, count(*)::int AS n
               FROM callbacks, unnest(string_to_array(nullif(reasons, ''), E'\\n')) AS r
               WHERE day BETWEEN $1 AND $2 GROUP BY r ORDER BY n DESC, r LIMIT 10""",
            start,
            end,
        )
    return {
        "report": "monthly callback report / 月度回访报告",
        "month": label,
        "per_team": teams,
        "per_surveyor": surveyors,
        "top_dissatisfaction_reasons": [dict(r) for r in reasons],
    }


async def monthly_quality_report(
    request: Request, start: date, end: date, label: str
) -> dict[str, Any]:
    async with request.app.state.runtime.pool.acquire() as conn:
        scores = await queries.surveyor_scores(conn, start, end)
    teams: dict[str, dict[str, Any]] = {}
    for s in scores:
        t = teams.setdefault(
            s["team"] or "",
            {"team": s["team"] or "", "surveyors": 0, "assigned": 0, "completed": 0, "arrived": 0,
             "on_time": 0, "declined": 0, "timed_out": 0, "complaints": 0, "valid_complaints": 0,
             "callbacks_reached": 0, "_sat": 0.0, "_scores": []},
        )  # fmt: skip
        t["surveyors"] += 1
        for k in ("assigned", "completed", "arrived", "on_time", "declined", "timed_out",
                  "complaints", "valid_complaints", "callbacks_reached"):  # fmt: skip
            t[k] += s[k]
        if s["avg_satisfaction"] is not None:
            t["_sat"] += s["avg_satisfaction"] * s["callbacks_reached"]
        if s["score"] is not None:
            t["_scores"].append(s["score"])
    rows = []
    for t in sorted(teams.values(), key=lambda t: t["team"]):
        sat, sc = t.pop("_sat"), t.pop("_scores")
        t["on_time_rate"] = round(t["on_time"] / t["arrived"], 3) if t["arrived"] else None
        t["avg_satisfaction"] = (
            round(sat / t["callbacks_reached"], 2) if t["callbacks_reached"] else None
        )
        t["avg_score"] = round(sum(sc) / len(sc), 1) if sc else None
        rows.append(t)
    return {
        "report": "monthly quality per team / 月度质量报告(按组)",
        "month": label,
        "per_team": rows,
        "surveyors": scores,
    }


def _tables(report: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The report's list-valued parts as tables; scalars become one summary table."""
    summary = {k: v for k, v in report.items() if not isinstance(v, list | dict) and k != "report"}
    for k, v in report.items():
        if isinstance(v, dict):
            summary[k] = v.get("flag") or v.get("reason") or str(v)
    out = [("summary", [summary])]
    out.extend((k, v) for k, v in report.items() if isinstance(v, list))
    return out


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                out[f"{k}_{k2}"] = v2
        else:
            out[k] = v
    return out


def render(request: Request, report: dict[str, Any], fmt: str | None, name: str) -> Response:
    accept = request.headers.get("accept", "")
    if fmt is None:
        fmt = "csv" if "text/csv" in accept else "html" if "text/html" in accept else "json"
    if fmt == "json":
        return JSONResponse(report)
    if fmt == "csv":
        parts = []
        for title, rows in _tables(report):
            parts.append(f"# {title}\n" + to_csv([_flat(r) for r in rows]))
        return Response(
            "\ufeff" + "\n".join(parts),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    sections = []
    for title, rows in _tables(report):
        flat = [_flat(r) for r in rows]
        cols: list[str] = []
        for r in flat:
            cols.extend(k for k in r if k not in cols)
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape('' if r.get(c) is None else str(r.get(c)))}</td>" for c in cols
            )
            + "</tr>"
            for r in flat
        )
        empty = "" if flat else "<p><i>no data</i></p>"
        sections.append(f"<h2>{html.escape(title)}</h2>{empty}<table><tr>{head}</tr>{body}</table>")
    page = f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(report["report"])}</title>
<style>body{{font:13px system-ui,sans-serif;margin:16px}}table{{border-collapse:collapse;margin-bottom:14px}}
td,th{{border:1px solid #bbb;padding:3px 6px;text-align:left}}th{{background:#eef}}
@media print{{button{{display:none}}}}</style></head><body>
<h1>{html.escape(report["report"])}</h1><button onclick="print()">Print 打印</button>
{"".join(sections)}</body></html>"""
    return HTMLResponse(page)


REPORT_RESPONSES = {
    200: {
        "content": {
            "application/json": {
                "example": {"report": "daily case volume / 每日案件量", "total": 42}
            },
            "text/csv": {"example": "# summary\ndate,total\n2026-11-26,42\n"},
            "text/html": {"example": "<!doctype html>..."},
        }
    },
    401: {"description": "missing or invalid token"},
    403: {"description": "only team leads, supervisors and managers"},
    422: {"description": "a bad date, week or month"},
}


@router.get(
    "/v1/reports/daily",
    tags=["reports"],
    summary="Daily case volume with trend and anomaly flag (每日案件量报告)",
    description="Cases of the day per insurer, the 7 days before, and an anomaly flag when the "
    "day is well outside the range of the same weekday over the previous 4 weeks.",
    responses=REPORT_RESPONSES,
)
async def report_daily(
    request: Request,
    day: Annotated[
        date | None, Query(alias="date", description="YYYY-MM-DD; default today")
    ] = None,
    format: Fmt = None,
    token: Token = None,
) -> Response:
    _auth(request, token)
    d = day or _today(request)
    return render(request, await daily_report(request, d), format, f"daily-{d}")


@router.get(
    "/v1/reports/weekly",
    tags=["reports"],
    summary="Weekly report: volume, callbacks, key figures (周报)",
    description="The ISO week given by `week` (or containing `date`, default this week): "
    "cases against the previous week, cases per day and insurer, callbacks, complaints, "
    "dispatch timeouts and reassignments, data-entry discrepancies.",
    responses=REPORT_RESPONSES,
)
async def report_weekly(
    request: Request,
    week: Annotated[
        str | None, Query(description="ISO week like 2026-W48", examples=["2026-W48"])
    ] = None,
    day: Annotated[date | None, Query(alias="date", description="any day of the week")] = None,
    format: Fmt = None,
    token: Token = None,
) -> Response:
    _auth(request, token)
    start, end, label = _week_bounds(week, day, _today(request))
    return render(
        request, await weekly_report(request, start, end, label), format, f"weekly-{label}"
    )


@router.get(
    "/v1/reports/monthly/callbacks",
    tags=["reports"],
    summary="Monthly callback report per team and surveyor (月度回访报告)",
    description="Callbacks of the month per survey team and per surveyor: reached share, "
    "satisfaction mean, spread and 1..5 distribution, and the top dissatisfaction reasons.",
    responses=REPORT_RESPONSES,
)
async def report_monthly_callbacks(
    request: Request,
    month: Annotated[
        str | None, Query(description="YYYY-MM; default this month", examples=["2026-11"])
    ] = None,
    format: Fmt = None,
    token: Token = None,
) -> Response:
    _auth(request, token)
    start, end, label = _month_bounds(month, _today(request))
    report = await monthly_callback_report(request, start, end, label)
    return render(request, report, format, f"callbacks-{label}")


@router.get(
    "/v1/reports/monthly/quality",
    tags=["reports"],
    summary="Monthly quality report per team (月度质量报告, 考核监督)",
    description="Per survey team (组): jobs, on-time arrival rate, declines, timeouts, "
    "complaints and valid complaints, callback satisfaction and the average composite score; "
    "with every surveyor's evaluation.",
    responses=REPORT_RESPONSES,
)
async def report_monthly_quality(
    request: Request,
    month: Annotated[
        str | None, Query(description="YYYY-MM; default this month", examples=["2026-11"])
    ] = None,
    format: Fmt = None,
    token: Token = None,
) -> Response:
    _auth(request, token)
    start, end, label = _month_bounds(month, _today(request))
    report = await monthly_quality_report(request, start, end, label)
    return render(request, report, format, f"quality-{label}")


def _auth(request: Request, token: str | None) -> Principal:
    return token_principal(request, token, REPORT_ROLES)
