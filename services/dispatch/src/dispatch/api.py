"""Thin HTTP edges: parse, authorise, call a handler, shape the answer."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from claimdesk.auth import (
    Principal,
    issue_token,
    principal_for_token,
    require_roles,
)
from claimdesk.context import set_actor
from claimdesk.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from claimdesk.events.dispatch import (
    SurveyorAvailabilityChanged,
    SurveyorDetailsChanged,
    SurveyorLocationUpdated,
    SurveyorRetired,
    SurveyorShiftEnded,
    SurveyorShiftStarted,
)
from claimdesk.mainland import Phone
from claimdesk.service import Runtime
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sse_starlette.sse import EventSourceResponse

from dispatch import access as dispatch_access
from dispatch import domain, handlers, policy
from dispatch.handlers import dsettings
from dispatch.stream import feed_events

router = APIRouter()

DISPATCH_ROLES = ("dispatcher", "team_lead", "supervisor", "manager")
STAFF = ("agent", "dispatcher", "team_lead", "supervisor", "manager")
Dispatcher = Annotated[Principal, Depends(require_roles(*DISPATCH_ROLES))]
Staff = Annotated[Principal, Depends(require_roles(*STAFF))]
Anyone = Annotated[Principal, Depends(require_roles(*STAFF, "surveyor"))]


def rt_of(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _self_or_staff(p: Principal, surveyor_id: str) -> None:
    if p.role == "surveyor" and p.subject != surveyor_id:
        raise Forbidden("a surveyor may only act for themself")


# -- models --------------------------------------------------------------------------------

Skill = Literal["vehicle", "heavy_vehicle", "injury", "property"]


class ShiftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days: list[int] = Field(
        default=[0, 1, 2, 3, 4, 5, 6],
        description="weekdays, 0 = Monday / 星期 (0=周一)",
        examples=[[0, 1, 2, 3, 4]],
    )
    start: str = Field(
        description="local start time HH:MM (Asia/Shanghai) / 上班时间", examples=["08:00"]
    )
    end: str = Field(
        description="local end time HH:MM; earlier than start spans midnight / 下班时间",
        examples=["20:00"],
    )

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[int]) -> list[int]:
        if not v or any(d < 0 or d > 6 for d in v):
            raise ValueError("days must be a non-empty list of 0..6")
        return sorted(set(v))

    @field_validator("start", "end")
    @classmethod
    def _time(cls, v: str) -> str:
        try:
            datetime.strptime(v, "%H:%M")
        except ValueError:
            raise ValueError("use HH:MM, e.g. 08:00") from None
        return v


class SurveyorIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "王建国",
                    "phone": "13800138001",
                    "team": "浦东一组",
                    "skills": ["vehicle", "injury"],
                    "regions": ["浦东新区"],
                    "base_lat": 31.2215,
                    "base_lon": 121.5447,
                    "capacity": 3,
                    "shifts": [{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "20:00"}],
                }
            ]
        },
    )
    name: str = Field(min_length=1, max_length=100, description="full name / 姓名")
    phone: Phone = Field(description="mobile number / 手机号")
    team: str = Field(min_length=1, max_length=60, description="survey team / 查勘组")
    skills: list[Skill] = Field(min_length=1, description="what they may survey / 技能")
    regions: list[str] = Field(
        default=[], description="districts covered; empty = all / 负责区域 (空=全部)"
    )
    base_lat: float = Field(ge=-90, le=90, description="home base latitude / 驻点纬度")
    base_lon: float = Field(ge=-180, le=180, description="home base longitude / 驻点经度")
    capacity: int = Field(3, ge=1, le=20, description="open jobs at once / 同时可接任务数")
    shifts: list[ShiftIn] = Field(
        default=[], description="weekly shifts; empty = on call 24/7 / 班次"
    )


class SurveyorPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"capacity": 4, "regions": ["浦东新区", "闵行区"]}]},
    )
    name: str | None = Field(None, min_length=1, max_length=100)
    phone: Phone | None = None
    team: str | None = Field(None, min_length=1, max_length=60)
    skills: list[Skill] | None = Field(None, min_length=1)
    regions: list[str] | None = None
    base_lat: float | None = Field(None, ge=-90, le=90)
    base_lon: float | None = Field(None, ge=-180, le=180)
    capacity: int | None = Field(None, ge=1, le=20)
    shifts: list[ShiftIn] | None = None


class SurveyorCreated(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "surveyor_id": "S-1A2B3C4D",
                    "token": "eyJhbGciOiJIUzI1NiIs...",
                    "surveyor": {"surveyor_id": "S-1A2B3C4D", "name": "王建国", "team": "浦东一组"},
                }
            ]
        }
    )
    surveyor_id: str = Field(examples=["S-1A2B3C4D"])
    token: str = Field(description="the surveyor's bearer token for the app and the stream")
    surveyor: dict[str, Any]


class _ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500, description="why / 原因")


class RetireIn(_ReasonIn):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "left the firm"}]})


class RotateIn(_ReasonIn):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "phone lost"}]})


class AvailabilityIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"available": False, "reason": "vehicle in repair"}]},
    )
    available: bool = Field(description="can take new jobs / 是否可接单")
    reason: str = Field("", max_length=500)


class LocationIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"lat": 31.2304, "lon": 121.4737, "device_time": None}]},
    )
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    device_time: datetime | None = Field(None, description="when the device took the fix")


class StepIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"device_time": "2026-11-26T08:41:00+08:00"}]},
    )
    device_time: datetime | None = Field(
        None,
        description="when it happened on the device (kept as occurred_at; receive time is "
        "recorded_at) / 设备时间",
    )

    @field_validator("device_time")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("device_time needs a time zone offset, e.g. +08:00")
        return v


class CompleteIn(StepIn):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"loss_estimate": 4800.0, "photo_count": 12, "notes": "前保险杠及大灯损坏"}
            ]
        },
    )
    loss_estimate: float | None = Field(None, ge=0, description="estimated loss, CNY / 定损金额")
    photo_count: int = Field(0, ge=0, le=10000, description="photos taken / 照片数")
    notes: str = Field("", max_length=4000, description="survey notes / 查勘意见")


class DeclineIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "stuck on another scene"}]}
    )
    reason: str = Field(min_length=1, max_length=500, description="why / 拒单原因")


class AssignIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"surveyor_id": "S-1A2B3C4D", "reason": "team lead asked"}]
        },
    )
    surveyor_id: str = Field(min_length=1)
    reason: str = Field(min_length=1, max_length=500, description="why this surveyor / 指派原因")


class AckTimeoutsIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"default_s": 300, "by_insurer": {"PICC": 240}, "by_priority": {"urgent": 120}}
            ]
        },
    )
    default_s: float = Field(
        gt=0, le=86400, description="default deadline in seconds / 默认确认时限"
    )
    by_insurer: dict[str, float] = Field(default={}, description="per insurer code / 按保险公司")
    by_priority: dict[Literal["normal", "urgent"], float] = Field(
        default={}, description="per priority / 按优先级"
    )

    @model_validator(mode="after")
    def _positive(self) -> AckTimeoutsIn:
        for v in [*self.by_insurer.values(), *self.by_priority.values()]:
            if not 0 < v <= 86400:
                raise ValueError("every timeout must be between 0 and 86400 seconds")
        return self


class PrefsIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"preferred_teams": ["浦东一组"], "avoided_surveyors": []}]
        },
    )
    preferred_teams: list[str] = []
    preferred_surveyors: list[str] = []
    avoided_surveyors: list[str] = []


class WebhookIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"url": "http://127.0.0.1:9000/jobs", "secret": "a-long-shared-secret"}]
        },
    )
    url: str = Field(pattern=r"^https?://", max_length=2000)
    secret: str = Field(min_length=16, max_length=200, description="HMAC-SHA256 key")


JOB_EXAMPLE = {
    "job_id": "J-C20261126-0001",
    "case_id": "C20261126-0001",
    "surveyor_id": "S-1A2B3C4D",
    "status": "assigned",
    "attempt": 1,
    "insurer_code": "PICC",
    "plate": "沪A12345",
    "loss_address": "上海市浦东新区世纪大道100号",
    "ack_due_at": "2026-11-26T08:45:00+00:00",
    "assignment": {
        "policy_version": policy.VERSION,
        "reason": "best of 12 eligible (of 60): S-1A2B3C4D (浦东一组) score 71.2: ~9 min away, "
        "0/3 open jobs, 1 jobs today",
        "candidates": [
            {"surveyor_id": "S-1A2B3C4D", "score": 71.2, "factors": {"travel_min": 9.1}}
        ],
    },
    "allowed_steps": ["ack", "decline", "assign", "cancel"],
    "timeline": [{"event_type": "JobOpened"}, {"event_type": "SurveyorAssigned"}],
}


SURVEYOR_EXAMPLE: dict[str, Any] = {
    "surveyor_id": "S-1A2B3C4D",
    "name": "王建国",
    "phone": "13800138001",
    "team": "浦东一组",
    "skills": ["vehicle", "injury"],
    "regions": ["浦东新区"],
    "base_lat": 31.2215,
    "base_lon": 121.5447,
    "lat": 31.2215,
    "lon": 121.5447,
    "capacity": 3,
    "shifts": [{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "20:00"}],
    "available": True,
    "availability_reason": "",
    "on_shift": True,
    "retired": False,
    "open_jobs": 1,
    "assigned_today": 4,
}
ACK_EXAMPLE = {"default_s": 300, "by_insurer": {"PICC": 240}, "by_priority": {"urgent": 120}}


def ex(example: Any) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {"application/json": {"example": example}}}}


def _job_responses() -> dict[int | str, dict[str, Any]]:
    return {
        200: {"content": {"application/json": {"example": JOB_EXAMPLE}}},
        409: {
            "content": {
                "application/json": {
                    "example": {
                        "error": "conflict",
                        "message": "cannot arrived a job that is assigned; allowed now: ack, "
                        "decline, assign, cancel",
                        "details": {"status": "assigned", "allowed": ["ack", "decline"]},
                    }
                }
            }
        },
    }


# -- surveyors -----------------------------------------------------------------------------


def _token_for(rt: Runtime, sid: str, name: str, team: str, generation: int = 0) -> str:
    token, _ = issue_token(
        rt.settings.secret(),
        subject=sid,
        role="surveyor",
        now=rt.clock.now(),
        ttl=timedelta(seconds=rt.settings.token_ttl_s),
        name=name,
        number=sid,
        team=team,
        generation=generation,
    )
    return str(token)


@router.post(
    "/v1/surveyors",
    tags=["surveyors"],
    status_code=201,
    response_model=SurveyorCreated,
    summary="Register a surveyor (公估师/查勘员)",
    description="Adds a surveyor to a survey team (查勘组) and returns their id and bearer token. "
    "Dispatcher, team lead or admin.",
)
async def register(body: SurveyorIn, request: Request, p: Dispatcher) -> SurveyorCreated:
    rt = rt_of(request)
    set_actor(p.actor)
    new = handlers.NewSurveyor(
        name=body.name,
        phone=body.phone,
        team=body.team,
        skills=list(dict.fromkeys(body.skills)),
        regions=body.regions,
        base_lat=body.base_lat,
        base_lon=body.base_lon,
        capacity=body.capacity,
        shifts=[s.model_dump() for s in body.shifts],
    )
    async with rt.pool.acquire() as conn, conn.transaction():
        sid = await handlers.register_surveyor(rt, conn, new)
        assert sid is not None
        view = await handlers.surveyor_view(conn, sid, rt.clock.now())
    return SurveyorCreated(
        surveyor_id=sid, token=_token_for(rt, sid, body.name, body.team), surveyor=view
    )


@router.get(
    "/v1/surveyors",
    tags=["surveyors"],
    summary="List surveyors with their load",
    description="Every active surveyor (or one team) with open jobs, jobs today, shift and availability.",
    responses=ex([SURVEYOR_EXAMPLE]),
)
async def list_surveyors(
    request: Request,
    p: Staff,
    team: str | None = None,
    include_retired: bool = False,
) -> list[dict[str, Any]]:
    rt = rt_of(request)
    async with rt.pool.acquire() as conn:
        return await handlers.surveyors_list(
            conn, rt.clock.now(), team=team, include_retired=include_retired
        )


@router.get(
    "/v1/surveyors/{surveyor_id}",
    tags=["surveyors"],
    summary="One surveyor",
    description="The surveyor's details, shift, availability and load. Staff, or the surveyor themself.",
    responses=ex(SURVEYOR_EXAMPLE),
)
async def get_surveyor(surveyor_id: str, request: Request, p: Anyone) -> dict[str, Any]:
    _self_or_staff(p, surveyor_id)
    rt = rt_of(request)
    async with rt.pool.acquire() as conn:
        return await handlers.surveyor_view(conn, surveyor_id, rt.clock.now())


@router.patch(
    "/v1/surveyors/{surveyor_id}",
    tags=["surveyors"],
    summary="Edit a surveyor",
    description="Changes the given fields (SurveyorDetailsChanged).",
    responses=ex(SURVEYOR_EXAMPLE),
)
async def edit_surveyor(
    surveyor_id: str, body: SurveyorPatch, request: Request, p: Dispatcher
) -> dict[str, Any]:
    set_actor(p.actor)
    changes = body.model_dump(exclude_unset=True, mode="json")
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        raise InvalidInput("nothing to change")
    return await handlers.surveyor_event(
        rt_of(request),
        surveyor_id,
        SurveyorDetailsChanged(surveyor_id=surveyor_id, changes=changes),
    )


@router.post(
    "/v1/surveyors/{surveyor_id}/retire",
    tags=["surveyors"],
    summary="Retire a surveyor",
    description="The surveyor gets no more jobs (SurveyorRetired). Open jobs stay until reassigned.",
    responses=ex({**SURVEYOR_EXAMPLE, "retired": True}),
)
async def retire(
    surveyor_id: str, body: RetireIn, request: Request, p: Dispatcher
) -> dict[str, Any]:
    set_actor(p.actor)
    rt = rt_of(request)
    view = await handlers.surveyor_event(
        rt, surveyor_id, SurveyorRetired(surveyor_id=surveyor_id, reason=body.reason)
    )
    if (access := dispatch_access.of(rt)) is not None:
        access.note(surveyor_id, retired=True)
    return view


class TokenRotated(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "surveyor_id": "S-1A2B3C4D",
                    "token": "eyJhbGciOiJIUzI1NiIs...",
                    "token_generation": 2,
                }
            ]
        }
    )
    surveyor_id: str
    token: str = Field(description="the new bearer token, shown once / 新令牌(仅显示一次)")
    token_generation: int = Field(
        description="tokens of a lower generation are refused / 低于此代的令牌失效"
    )


@router.post(
    "/v1/surveyors/{surveyor_id}/token/rotate",
    tags=["surveyors"],
    summary="Rotate a surveyor's token",
    description="Issues a new token and voids every earlier one of this surveyor "
    "(SurveyorTokenRotated): a lost or handed-on phone. Within seconds every dispatch process "
    "answers the old token 401 and its live stream ends. A retired surveyor's tokens are "
    "all refused already (409 here). Dispatcher, team lead or admin.",
    response_model=TokenRotated,
    responses={
        404: {
            "content": {
                "application/json": {
                    "example": {"error": "not_found", "message": "no surveyor S-1"}
                }
            }
        },
        409: {
            "content": {
                "application/json": {
                    "example": {"error": "conflict", "message": "surveyor S-1 is retired"}
                }
            }
        },
    },
)
async def rotate_token(
    surveyor_id: str, body: RotateIn, request: Request, p: Dispatcher
) -> TokenRotated:
    set_actor(p.actor)
    rt = rt_of(request)
    row = await handlers.rotate_surveyor_token(rt, surveyor_id, body.reason)
    generation = int(row["token_generation"])
    if (access := dispatch_access.of(rt)) is not None:
        access.note(surveyor_id, generation=generation)
    return TokenRotated(
        surveyor_id=surveyor_id,
        token=_token_for(rt, surveyor_id, row["name"], row["team"], generation),
        token_generation=generation,
    )


@router.post(
    "/v1/surveyors/{surveyor_id}/availability",
    tags=["surveyors"],
    summary="Set availability",
    description="SurveyorAvailabilityChanged. The surveyor or a dispatcher.",
    responses=ex({**SURVEYOR_EXAMPLE, "available": False}),
)
async def availability(
    surveyor_id: str, body: AvailabilityIn, request: Request, p: Anyone
) -> dict[str, Any]:
    _self_or_staff(p, surveyor_id)
    set_actor(p.actor)
    return await handlers.surveyor_event(
        rt_of(request),
        surveyor_id,
        SurveyorAvailabilityChanged(
            surveyor_id=surveyor_id, available=body.available, reason=body.reason
        ),
    )


@router.post(
    "/v1/surveyors/{surveyor_id}/shift/{action}",
    tags=["surveyors"],
    summary="Start or end a shift",
    description="`start` (SurveyorShiftStarted) or `end` "
    "(SurveyorShiftEnded); overrides the weekly schedule until the next one.",
    responses=ex(SURVEYOR_EXAMPLE),
)
async def shift(
    surveyor_id: str, action: Literal["start", "end"], request: Request, p: Anyone
) -> dict[str, Any]:
    _self_or_staff(p, surveyor_id)
    set_actor(p.actor)
    event = (
        SurveyorShiftStarted(surveyor_id=surveyor_id)
        if action == "start"
        else SurveyorShiftEnded(surveyor_id=surveyor_id)
    )
    return await handlers.surveyor_event(rt_of(request), surveyor_id, event)


@router.post(
    "/v1/surveyors/{surveyor_id}/location",
    tags=["surveyors"],
    summary="Report a position",
    description="SurveyorLocationUpdated; travel estimates use the latest position.",
    responses=ex(SURVEYOR_EXAMPLE),
)
async def location(
    surveyor_id: str, body: LocationIn, request: Request, p: Anyone
) -> dict[str, Any]:
    _self_or_staff(p, surveyor_id)
    set_actor(p.actor)
    return await handlers.surveyor_event(
        rt_of(request),
        surveyor_id,
        SurveyorLocationUpdated(surveyor_id=surveyor_id, lat=body.lat, lon=body.lon),
        occurred_at=body.device_time,
    )


@router.post(
    "/v1/surveyors/{surveyor_id}/token",
    tags=["surveyors"],
    summary="Issue another token",
    description="One more bearer token for the surveyor's app (a second device); the earlier "
    "ones keep working. For a lost phone use `/token/rotate`, which voids them. 409 for a "
    "retired surveyor.",
    responses=ex({"surveyor_id": "S-1A2B3C4D", "token": "eyJhbGciOi...", "token_generation": 0}),
)
async def new_token(surveyor_id: str, request: Request, p: Dispatcher) -> dict[str, Any]:
    rt = rt_of(request)
    async with rt.pool.acquire() as conn:
        row = await handlers.signable_surveyor(conn, surveyor_id)
    generation = int(row["token_generation"])
    token = _token_for(rt, surveyor_id, row["name"], row["team"], generation)
    return {"surveyor_id": surveyor_id, "token": token, "token_generation": generation}


@router.get(
    "/v1/me",
    tags=["surveyors"],
    summary="Who am I",
    description="The caller's identity from the token.",
    responses=ex(
        {
            "subject": "S-1A2B3C4D",
            "role": "surveyor",
            "name": "王建国",
            "number": "S-1A2B3C4D",
            "team": "浦东一组",
        }
    ),
)
async def me(p: Anyone) -> dict[str, Any]:
    out: dict[str, Any] = p.model_dump()
    return out


def _stream_principal(request: Request, access_token: str | None) -> Principal:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else (access_token or "")
    if not token:
        raise Unauthorized("missing bearer token (Authorization header or access_token query)")
    return principal_for_token(rt_of(request), token)


@router.get(
    "/v1/surveyors/{surveyor_id}/jobs/stream",
    tags=["surveyors"],
    summary="Live job stream (server-sent events)",
    description="The surveyor's jobs as they are assigned, changed or taken away. Resumable with "
    "`Last-Event-ID` (or `?last_event_id=`); heartbeats as SSE comments. Browsers' EventSource "
    "cannot send headers, so `?access_token=` is accepted too. Once the token is refused "
    "(rotated, surveyor retired, revoked) one `revoked` event {reason} ends the stream. "
    "See docs/dispatch.md.",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    "example": "event: job\nid: 42\ndata: "
                    '{"kind": "assigned", "seq": 42, "job": {}}\n\n'
                }
            }
        }
    },
)
async def jobs_stream(
    surveyor_id: str,
    request: Request,
    access_token: str | None = None,
    last_event_id: int | None = Query(None, ge=0),
) -> EventSourceResponse:
    p = _stream_principal(request, access_token)
    if p.role == "surveyor":
        _self_or_staff(p, surveyor_id)
    elif p.role not in (*DISPATCH_ROLES, "admin"):
        raise Forbidden(f"role {p.role} may not watch a surveyor's stream")
    rt = rt_of(request)
    async with rt.pool.acquire() as conn:
        if not await conn.fetchval("SELECT 1 FROM surveyors WHERE surveyor_id = $1", surveyor_id):
            raise NotFound(f"no surveyor {surveyor_id}")
    header = request.headers.get("last-event-id")
    last = last_event_id
    if header is not None:
        if not header.strip().isdigit():
            raise InvalidInput("Last-Event-ID must be a feed position (a number)")
        last = int(header.strip())
    return EventSourceResponse(
        feed_events(rt, surveyor_id, last, p),
        ping=dsettings(rt).heartbeat_s,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# -- jobs ----------------------------------------------------------------------------------


@router.get(
    "/v1/jobs",
    tags=["jobs"],
    summary="Find jobs",
    description="Filter by case, surveyor and status. A surveyor sees only their own jobs.",
    responses={200: {"content": {"application/json": {"example": [JOB_EXAMPLE]}}}},
)
async def list_jobs(  # noqa: PLR0917
    request: Request,
    p: Anyone,
    case_id: str | None = None,
    surveyor_id: str | None = None,
    status: Literal[
        "queued",
        "assigned",
        "acknowledged",
        "en_route",
        "arrived",
        "survey_completed",
        "closed",
        "cancelled",
    ]
    | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> list[dict[str, Any]]:
    if p.role == "surveyor":
        if surveyor_id not in (None, p.subject):
            raise Forbidden("a surveyor may only list their own jobs")
        surveyor_id = p.subject
    rt = rt_of(request)
    async with rt.pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT * FROM jobs WHERE ($1::text IS NULL OR case_id = $1)
                 AND ($2::text IS NULL OR surveyor_id = $2) AND ($3::text IS NULL OR status = $3)
               ORDER BY opened_at DESC LIMIT $4""",
            case_id,
            surveyor_id,
            status,
            limit,
        )
    return [handlers.job_json(r) for r in rows]


@router.get(
    "/v1/jobs/{job_id}",
    tags=["jobs"],
    summary="One job, with why this surveyor",
    description="The job, its assignment (candidates, scores, policy version, reason), the "
    "steps allowed now and its timeline (occurred_at = device time, recorded_at = receive time).",
    responses=_job_responses(),
)
async def get_job(job_id: str, request: Request, p: Anyone) -> dict[str, Any]:
    rt = rt_of(request)
    async with rt.pool.acquire() as conn:
        view = await handlers.job_view(rt, conn, job_id)
    if p.role == "surveyor" and view["surveyor_id"] != p.subject:
        tried = [
            c
            for c in (view.get("timeline") or [])
            if p.subject in (c.get("surveyor_id"), c.get("to_surveyor_id"))
        ]
        if not tried:
            raise Forbidden("this job is not assigned to you")
    return view


def _step(name: str, p: Principal, body: StepIn | None = None) -> domain.Step:
    extra: dict[str, Any] = {}
    if isinstance(body, CompleteIn):
        extra = {
            "loss_estimate": body.loss_estimate,
            "photo_count": body.photo_count,
            "notes": body.notes,
        }
    return domain.Step(
        name=name,
        actor_surveyor=p.subject if p.role == "surveyor" else None,
        actor=p.actor,
        **extra,
    )


StepRoles = Annotated[Principal, Depends(require_roles(*DISPATCH_ROLES, "surveyor"))]


def _simple_step(step: str, summary: str, description: str) -> None:
    """Register POST /v1/jobs/{job_id}/<step>: a lifecycle step with only a device time."""

    async def endpoint(
        job_id: str, request: Request, p: StepRoles, body: StepIn | None = None
    ) -> dict[str, Any]:
        set_actor(p.actor)
        return await handlers.job_step(
            rt_of(request), job_id, _step(step, p), body.device_time if body else None
        )

    endpoint.__name__ = step.replace("-", "_")
    router.post(
        f"/v1/jobs/{{job_id}}/{step}",
        tags=["jobs"],
        summary=summary,
        description=description,
        responses=_job_responses(),
    )(endpoint)


for _step_name, _summary, _description in (
    (
        "ack",
        "Acknowledge receipt (收到)",
        "The surveyor confirms they got the job; stops the ack deadline. After a "
        "reassignment the old surveyor gets 409 saying the job moved.",
    ),
    (
        "en-route",
        "On my way (出发)",
        "SurveyorEnRoute; the customer gets a text that the surveyor is coming.",
    ),
    ("arrived", "Arrived (到达现场)", "SurveyorArrived at the scene or repair shop."),
    ("close", "Close the job (结案)", "CaseClosed: the field work is finished."),
):
    _simple_step(_step_name, _summary, _description)


@router.post(
    "/v1/jobs/{job_id}/complete",
    tags=["jobs"],
    summary="Survey completed (查勘定损完成)",
    description="SurveyCompleted with loss estimate, photo count and notes.",
    responses=_job_responses(),
)
async def complete(
    job_id: str, request: Request, p: StepRoles, body: CompleteIn | None = None
) -> dict[str, Any]:
    set_actor(p.actor)
    body = body or CompleteIn()
    return await handlers.job_step(
        rt_of(request), job_id, _step("complete", p, body), body.device_time
    )


@router.post(
    "/v1/jobs/{job_id}/decline",
    tags=["jobs"],
    summary="Decline the job",
    description="JobDeclined with the reason, then the next best surveyor (or the "
    "dispatcher queue).",
    responses=_job_responses(),
)
async def decline(job_id: str, body: DeclineIn, request: Request, p: StepRoles) -> dict[str, Any]:
    set_actor(p.actor)
    who = p.subject if p.role == "surveyor" else None
    return await handlers.job_decline(rt_of(request), job_id, who, body.reason)


@router.post(
    "/v1/jobs/{job_id}/assign",
    tags=["dispatcher"],
    summary="Assign or reassign by hand",
    description="A dispatcher picks the surveyor, with a reason (SurveyorAssigned or "
    "SurveyorReassigned, assigned_by = the dispatcher).",
    responses=_job_responses(),
)
async def assign(job_id: str, body: AssignIn, request: Request, p: Dispatcher) -> dict[str, Any]:
    set_actor(p.actor)
    return await handlers.manual_assign(
        rt_of(request), job_id, body.surveyor_id, body.reason, p.actor
    )


# -- dispatcher ----------------------------------------------------------------------------


@router.get(
    "/v1/dispatch/queue",
    tags=["dispatcher"],
    summary="The dispatcher queue",
    description="Jobs waiting for a human (unassigned, timed out, declined; `call_the_team` "
    "first) and assignments whose acknowledgement is overdue.",
    responses=ex(
        {
            "queued": [
                {
                    **JOB_EXAMPLE,
                    "status": "queued",
                    "surveyor_id": None,
                    "queue": {
                        "kind": "timed_out",
                        "reason": "3 assignment(s) without acknowledgement: call the team",
                        "call_the_team": True,
                    },
                }
            ],
            "overdue_acks": [],
            "awaiting_ack": 4,
        }
    ),
)
async def queue(request: Request, p: Dispatcher) -> dict[str, Any]:
    rt = rt_of(request)
    async with rt.pool.acquire() as conn:
        queued = await conn.fetch(
            "SELECT * FROM jobs WHERE status = 'queued' ORDER BY call_the_team DESC, "
            "priority = 'urgent' DESC, opened_at"
        )
        overdue = await conn.fetch(
            "SELECT * FROM jobs WHERE status = 'assigned' AND ack_due_at < $1 ORDER BY ack_due_at",
            rt.clock.now(),
        )
        waiting = await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'assigned'")
    return {
        "queued": [handlers.job_json(r) for r in queued],
        "overdue_acks": [handlers.job_json(r) for r in overdue],
        "awaiting_ack": waiting,
    }


@router.get(
    "/v1/dispatch/ack-timeouts",
    tags=["dispatcher"],
    summary="Acknowledgement deadlines",
    description="The deadline in force: default, per insurer and per priority (seconds).",
    responses=ex(ACK_EXAMPLE),
)
async def get_ack_timeouts(request: Request, p: Staff) -> dict[str, Any]:
    rt = rt_of(request)
    async with rt.pool.acquire() as conn:
        return await handlers.ack_timeouts(rt, conn)


@router.put(
    "/v1/dispatch/ack-timeouts",
    tags=["dispatcher"],
    summary="Set acknowledgement deadlines",
    description="Applies to assignments made from now on. With both an insurer and a priority "
    "setting, the shorter wins; otherwise a specific setting beats the default.",
    responses=ex(ACK_EXAMPLE),
)
async def put_ack_timeouts(body: AckTimeoutsIn, request: Request, p: Dispatcher) -> dict[str, Any]:
    rt = rt_of(request)
    async with rt.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO dispatch_config (key, value) VALUES ('ack_timeouts', $1) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            body.model_dump(),
        )
        return await handlers.ack_timeouts(rt, conn)


@router.put(
    "/v1/dispatch/insurer-preferences/{insurer_code}",
    tags=["dispatcher"],
    summary="Insurer preferences",
    description="Teams or surveyors an insurer prefers "
    "(a score bonus) or does not want (excluded).",
    responses=ex(
        {
            "insurer_code": "PICC",
            "preferred_teams": ["浦东一组"],
            "preferred_surveyors": [],
            "avoided_surveyors": [],
        }
    ),
)
async def put_prefs(
    insurer_code: str, body: PrefsIn, request: Request, p: Dispatcher
) -> dict[str, Any]:
    rt = rt_of(request)
    async with rt.pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO insurer_prefs VALUES ($1, $2, $3, $4) ON CONFLICT (insurer_code) DO UPDATE
               SET preferred_teams = $2, preferred_surveyors = $3, avoided_surveyors = $4""",
            insurer_code,
            body.preferred_teams,
            body.preferred_surveyors,
            body.avoided_surveyors,
        )
    return {"insurer_code": insurer_code, **body.model_dump()}


@router.get(
    "/v1/teams",
    tags=["surveyors"],
    summary="Survey teams (查勘组) and their load",
    description="Each team with its active surveyors, how many are on shift and available, "
    "open jobs against capacity, and whether it has a webhook.",
    responses=ex(
        [
            {
                "team": "浦东一组",
                "surveyors": 8,
                "on_duty": 5,
                "open_jobs": 6,
                "capacity": 24,
                "webhook": True,
            }
        ]
    ),
)
async def teams(request: Request, p: Staff) -> list[dict[str, Any]]:
    rt = rt_of(request)
    async with rt.pool.acquire() as conn:
        roster = await handlers.surveyors_list(conn, rt.clock.now())
        hooks = {r["team"] for r in await conn.fetch("SELECT team FROM team_webhooks")}
    out: dict[str, dict[str, Any]] = {}
    for s in roster:
        t = out.setdefault(
            s["team"],
            {"team": s["team"], "surveyors": 0, "on_duty": 0, "open_jobs": 0, "capacity": 0},
        )
        t["surveyors"] += 1
        t["on_duty"] += int(s["on_shift"] and s["available"])
        t["open_jobs"] += s["open_jobs"]
        t["capacity"] += s["capacity"]
    return [
        {**t, "webhook": t["team"] in hooks} for t in sorted(out.values(), key=lambda t: t["team"])
    ]


@router.put(
    "/v1/teams/{team}/webhook",
    tags=["dispatcher"],
    summary="Set a team's webhook",
    description="Each new assignment to the team is POSTed there, signed: header "
    "`X-ClaimDesk-Signature: sha256=HMAC(secret, <X-ClaimDesk-Timestamp>.<body>)`; "
    "non-2xx or errors are retried with doubling delays.",
    responses=ex({"team": "浦东一组", "url": "http://127.0.0.1:9000/jobs"}),
)
async def put_webhook(
    team: str, body: WebhookIn, request: Request, p: Dispatcher
) -> dict[str, str]:
    rt = rt_of(request)
    async with rt.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO team_webhooks VALUES ($1, $2, $3) ON CONFLICT (team) DO UPDATE "
            "SET url = $2, secret = $3",
            team,
            body.url,
            body.secret,
        )
    return {"team": team, "url": body.url}


@router.delete(
    "/v1/teams/{team}/webhook",
    tags=["dispatcher"],
    summary="Remove a team's webhook",
    description="No more webhook pushes for the team.",
    responses=ex({"team": "浦东一组", "deleted": True}),
)
async def delete_webhook(team: str, request: Request, p: Dispatcher) -> JSONResponse:
    rt = rt_of(request)
    async with rt.pool.acquire() as conn:
        n = await conn.execute("DELETE FROM team_webhooks WHERE team = $1", team)
    if n.endswith(" 0"):
        raise NotFound(f"team {team} has no webhook")
    return JSONResponse({"team": team, "deleted": True})
