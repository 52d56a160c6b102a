"""Thin routes: statistics (JSON or CSV) and case history. Staff tokens only."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Annotated, Any, Literal

from claimdesk.auth import AnyStaff
from claimdesk.errors import InvalidInput, NotFound
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from analytics import queries
from analytics.history import case_history, case_state
from analytics.settings import AnalyticsSettings

router = APIRouter()
Staff = AnyStaff

From = Annotated[date | None, Query(alias="from", description="first day (inclusive), YYYY-MM-DD")]
To = Annotated[date | None, Query(description="last day (inclusive), YYYY-MM-DD")]
Format = Annotated[
    Literal["json", "csv"] | None,
    Query(description="csv: text/csv download (also chosen by `Accept: text/csv`)"),
]


class StatsResponse(BaseModel):
    """Rows of a statistics table with the filters applied."""

    filters: dict[str, Any] = Field(description="the filters applied / 所用筛选条件")
    rows: list[dict[str, Any]] = Field(description="one row per group / 每组一行")

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "filters": {"granularity": "day", "insurer": "PICC"},
                    "rows": [
                        {
                            "period": "2026-11-26",
                            "period_start": "2026-11-26",
                            "insurer_code": "PICC",
                            "loss_type": "vehicle_own_damage",
                            "channel": "insurer_api",
                            "region": "浦东",
                            "count": 12,
                        }
                    ],
                }
            ]
        }
    }


def _span(start: date | None, end: date | None) -> None:
    if start and end and start > end:
        raise InvalidInput("`from` must not be after `to`", start=str(start), end=str(end))


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    w = csv.DictWriter(buf, fieldnames=cols or ["empty"])
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def respond(
    request: Request,
    name: str,
    filters: dict[str, Any],
    rows: list[dict[str, Any]],
    fmt: str | None,
) -> Response:
    wants_csv = fmt == "csv" or (fmt is None and "text/csv" in request.headers.get("accept", ""))
    if wants_csv:
        return Response(
            "\ufeff" + to_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    clean = {k: (str(v) if isinstance(v, date) else v) for k, v in filters.items() if v is not None}
    return JSONResponse(StatsResponse(filters=clean, rows=rows).model_dump(mode="json"))


def tz_of(request: Request) -> str:
    s = request.app.state.runtime.extras.get("analytics_settings") or AnalyticsSettings()
    return str(s.timezone)


CSV_RESPONSE = {
    200: {
        "content": {
            "text/csv": {
                "example": "period,period_start,insurer_code,count\n2026-11-26,2026-11-26,PICC,12\n"
            }
        }
    },
    401: {"description": "missing or invalid bearer token"},
    403: {"description": "not a staff role"},
    422: {"description": "a bad filter, with the reason"},
}


@router.get(
    "/v1/stats/cases",
    tags=["statistics"],
    summary="Case volume per insurer x period x loss type x channel x region (案件量统计)",
    description=(
        "Cases entrusted to the firm, counted by the day they were reported (in the service's "
        "time zone), per ISO week (period like `2026-W48`) or per month. `by` chooses the "
        "dimensions to keep (the others are summed). CSV with `format=csv` or `Accept: text/csv`."
    ),
    response_model=StatsResponse,
    responses=CSV_RESPONSE,
)
async def stats_cases(
    *,
    request: Request,
    _: Staff,
    granularity: Literal["day", "week", "month"] = "day",
    insurer: str | None = Query(None, description="insurer code, e.g. PICC"),
    loss_type: str | None = None,
    channel: str | None = None,
    region: str | None = None,
    by: str | None = Query(
        None,
        description="comma-separated dimensions to keep: insurer_code, loss_type, channel, region",
        examples=["insurer_code"],
    ),
    start: From = None,
    to: To = None,
    format: Format = None,
) -> Response:
    _span(start, to)
    dims = None
    if by is not None:
        dims = [d.strip() for d in by.split(",") if d.strip()]
        bad = [d for d in dims if d not in ("insurer_code", "loss_type", "channel", "region")]
        if bad:
            raise InvalidInput(f"unknown dimension(s) in `by`: {', '.join(bad)}")
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await queries.case_volume(
            conn,
            granularity,
            start=start,
            end=to,
            insurer=insurer,
            loss_type=loss_type,
            channel=channel,
            region=region,
            by=dims,
        )
    filters = {"granularity": granularity, "insurer": insurer, "from": start, "to": to, "by": by}
    return respond(request, "cases", filters, rows, format)


@router.get(
    "/v1/stats/dispatch",
    tags=["statistics"],
    summary="Dispatch times p50/p90/p99 per day and insurer (调度时效)",
    description=(
        "Seconds from the case's report to the first assignment, the acknowledgement, the "
        "surveyor's arrival and the completed survey, as p50/p90/p99 per report day and "
        "insurer, with assignment timeouts, declines and reassignments."
    ),
    response_model=StatsResponse,
    responses=CSV_RESPONSE,
)
async def stats_dispatch(
    *,
    request: Request,
    _: Staff,
    insurer: str | None = None,
    start: From = None,
    to: To = None,
    format: Format = None,
) -> Response:
    _span(start, to)
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await queries.dispatch_times(conn, tz_of(request), start, to, insurer)
    return respond(request, "dispatch", {"insurer": insurer, "from": start, "to": to}, rows, format)


@router.get(
    "/v1/stats/surveyors",
    tags=["statistics"],
    summary="Surveyor evaluation with composite score (考核监督)",
    description=(
        "Per surveyor: jobs assigned, acknowledged, declined, timed out, arrivals and on-time "
        "arrivals, completed surveys and average survey time, complaints (valid ones), callback "
        "satisfaction, and the composite score 0..100 with weights "
        + ", ".join(f"{k} {v:.0%}" for k, v in queries.SCORE_WEIGHTS.items())
        + " (see docs/analytics.md). Ranked by score."
    ),
    response_model=StatsResponse,
    responses=CSV_RESPONSE,
)
async def stats_surveyors(
    *,
    request: Request,
    _: Staff,
    team: str | None = Query(None, description="survey team (查勘组)"),
    surveyor: str | None = None,
    start: From = None,
    to: To = None,
    format: Format = None,
) -> Response:
    _span(start, to)
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await queries.surveyor_scores(conn, start, to, team, surveyor)
    filters = {"team": team, "surveyor": surveyor, "from": start, "to": to}
    return respond(request, "surveyors", filters, rows, format)


@router.get(
    "/v1/stats/complaints",
    tags=["statistics"],
    summary="Complaints: count, valid share, on-time resolution, escalations per level (投诉统计)",
    description=(
        "Per day of receipt and insurer: complaints received, triaged, valid (有效投诉) and "
        "their share, resolved, resolved on time (by the nearest deadline clock, never "
        "breached), breached, reopened, and escalations per level (1 team lead, 2 supervisor, "
        "3+ manager)."
    ),
    response_model=StatsResponse,
    responses=CSV_RESPONSE,
)
async def stats_complaints(
    *,
    request: Request,
    _: Staff,
    insurer: str | None = None,
    start: From = None,
    to: To = None,
    format: Format = None,
) -> Response:
    _span(start, to)
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await queries.complaint_stats(conn, start, to, insurer)
    return respond(
        request, "complaints", {"insurer": insurer, "from": start, "to": to}, rows, format
    )


@router.get(
    "/v1/stats/callbacks",
    tags=["statistics"],
    summary="Callbacks: reached share and satisfaction spread (回访统计)",
    description="Grouped by `group` = day (default), insurer, team or surveyor.",
    response_model=StatsResponse,
    responses=CSV_RESPONSE,
)
async def stats_callbacks(
    *,
    request: Request,
    _: Staff,
    insurer: str | None = None,
    group: Literal["day", "insurer", "team", "surveyor"] = "day",
    start: From = None,
    to: To = None,
    format: Format = None,
) -> Response:
    _span(start, to)
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await queries.callback_stats(conn, start, to, insurer, group)
    filters = {"insurer": insurer, "group": group, "from": start, "to": to}
    return respond(request, "callbacks", filters, rows, format)


@router.get(
    "/v1/stats/discrepancies",
    tags=["statistics"],
    summary="Data-entry discrepancies per agent (登记差错)",
    description="Differences between the insurer's post and the agent's registration, per agent.",
    response_model=StatsResponse,
    responses=CSV_RESPONSE,
)
async def stats_discrepancies(
    *,
    request: Request,
    _: Staff,
    agent: str | None = None,
    start: From = None,
    to: To = None,
    format: Format = None,
) -> Response:
    _span(start, to)
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await queries.discrepancy_stats(conn, start, to, agent)
    return respond(
        request, "discrepancies", {"agent": agent, "from": start, "to": to}, rows, format
    )


class HistoryItem(BaseModel):
    event_id: str
    type: str = Field(description="event type / 事件类型")
    context: str = Field(description="the service that recorded it / 记录服务")
    producer: str
    occurred_at: datetime = Field(description="when it happened / 发生时间")
    recorded_at: datetime = Field(description="when it was recorded / 记录时间")
    actor: str | None = Field(description="who caused it / 操作人")
    stream_id: str
    sequence: int
    known_type: bool = Field(description="false: a type analytics does not know yet")
    payload: dict[str, Any]


class CaseHistory(BaseModel):
    case_id: str
    as_of: datetime | None = Field(None, description="history as known at this time / 截至时间")
    state: dict[str, Any] = Field(
        description="the case as it stood (status, surveyor, open complaints) / 当时状态"
    )
    events: list[HistoryItem]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "case_id": "C-20261126-0001",
                    "as_of": "2026-11-26T14:05:00+08:00",
                    "state": {
                        "status": "assigned",
                        "surveyor_id": "S-007",
                        "open_complaints": [],
                    },
                    "events": [
                        {
                            "event_id": "5f0c...",
                            "type": "CaseReported",
                            "context": "intake",
                            "producer": "intake",
                            "occurred_at": "2026-11-26T13:58:00+08:00",
                            "recorded_at": "2026-11-26T13:58:00+08:00",
                            "actor": "insurer:PICC",
                            "stream_id": "case-C-20261126-0001",
                            "sequence": 1,
                            "known_type": True,
                            "payload": {"insurer_code": "PICC"},
                        }
                    ],
                }
            ]
        }
    }


@router.get(
    "/v1/cases/{case_id}/history",
    tags=["history"],
    summary="Every event of a case from all services, and its state as of a time (案件轨迹)",
    description=(
        "Events in the order they happened, with when they were recorded and who acted. "
        "`as_of` (ISO 8601 with offset) keeps only what had been recorded by then and returns "
        "the case as it stood: status, surveyor, open complaints."
    ),
    response_model=CaseHistory,
    responses={404: {"description": "no event of this case is known"}},
)
async def history(
    *,
    request: Request,
    case_id: str,
    _: Staff,
    as_of: Annotated[
        datetime | None,
        Query(description="ISO 8601 timestamp with offset", examples=["2026-11-26T14:05:00+08:00"]),
    ] = None,
) -> CaseHistory:
    if as_of is not None and as_of.tzinfo is None:
        raise InvalidInput("`as_of` needs a time zone offset, e.g. 2026-11-26T14:05:00+08:00")
    async with request.app.state.runtime.pool.acquire() as conn:
        events = await case_history(conn, case_id, as_of)
        if not events and not await conn.fetchval(
            "SELECT 1 FROM case_events WHERE case_id = $1 LIMIT 1", case_id
        ):
            raise NotFound(f"no events known for case {case_id}")
    state = case_state(case_id, events)
    return CaseHistory(
        case_id=case_id,
        as_of=as_of,
        state=state,
        events=[HistoryItem(**e) for e in events],
    )
