"""Thin HTTP edges: parse, authorise, call a handler, shape the answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from claimdesk.auth import Principal
from claimdesk.http import LeanRoute, error_body
from claimdesk.service import Runtime
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import Field, TypeAdapter, ValidationError

from intake import handlers, identity, pages, webhooks
from intake.documents import checklist
from intake.identity import allow
from intake.schemas import (
    CancelIn,
    CaseCreated,
    CaseIn,
    CaseOut,
    CasePage,
    CaseStatus,
    ChecklistIn,
    ChecklistOut,
    ConsultationIn,
    ConsultationOut,
    CorrectionIn,
    DeliveryOut,
    DiscrepancyOut,
    HandoverIn,
    InsurerIn,
    InsurerKey,
    InsurerOut,
    InsurerRef,
    LossType,
    OwnerOut,
    PhoneReportIn,
    ResolveIn,
    Revoked,
    StaffIn,
    StaffOut,
    StaffToken,
    WebhookIn,
    WebhookOut,
    d,
)

STAFF = ("agent", "dispatcher", "team_lead", "supervisor", "manager")
PHONE_DESK = ("agent", "team_lead", "supervisor", "manager")

Admin = Annotated[Principal, Depends(allow("admin"))]
Insurer = Annotated[Principal, Depends(allow("insurer"))]
Reader = Annotated[Principal, Depends(allow("insurer", "admin", *STAFF))]
Editor = Annotated[Principal, Depends(allow("insurer", "admin", *PHONE_DESK))]
Desk = Annotated[Principal, Depends(allow("admin", *PHONE_DESK))]
Reviewer = Annotated[Principal, Depends(allow("admin", "team_lead", "supervisor", "manager"))]
Resolver = Annotated[Principal, Depends(allow("admin", "supervisor", "manager"))]
Configurer = Annotated[Principal, Depends(allow("admin", "manager"))]
IDEM_KEY_RULES: dict[str, Any] = {"min_length": 8, "max_length": 200, "pattern": r"^[\x21-\x7e]+$"}
IdemKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        **IDEM_KEY_RULES,
        description=d(
            "a unique key per intended case; repeats return the first case",
            "幂等键:同一键重复提交返回首次创建的案件",
        ),
    ),
]
ID = r"^[A-Za-z0-9_\-.:]+$"
CaseId = Annotated[str, Path(max_length=40, pattern=ID, description=d("case id", "案件编号"))]


def rt(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def err(status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": message,
        "content": {"application/json": {"example": {"error": code, "message": message, **extra}}},
    }


Responses = dict[int | str, dict[str, Any]]
E401: Responses = {401: err(401, "unauthorized", "unknown or revoked API key")}
E403: Responses = {403: err(403, "forbidden", "role agent may not do this; allowed: ['insurer']")}
E404: Responses = {404: err(404, "not_found", "no case C20261126-00000000")}
E422: Responses = {
    422: {
        "description": "invalid input, one message per field",
        "content": {
            "application/json": {
                "example": {
                    "error": "invalid",
                    "message": "plate: Value error, not a mainland plate ...",
                    "fields": [
                        {
                            "field": "plate",
                            "message": "Value error, not a mainland plate: expected e.g. 沪A12345",
                            "type": "value_error",
                        }
                    ],
                }
            }
        },
    }
}
AUTH: Responses = {**E401, **E403}

cases = APIRouter(prefix="/v1", tags=["cases"])
admin = APIRouter(prefix="/v1/admin", tags=["identity"])
phone = APIRouter(prefix="/v1", tags=["phone channel"])
review = APIRouter(prefix="/v1", tags=["discrepancies and documents"])
hooks = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


# -- cases ----------------------------------------------------------------------------------------


_CREATED: TypeAdapter[CaseCreated] = TypeAdapter(CaseCreated)


_CASE_DEFAULTS = {
    name: field.default for name, field in CaseOut.model_fields.items() if not field.is_required()
}


def created_response(case: dict[str, Any], created: bool, location: bool = True) -> Response:
    """201 with the new case (and its Location), or 200 with the first case of a repeat, as
    `CaseCreated` serialises it: a `NewCase` holds its values in that form already and is
    dumped as it is, with CaseOut's defaults for what it lacks; any other view is validated
    and serialised by CaseCreated."""
    head = {"case_id": case["case_id"], "status": case["status"]}
    if isinstance(case, handlers.NewCase):
        content = orjson.dumps({**head, "case": {**_CASE_DEFAULTS, **case}})
    else:
        content = _CREATED.dump_json(_CREATED.validate_python({**head, "case": case}))
    headers = {"Location": f"/v1/cases/{case['case_id']}"} if created and location else None
    return Response(content, 201 if created else 200, headers, media_type="application/json")


async def post_case(body: CaseIn, who: Insurer, request: Request, key: IdemKey = None) -> Response:
    case, created = await handlers.report_case(rt(request), who, body, key)
    return created_response(case, created)


_IDEM_KEY: TypeAdapter[str] = TypeAdapter(Annotated[str, Field(**IDEM_KEY_RULES)])
_admit_insurer = allow("insurer")


async def _post_case(request: Request) -> Response:
    """`post_case` with its arguments resolved by hand: the same insurer (API key), the same
    Idempotency-Key rules and the same `CaseIn`, validated straight from the body's bytes, with
    the same errors (401/403, then 422 naming every bad field). See `_PostCaseRoute`."""
    who = await _admit_insurer(request)
    errors: list[dict[str, Any]] = []
    key = request.headers.get("idempotency-key")
    if key is not None:
        try:
            _IDEM_KEY.validate_python(key)
        except ValidationError as exc:
            errors += (
                {**e, "loc": ("header", "Idempotency-Key", *e["loc"])}
                for e in exc.errors(include_url=False)
            )
    raw = await request.body()
    body: CaseIn | None = None
    if not raw:
        errors.append({"type": "missing", "loc": ("body",), "msg": "Field required", "input": None})
    else:
        ctype = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if ctype != "application/json":  # (the edge lets forms through, for other routes)
            return JSONResponse(
                error_body("unsupported_media_type", "send Content-Type: application/json"), 415
            )
        try:
            body = CaseIn.model_validate_json(raw)
        except ValidationError as exc:
            errors += ({**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False))
    if errors or body is None:
        raise RequestValidationError(errors)
    return await post_case(body, who, request, key)


class _PostCaseRoute(LeanRoute):
    """The route of `POST /v1/cases`, intake's hot path: FastAPI's general request handling
    (body decoded with json.loads then validated as a dict, the dependency tree solved, the
    returned value validated and serialised again) cost ~0.25 ms per request here; `_post_case`
    resolves the same arguments and `post_case` answers with a prebuilt Response, and the edge
    calls it directly (`LeanRoute`). The OpenAPI description is FastAPI's own, from
    `post_case`'s signature and the route's settings."""

    handler = _post_case


cases.add_api_route(
    "/cases",
    post_case,
    methods=["POST"],
    route_class_override=_PostCaseRoute,
    status_code=201,
    response_model=CaseCreated,
    summary="Entrust a case (insurer) / 保险公司委托案件",
    description=(
        "An insurer posts a case with its API key (`Authorization: Bearer cdk_...`). "
        "Repeats with the same `Idempotency-Key`, or the same `report_no`, return the first "
        "case with 200 and never create a second; the same key with a different body is 409. "
        "Creates `CaseReported`, one `DocumentRequested` listing the required documents, and "
        "`DuplicateCaseLinked` when the same plate and loss time arrived from another channel "
        "or insurer."
    ),
    responses={
        200: {"description": "a repeat: the first case", "model": CaseCreated},
        409: err(409, "conflict", "this Idempotency-Key was used with a different request body"),
        413: err(413, "too_large", "request body over 65536 bytes"),
        415: err(415, "unsupported_media_type", "send Content-Type: application/json"),
        **AUTH,
        **E422,
    },
)


@cases.get(
    "/cases/{case_id}",
    response_model=CaseOut,
    summary="One case / 查询案件",
    description="An insurer sees only its own cases (another insurer's case is 404); staff see all.",
    responses={**AUTH, **E404},
)
async def get_case(case_id: CaseId, who: Reader, request: Request) -> dict[str, Any]:
    return await handlers.get_case(rt(request), case_id, who)


@cases.get(
    "/cases",
    response_model=CasePage,
    summary="List cases / 案件列表",
    description=(
        "Newest first, filtered; `from`/`to` bound the time intake recorded the case. "
        "Pass `next_cursor` back as `cursor` for the next page."
    ),
    responses={**AUTH, **E422},
)
async def list_cases(
    *,
    who: Reader,
    request: Request,
    status: Annotated[CaseStatus | None, Query(description=d("status", "状态"))] = None,
    plate: Annotated[
        str | None, Query(max_length=12, pattern=r"^[^\x00-\x1f]+$", description=d("plate", "车牌"))
    ] = None,
    report_no: Annotated[
        str | None, Query(max_length=40, pattern=ID, description=d("report number", "报案号"))
    ] = None,
    owner: Annotated[
        str | None,
        Query(max_length=20, pattern=ID, description=d("first-contact owner", "首问责任人工号")),
    ] = None,
    from_: Annotated[
        datetime | None, Query(alias="from", description="reported at or after")
    ] = None,
    to: Annotated[datetime | None, Query(description="reported before")] = None,
    cursor: Annotated[str | None, Query(max_length=40, pattern=ID)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    from claimdesk.mainland import normalise_plate

    bad = [
        (("query", name), "out of range (years 2000 to 2100)")
        for name, value in (("from", from_), ("to", to))
        if value is not None and not 2000 <= value.year <= 2100
    ]
    if bad:
        raise RequestValidationError(
            [{"loc": loc, "msg": msg, "type": "value_error"} for loc, msg in bad]
        )
    return await handlers.list_cases(
        rt(request),
        who,
        status=status,
        plate=normalise_plate(plate) if plate else None,
        report_no=report_no,
        owner=owner,
        from_=from_,
        to=to,
        cursor=cursor,
        limit=limit,
    )


@cases.post(
    "/cases/{case_id}/corrections",
    response_model=CaseOut,
    summary="Correct case details / 更正案件信息",
    description=(
        "Records `CaseDetailsCorrected` with who and why and the previous values. A cancelled "
        "or closed case cannot be corrected (409 naming the state)."
    ),
    responses={
        409: err(
            409,
            "conflict",
            "case C20261126-3F9A1B7C is cancelled; a cancelled case cannot be corrected",
            details={"state": "cancelled"},
        ),
        **AUTH,
        **E404,
        **E422,
    },
)
async def correct(
    case_id: CaseId, body: CorrectionIn, who: Editor, request: Request
) -> dict[str, Any]:
    return await handlers.correct_case(rt(request), who, case_id, body.changes, body.reason)


@cases.post(
    "/cases/{case_id}/cancellation",
    response_model=CaseOut,
    summary="Cancel a case / 撤案",
    description="Records `CaseCancelled` with the reason; a closed or cancelled case is 409.",
    responses={
        409: err(409, "conflict", "case C20261126-3F9A1B7C is cancelled; it cannot be cancelled"),
        **AUTH,
        **E404,
        **E422,
    },
)
async def cancel(case_id: CaseId, body: CancelIn, who: Editor, request: Request) -> dict[str, Any]:
    return await handlers.cancel_case(rt(request), who, case_id, body.reason)


@cases.post(
    "/cases/{case_id}/handover",
    response_model=OwnerOut,
    summary="Hand a case over to a named person / 首问责任移交",
    description=(
        "First-contact ownership (首问责任制) moves only by an explicit handover to a named, "
        "active staff member with a reason (`OwnershipHandedOver`). The owner, a team lead, "
        "supervisor or manager may do it."
    ),
    responses={
        409: err(409, "conflict", "S001 already owns case C20261126-3F9A1B7C"),
        **AUTH,
        **E404,
        **E422,
    },
)
async def hand_over_case(
    case_id: CaseId, body: HandoverIn, who: Desk, request: Request
) -> dict[str, Any]:
    return await handlers.hand_over_case(rt(request), who, case_id, body.to_owner, body.reason)


# -- phone channel --------------------------------------------------------------------------------


@phone.post(
    "/phone-reports",
    status_code=201,
    response_model=CaseCreated,
    summary="Register a case taken by phone / 电话报案登记",
    description=(
        "The agent (token) becomes the case's first-contact owner (首问责任人); caller name, "
        "phone and the promised call-back time are recorded. Honors `Idempotency-Key`. When "
        "the insurer posts the same case (same report number, or same plate and loss time), "
        "each differing field goes to the discrepancy register."
    ),
    responses={200: {"description": "a repeat", "model": CaseCreated}, **AUTH, **E422},
)
async def post_phone_report(
    body: PhoneReportIn, who: Desk, request: Request, response: Response, key: IdemKey = None
) -> dict[str, Any]:
    case, created = await handlers.report_by_phone(rt(request), who, body, key)
    response.status_code = 201 if created else 200
    return {"case_id": case["case_id"], "status": case["status"], "case": case}


@phone.post(
    "/consultations",
    status_code=201,
    response_model=ConsultationOut,
    summary="Log a claims consultation / 理赔咨询登记",
    description=(
        "Caller, phone, topic and answer; either resolved, or a named follow-up owner and due "
        "time. The agent stays first-contact owner. Records `ConsultationLogged`."
    ),
    responses={**AUTH, **E422},
)
async def post_consultation(body: ConsultationIn, who: Desk, request: Request) -> dict[str, Any]:
    return await handlers.log_consultation(rt(request), who, body)


@phone.get(
    "/consultations",
    response_model=list[ConsultationOut],
    summary="Consultations, e.g. one owner's open follow-ups / 咨询记录列表",
    description="Newest first; filter by current owner and whether it was resolved.",
    responses=AUTH,
)
async def list_consultations(
    who: Annotated[Principal, Depends(allow("admin", *STAFF))],
    request: Request,
    owner: Annotated[str | None, Query(max_length=20, pattern=ID)] = None,
    resolved: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    return await handlers.list_consultations(rt(request), owner, resolved, limit)


@phone.get(
    "/consultations/{consultation_id}",
    response_model=ConsultationOut,
    summary="One consultation / 查询咨询记录",
    description="Staff read a logged consultation with its current owner.",
    responses={**AUTH, 404: err(404, "not_found", "no consultation Q20261126-00000000")},
)
async def get_consultation(
    consultation_id: Annotated[str, Path(max_length=40, pattern=ID)],
    who: Annotated[Principal, Depends(allow("admin", *STAFF))],
    request: Request,
) -> dict[str, Any]:
    return await handlers.get_consultation(rt(request), consultation_id)


@phone.post(
    "/consultations/{consultation_id}/handover",
    response_model=OwnerOut,
    summary="Hand a consultation over / 咨询责任移交",
    description="Moves ownership to a named, active staff member with a reason.",
    responses={**AUTH, 404: err(404, "not_found", "no consultation Q20261126-00000000"), **E422},
)
async def hand_over_consultation(
    consultation_id: Annotated[str, Path(max_length=40, pattern=ID)],
    body: HandoverIn,
    who: Desk,
    request: Request,
) -> dict[str, Any]:
    return await handlers.hand_over_consultation(
        rt(request), who, consultation_id, body.to_owner, body.reason
    )


@phone.get(
    "/insurers",
    response_model=list[InsurerRef],
    summary="Insurers (codes and names) for the desk / 委托保险公司列表",
    description="What an agent picks from when registering a phone report; no key information.",
    responses=AUTH,
)
async def list_insurers(
    who: Annotated[Principal, Depends(allow("admin", *STAFF))], request: Request
) -> list[dict[str, Any]]:
    rows = await rt(request).pool.fetch("SELECT code, name FROM insurers ORDER BY code")
    return [dict(r) for r in rows]


# -- discrepancies and documents ------------------------------------------------------------------


@review.get(
    "/discrepancies",
    response_model=list[DiscrepancyOut],
    summary="The error register / 差错登记",
    description="Fields where an insurer's post and the agent's phone registration differ.",
    responses=AUTH,
)
async def get_discrepancies(
    who: Reviewer,
    request: Request,
    status: Annotated[str | None, Query(pattern="^(open|resolved)$")] = None,
    case_id: Annotated[str | None, Query(max_length=40, pattern=ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    return await handlers.list_discrepancies(rt(request), status, case_id, limit)


@review.post(
    "/discrepancies/{discrepancy_id}/resolve",
    response_model=DiscrepancyOut,
    summary="Resolve a discrepancy with a note / 差错处理",
    description="A supervisor or manager closes a register entry with a note (`DiscrepancyResolved`); resolving twice is 409.",
    responses={
        409: err(409, "conflict", "discrepancy dis_0a1b2c3d4e is already resolved"),
        **AUTH,
        **E422,
    },
)
async def resolve(
    discrepancy_id: Annotated[str, Path(max_length=40, pattern=ID)],
    body: ResolveIn,
    who: Resolver,
    request: Request,
) -> dict[str, Any]:
    return await handlers.resolve_discrepancy(rt(request), who, discrepancy_id, body.note)


@review.post(
    "/cases/{case_id}/documents/{code}/received",
    response_model=CaseOut,
    summary="Mark a required document received / 单证收讫",
    description="Records `DocumentReceived`; the case then lists what is still missing.",
    responses={**AUTH, **E404},
)
async def document_received(
    case_id: CaseId,
    code: Annotated[str, Path(max_length=40, pattern=ID)],
    who: Editor,
    request: Request,
) -> dict[str, Any]:
    return await handlers.receive_document(rt(request), who, case_id, code)


@review.get(
    "/document-checklists/{insurer_code}/{loss_type}",
    response_model=ChecklistOut,
    summary="Required documents for an insurer and loss type / 单证清单",
    description="The configured checklist, else the default for this insurer and loss type (an insurer sees only its own).",
    responses=AUTH,
)
async def get_checklist(
    insurer_code: Annotated[str, Path(max_length=20, pattern=ID)],
    loss_type: LossType,
    who: Reader,
    request: Request,
) -> dict[str, Any]:
    if who.role == "insurer" and who.insurer_code != insurer_code:
        from claimdesk.errors import NotFound

        raise NotFound(f"no checklist for {insurer_code}")
    async with rt(request).pool.acquire() as conn:
        items, source = await checklist(conn, insurer_code, loss_type)
    return {"insurer_code": insurer_code, "loss_type": loss_type, "source": source, "items": items}


@review.put(
    "/document-checklists/{insurer_code}/{loss_type}",
    response_model=ChecklistOut,
    summary="Configure required documents / 配置单证清单",
    description="Applies to cases registered from now on.",
    responses={**AUTH, **E422},
)
async def put_checklist(
    insurer_code: Annotated[str, Path(max_length=20, pattern=ID)],
    loss_type: LossType,
    body: ChecklistIn,
    who: Configurer,
    request: Request,
) -> dict[str, Any]:
    items = [i.model_dump() for i in body.items]
    await handlers.set_checklist(rt(request), who, insurer_code, loss_type, items)
    return {
        "insurer_code": insurer_code,
        "loss_type": loss_type,
        "source": "configured",
        "items": items,
    }


# -- webhooks -------------------------------------------------------------------------------------


@hooks.post(
    "",
    status_code=201,
    response_model=WebhookOut,
    summary="Subscribe to updates on own cases / 订阅案件进度回调",
    description=(
        "Deliveries are POSTed with `X-ClaimDesk-Timestamp` and `X-ClaimDesk-Signature: "
        "v1=hex(HMAC-SHA256(secret, timestamp + '.' + body))`; the secret is returned once. "
        "Failed deliveries are retried with exponential backoff."
    ),
    responses={**AUTH, **E422},
)
async def post_webhook(body: WebhookIn, who: Insurer, request: Request) -> dict[str, Any]:
    return await webhooks.create_webhook(rt(request), who, body.url, list(body.events))


@hooks.get(
    "",
    response_model=list[WebhookOut],
    summary="Own webhooks / 回调列表",
    description="The calling insurer's subscriptions (secrets are never shown again).",
    responses=AUTH,
)
async def get_webhooks(who: Insurer, request: Request) -> list[dict[str, Any]]:
    return await webhooks.list_webhooks(rt(request), who)


@hooks.delete(
    "/{webhook_id}",
    status_code=204,
    summary="Unsubscribe / 取消订阅",
    description="Stops deliveries: nothing new is queued and pending retries are abandoned (marked failed).",
    responses={**AUTH, 404: err(404, "not_found", "no webhook wh_000000000000")},
)
async def delete_webhook(
    webhook_id: Annotated[str, Path(max_length=40, pattern=ID)], who: Insurer, request: Request
) -> Response:
    await webhooks.delete_webhook(rt(request), who, webhook_id)
    return Response(status_code=204)


@hooks.get(
    "/{webhook_id}/deliveries",
    response_model=list[DeliveryOut],
    summary="Deliveries and their attempts / 回调投递记录",
    description="Newest first, each with every attempt (time, HTTP status, error, duration). Another insurer's webhook is 404.",
    responses={**AUTH, 404: err(404, "not_found", "no webhook wh_000000000000")},
)
async def get_deliveries(
    webhook_id: Annotated[str, Path(max_length=40, pattern=ID)],
    who: Annotated[Principal, Depends(allow("insurer", "admin"))],
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    return await webhooks.deliveries(rt(request), who, webhook_id, limit)


# -- identity (admin) -----------------------------------------------------------------------------


@admin.post(
    "/insurers",
    status_code=201,
    response_model=InsurerKey,
    summary="Register an insurer; its API key is shown once / 新增保险公司",
    description="Creates the insurer and its first API key (`cdk_...`). Only a SHA-256 hash of the key is stored, so it cannot be shown again: rotate to get a new one.",
    responses={
        409: err(409, "conflict", "insurer PICC already exists; rotate its key instead"),
        **AUTH,
        **E422,
    },
)
async def add_insurer(body: InsurerIn, who: Admin, request: Request) -> dict[str, Any]:
    r = rt(request)
    async with r.pool.acquire() as conn:
        return await identity.create_insurer(conn, body.code, body.name, r.clock.now())


@admin.get(
    "/insurers",
    response_model=list[InsurerOut],
    summary="Insurers / 保险公司列表",
    description="Every insurer with its number of keys in force (keys are never shown).",
    responses=AUTH,
)
async def get_insurers(who: Admin, request: Request) -> list[dict[str, Any]]:
    rows = await rt(request).pool.fetch(
        "SELECT i.*, (SELECT count(*) FROM api_keys k WHERE k.insurer_id = i.insurer_id "
        "AND k.revoked_at IS NULL) AS active_keys FROM insurers i ORDER BY code"
    )
    return [dict(r) for r in rows]


@admin.post(
    "/insurers/{code}/keys/rotate",
    response_model=InsurerKey,
    summary="Rotate an insurer's API key / 轮换密钥",
    description="Issues a new key (shown once); every older key stops working at once.",
    responses={**AUTH, 404: err(404, "not_found", "no insurer XYZ")},
)
async def rotate_key(
    code: Annotated[str, Path(max_length=20, pattern=ID)], who: Admin, request: Request
) -> dict[str, Any]:
    r = rt(request)
    async with r.pool.acquire() as conn:
        out = await identity.rotate_insurer_key(conn, code, r.clock.now())
    identity.forget_keys(r.extras)
    return out


@admin.post(
    "/insurers/{code}/keys/revoke",
    response_model=Revoked,
    summary="Revoke all of an insurer's API keys / 吊销密钥",
    description="Every key of the insurer stops working at once.",
    responses={**AUTH, 404: err(404, "not_found", "no insurer XYZ")},
)
async def revoke_keys(
    code: Annotated[str, Path(max_length=20, pattern=ID)], who: Admin, request: Request
) -> dict[str, Any]:
    r = rt(request)
    async with r.pool.acquire() as conn:
        n = await identity.revoke_insurer_keys(conn, code, r.clock.now())
    identity.forget_keys(r.extras)
    return {"revoked": n}


@admin.post(
    "/staff",
    status_code=201,
    response_model=StaffToken,
    summary="Register a staff member and issue a token / 新增员工",
    description="Roles: agent, dispatcher, team_lead, supervisor, manager, surveyor. The signed token is verified by every service; intake keeps its id to revoke it.",
    responses={
        409: err(409, "conflict", "staff number A001 already exists; rotate the token instead"),
        **AUTH,
        **E422,
    },
)
async def add_staff(body: StaffIn, who: Admin, request: Request) -> dict[str, Any]:
    r = rt(request)
    async with r.pool.acquire() as conn:
        return await identity.create_staff(
            conn, body.model_dump(), r.settings.secret(), r.clock.now(), r.settings.token_ttl_s
        )


@admin.get(
    "/staff",
    response_model=list[StaffOut],
    summary="Staff / 员工列表",
    description="Every staff member, active or deactivated.",
    responses=AUTH,
)
async def get_staff(who: Admin, request: Request) -> list[dict[str, Any]]:
    rows = await rt(request).pool.fetch("SELECT * FROM staff ORDER BY number")
    return [{**dict(r), "active": r["deactivated_at"] is None} for r in rows]


@admin.post(
    "/staff/{number}/tokens/rotate",
    response_model=StaffToken,
    summary="Issue a new staff token, revoking older ones / 轮换令牌",
    description="The new token is returned once; every older token of the person is revoked, "
    "in every service (the others learn it from the intake topic within seconds).",
    responses={**AUTH, 404: err(404, "not_found", "no staff member A999")},
)
async def rotate_token(
    number: Annotated[str, Path(max_length=20, pattern=ID)], who: Admin, request: Request
) -> dict[str, Any]:
    r = rt(request)
    async with r.pool.acquire() as conn:
        return await identity.rotate_staff_token(
            conn, r.store, number, r.settings.secret(), r.clock.now(), r.settings.token_ttl_s
        )


@admin.post(
    "/staff/{number}/revoke",
    response_model=Revoked,
    summary="Deactivate a staff member and revoke their tokens / 停用员工",
    description="Intake then refuses every token carrying this staff number, and every "
    "service refuses the person's tokens (they learn it from the intake topic within seconds).",
    responses={**AUTH, 404: err(404, "not_found", "no staff member A999")},
)
async def revoke_staff(
    number: Annotated[str, Path(max_length=20, pattern=ID)], who: Admin, request: Request
) -> dict[str, Any]:
    r = rt(request)
    async with r.pool.acquire() as conn:
        return {"revoked": await identity.deactivate_staff(conn, r.store, number, r.clock.now())}


@admin.post(
    "/tokens/{token_id}/revoke",
    response_model=Revoked,
    summary="Revoke one staff token / 吊销令牌",
    description="By token id (the `token_id` returned at issue).",
    responses={**AUTH, 404: err(404, "not_found", "no token 0000")},
)
async def revoke_one(
    token_id: Annotated[str, Path(max_length=64, pattern=ID)], who: Admin, request: Request
) -> dict[str, Any]:
    r = rt(request)
    async with r.pool.acquire() as conn:
        return {"revoked": await identity.revoke_token(conn, r.store, token_id, r.clock.now())}


ROUTERS = [cases, phone, review, hooks, admin, pages.router]
