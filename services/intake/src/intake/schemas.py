"""The HTTP contract: request and response bodies, with bilingual field descriptions and examples."""

from __future__ import annotations

import copy
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from claimdesk.mainland import normalise_phone, normalise_plate, phone_error, plate_error
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

LossType = Literal["vehicle_own_damage", "vehicle_third_party", "injury", "property", "other"]
StaffRole = Literal["agent", "dispatcher", "team_lead", "supervisor", "manager", "surveyor"]
CaseStatus = Literal[
    "reported", "assigned", "surveyor_arrived", "survey_completed", "closed", "cancelled"
]
WebhookEvent = Literal[
    "case.assigned", "case.surveyor_arrived", "case.survey_completed", "case.closed"
]


def _plate(value: str) -> str:
    plate = normalise_plate(value)
    error = plate_error(plate)
    if error:
        raise ValueError(error)
    return plate


def _phone(value: str) -> str:
    phone = normalise_phone(value)
    error = phone_error(phone)
    if error:
        raise ValueError(error)
    return phone


def _text(value: str) -> str:
    v = value.strip()
    if not v:
        raise ValueError("must not be blank (不能为空)")
    return v


Plate = Annotated[str, Field(min_length=7, max_length=12), AfterValidator(_plate)]
Phone = Annotated[str, Field(min_length=5, max_length=24), AfterValidator(_phone)]
Text = Annotated[str, AfterValidator(_text)]


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # below space, but tab, LF, CR


def _no_control(value: Any) -> Any:
    if isinstance(value, str) and _CONTROL.search(value):
        raise ValueError("must not contain control characters (不得包含控制字符)")
    if isinstance(value, list | dict):
        for item in value.values() if isinstance(value, dict) else value:
            _no_control(item)
    return value


class Input(BaseModel):
    """Every request body: no NUL or other control characters in any text."""

    @field_validator("*", mode="after")
    @classmethod
    def _clean(cls, value: Any) -> Any:
        return _no_control(value)


def d(en: str, zh: str) -> str:
    return f"{en} / {zh}"


CASE_EXAMPLE: dict[str, Any] = {
    "report_no": "RPCDA202611260001",
    "policy_no": "PDAA202631010000012345",
    "plate": "沪A12345",
    "loss_type": "vehicle_own_damage",
    "loss_time": "2026-11-26T08:30:00+08:00",
    "loss_address": "上海市浦东新区世纪大道100号",
    "loss_lat": 31.2353,
    "loss_lon": 121.5058,
    "description": "两车追尾,前车后保险杠受损,无人员受伤",
    "reporter_name": "张伟",
    "reporter_phone": "13812345678",
    "insured_name": "张伟",
    "insured_phone": "13812345678",
    "survey_place": "scene",
    "injuries": False,
    "priority": "normal",
}


class CaseFields(Input):
    """Fields shared by insurer posts, phone registrations and corrections."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    policy_no: str | None = Field(
        None, min_length=4, max_length=40, description=d("policy number", "保单号")
    )
    plate: Plate | None = Field(
        None,
        description=d(
            "licence plate of the insured vehicle (mainland format, new-energy allowed); "
            "required for vehicle losses",
            "车牌号(内地格式,含新能源);车险案件必填",
        ),
        examples=["沪A12345", "沪AD12345"],
    )
    loss_type: LossType = Field(description=d("kind of loss", "损失类型"))
    loss_time: AwareDatetime = Field(
        description=d(
            "when the loss happened, RFC 3339 with offset; not in the future",
            "出险时间(RFC 3339,带时区),不得晚于当前时间",
        )
    )
    loss_address: Text = Field(
        min_length=4, max_length=200, description=d("where it happened", "出险地点")
    )
    loss_lat: float | None = Field(
        None, ge=3.0, le=54.0, description=d("latitude (WGS84)", "出险地点纬度")
    )
    loss_lon: float | None = Field(
        None, ge=73.0, le=136.0, description=d("longitude (WGS84)", "出险地点经度")
    )
    region: str | None = Field(
        None,
        min_length=2,
        max_length=40,
        description=d(
            "region (district) for dispatch; derived from the address or coordinates if absent",
            "所属区域(区县),缺省时按地址或坐标推断",
        ),
    )
    description: str = Field("", max_length=2000, description=d("what happened", "事故经过"))
    reporter_name: str | None = Field(
        None, min_length=1, max_length=50, description=d("who reported it", "报案人")
    )
    reporter_phone: Phone | None = Field(None, description=d("reporter's phone", "报案人电话"))
    insured_name: str | None = Field(
        None, min_length=1, max_length=100, description=d("insured person", "被保险人")
    )
    insured_phone: Phone | None = Field(None, description=d("insured's phone", "被保险人电话"))
    survey_place: Literal["scene", "repair_shop"] = Field(
        "scene", description=d("survey at the scene or a repair shop", "查勘地点:现场或修理厂")
    )
    repair_shop: str | None = Field(
        None,
        min_length=2,
        max_length=100,
        description=d("repair shop name when survey_place=repair_shop", "修理厂名称"),
    )
    injuries: bool = Field(False, description=d("anyone injured", "是否有人伤"))
    priority: Literal["normal", "urgent"] = Field("normal", description=d("priority", "优先级"))
    vehicle_model: str | None = Field(
        None, max_length=60, description=d("vehicle make and model", "厂牌车型")
    )


class CaseIn(CaseFields):
    """An insurer's case (委托案件), the flat contract of `POST /v1/cases`."""

    model_config = ConfigDict(json_schema_extra={"examples": [CASE_EXAMPLE]})

    report_no: Text = Field(
        min_length=4,
        max_length=40,
        pattern=r"^[A-Za-z0-9_\-]+$",
        description=d("the insurer's report number", "保险公司报案号"),
    )


PHONE_EXAMPLE: dict[str, Any] = {
    **{k: v for k, v in CASE_EXAMPLE.items() if k not in ("loss_lat", "loss_lon")},
    "insurer_code": "PICC",
    "caller_name": "张伟",
    "caller_phone": "13812345678",
    "callback_promised_at": "2026-11-26T09:30:00+08:00",
}


class PhoneReportIn(CaseFields):
    """A case taken by phone (电话报案): the agent becomes its first-contact owner (首问责任人)."""

    model_config = ConfigDict(json_schema_extra={"examples": [PHONE_EXAMPLE]})

    insurer_code: str = Field(
        min_length=2, max_length=20, description=d("entrusting insurer", "委托保险公司代码")
    )
    report_no: str | None = Field(
        None,
        min_length=4,
        max_length=40,
        pattern=r"^[A-Za-z0-9_\-]+$",
        description=d("insurer's report number if the caller knows it", "报案号(如已知)"),
    )
    caller_name: Text = Field(min_length=1, max_length=50, description=d("caller", "来电人"))
    caller_phone: Phone = Field(description=d("caller's phone", "来电人电话"))
    callback_promised_at: AwareDatetime = Field(
        description=d("when we promised to call back", "承诺回电时间")
    )


class CorrectionIn(Input):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "changes": {"loss_address": "上海市浦东新区世纪大道200号"},
                    "reason": "报案人更正出险地点 / reporter corrected the address",
                }
            ]
        },
    )
    changes: dict[str, Any] = Field(
        min_length=1, description=d("fields and their new values", "更正的字段及新值")
    )
    reason: Text = Field(min_length=2, max_length=500, description=d("why", "更正原因"))


class CancelIn(Input):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "客户撤案 / the customer withdrew the claim"}]},
    )
    reason: Text = Field(min_length=2, max_length=500, description=d("why", "撤案原因"))


class DocumentState(BaseModel):
    code: str = Field(description=d("document code", "单证代码"))
    name: str = Field(description=d("document name", "单证名称"))
    received: bool
    received_at: datetime | None = None
    received_by: str | None = None


class CaseOut(BaseModel):
    """A case as intake knows it (案件)."""

    case_id: str = Field(description=d("case id", "案件编号"))
    status: CaseStatus = Field(description=d("where the case stands", "案件状态"))
    insurer_code: str = Field(description=d("entrusting insurer", "委托保险公司"))
    channel: Literal["insurer_api", "phone"] = Field(description=d("how it came in", "受理渠道"))
    report_no: str | None = None
    policy_no: str | None = None
    plate: str | None = None
    loss_type: LossType
    loss_time: datetime
    loss_address: str
    loss_lat: float | None = None
    loss_lon: float | None = None
    region: str | None = None
    description: str = ""
    reporter_name: str | None = None
    reporter_phone: str | None = None
    insured_name: str | None = None
    insured_phone: str | None = None
    survey_place: Literal["scene", "repair_shop"] = "scene"
    repair_shop: str | None = None
    injuries: bool = False
    priority: Literal["normal", "urgent"] = "normal"
    vehicle_model: str | None = None
    first_contact_owner: str | None = Field(
        None, description=d("staff number owning the case", "首问责任人工号")
    )
    caller_name: str | None = None
    caller_phone: str | None = None
    callback_promised_at: datetime | None = None
    duplicate_of: str | None = Field(
        None, description=d("earlier case of the same loss", "重复案件所指向的原案件")
    )
    cancel_reason: str | None = None
    surveyor_id: str | None = Field(None, description=d("assigned surveyor", "查勘员"))
    documents: list[DocumentState] = Field(default=[], description=d("required documents", "单证"))
    missing_documents: list[str] = Field(
        default=[], description=d("codes still missing", "尚缺单证代码")
    )
    reported_at: datetime = Field(description=d("when intake recorded it", "受理时间"))
    updated_at: datetime
    version: int = Field(description=d("events in the case's stream", "案件版本号"))


CASE_OUT_EXAMPLE: dict[str, Any] = {
    **CASE_EXAMPLE,
    "case_id": "C20261126-3F9A1B7C",
    "status": "reported",
    "insurer_code": "PICC",
    "channel": "insurer_api",
    "region": "上海市浦东新区",
    "documents": [
        {"code": "claim_form", "name": "机动车辆保险索赔申请书 claim form", "received": False}
    ],
    "missing_documents": ["claim_form"],
    "reported_at": "2026-11-26T00:31:02Z",
    "updated_at": "2026-11-26T00:31:02Z",
    "version": 7,
}


class CaseCreated(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"case_id": "C20261126-3F9A1B7C", "status": "reported", "case": CASE_OUT_EXAMPLE}
            ]
        }
    )
    case_id: str
    status: CaseStatus
    case: CaseOut


class CasePage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [CASE_OUT_EXAMPLE], "next_cursor": "MTIz"}]}
    )
    items: list[CaseOut]
    next_cursor: str | None = Field(
        None, description=d("pass as ?cursor= for the next page", "下一页游标")
    )


# -- identity ------------------------------------------------------------------------------


class InsurerIn(Input):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"code": "PICC", "name": "中国人民财产保险股份有限公司"}]},
    )
    code: str = Field(
        min_length=2,
        max_length=20,
        pattern=r"^[A-Z][A-Z0-9_]+$",
        description=d("short upper-case code", "保险公司代码"),
    )
    name: Text = Field(min_length=2, max_length=100, description=d("name", "保险公司名称"))


class InsurerKey(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "insurer_id": "ins_5d1c0e4a",
                    "code": "PICC",
                    "name": "中国人民财产保险股份有限公司",
                    "api_key": "cdk_Jx3...shown-once",
                    "key_id": "key_8a7b6c5d",
                }
            ]
        }
    )
    insurer_id: str
    code: str
    name: str
    api_key: str = Field(description=d("shown once; store it safely", "仅显示一次,请妥善保存"))
    key_id: str


class InsurerRef(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"code": "PICC", "name": "中国人民财产保险股份有限公司"}]}
    )
    code: str
    name: str


class InsurerOut(BaseModel):
    insurer_id: str
    code: str
    name: str
    active_keys: int
    created_at: datetime


class StaffIn(Input):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"number": "A001", "name": "王丽", "role": "agent", "team": "坐席一组"}]
        },
    )
    number: str = Field(
        min_length=2,
        max_length=20,
        pattern=r"^[A-Za-z0-9_\-]+$",
        description=d("staff number (工号)", "工号"),
    )
    name: Text = Field(min_length=1, max_length=50, description=d("name", "姓名"))
    role: StaffRole = Field(description=d("role", "角色"))
    team: str | None = Field(None, max_length=50, description=d("team", "班组"))


class StaffToken(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "staff_id": "stf_1a2b3c4d",
                    "number": "A001",
                    "role": "agent",
                    "token": "eyJhbGciOiJIUzI1NiIs...",
                    "token_id": "9f8e7d6c5b4a",
                    "expires_at": "2026-12-26T00:00:00Z",
                }
            ]
        }
    )
    staff_id: str
    number: str
    role: str
    token: str
    token_id: str
    expires_at: datetime


class StaffOut(BaseModel):
    staff_id: str
    number: str
    name: str
    role: str
    team: str | None
    active: bool
    created_at: datetime


class Revoked(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"revoked": 1}]})
    revoked: int = Field(description=d("keys or tokens revoked now", "本次吊销数量"))


# -- consultations, ownership -------------------------------------------------------------


class ConsultationIn(Input):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "caller_name": "李娜",
                    "caller_phone": "13900001111",
                    "topic": "车损险理赔需要哪些单证",
                    "answer": "已告知需提供驾驶证、行驶证、事故照片和索赔申请书",
                    "resolved": True,
                },
                {
                    "caller_name": "刘强",
                    "caller_phone": "021-62345678",
                    "topic": "三者人伤误工费如何计算",
                    "answer": "已记录,由主管核实后回复",
                    "resolved": False,
                    "follow_up_owner": "S001",
                    "follow_up_due": "2026-11-27T10:00:00+08:00",
                },
            ]
        },
    )
    case_id: str | None = Field(None, max_length=40, description=d("related case", "关联案件"))
    caller_name: Text = Field(min_length=1, max_length=50, description=d("caller", "来电人"))
    caller_phone: Phone = Field(description=d("caller's phone", "来电人电话"))
    topic: Text = Field(min_length=2, max_length=200, description=d("question", "咨询内容"))
    answer: Text = Field(min_length=2, max_length=2000, description=d("answer given", "答复"))
    resolved: bool = Field(description=d("answered in full", "是否已解答"))
    follow_up_owner: str | None = Field(
        None, max_length=20, description=d("staff number to follow up", "跟进责任人工号")
    )
    follow_up_due: AwareDatetime | None = Field(
        None, description=d("when the follow-up is due", "跟进时限")
    )


class ConsultationOut(BaseModel):
    consultation_id: str
    case_id: str | None
    agent: str
    owner: str
    caller_name: str
    caller_phone: str
    topic: str
    answer: str
    resolved: bool
    follow_up_owner: str | None
    follow_up_due: datetime | None
    logged_at: datetime


class HandoverIn(Input):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"to_owner": "S001", "reason": "涉及人伤争议,超出坐席权限,移交主管"}]
        },
    )
    to_owner: str = Field(
        min_length=2, max_length=20, description=d("staff number taking over", "接手人工号")
    )
    reason: Text = Field(min_length=2, max_length=500, description=d("why", "移交原因"))


class OwnerOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"subject_type": "case", "subject_id": "C20261126-3F9A1B7C", "owner": "S001"}
            ]
        }
    )
    subject_type: Literal["case", "consultation"]
    subject_id: str
    owner: str


# -- discrepancies, documents --------------------------------------------------------------


class DiscrepancyOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "discrepancy_id": "dis_0a1b2c3d4e",
                    "case_id": "C20261126-3F9A1B7C",
                    "phone_case_id": "C20261126-11AA22BB",
                    "field": "loss_address",
                    "phone_value": "上海市浦东新区世纪大道100号",
                    "insurer_value": "上海市浦东新区世纪大道1000号",
                    "agent": "A001",
                    "status": "open",
                    "created_at": "2026-11-26T00:35:00Z",
                }
            ]
        }
    )
    discrepancy_id: str
    case_id: str = Field(description=d("the insurer's case", "保险公司委托案件"))
    phone_case_id: str = Field(description=d("the agent's phone registration", "电话登记案件"))
    field: str
    phone_value: Any = None
    insurer_value: Any = None
    agent: str | None = None
    status: Literal["open", "resolved"]
    note: str | None = None
    resolved_by: str | None = None
    created_at: datetime
    resolved_at: datetime | None = None


class ResolveIn(Input):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"note": "已与坐席A001核对,以保险公司信息为准"}]},
    )
    note: Text = Field(min_length=2, max_length=1000, description=d("review note", "处理说明"))


class ChecklistItem(Input):
    code: str = Field(min_length=2, max_length=40, pattern=r"^[a-z0-9_]+$")
    name: str = Field(min_length=2, max_length=100)


class ChecklistIn(Input):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {"code": "claim_form", "name": "索赔申请书 claim form"},
                        {"code": "driving_licence", "name": "驾驶证 driving licence"},
                    ]
                }
            ]
        },
    )
    items: list[ChecklistItem] = Field(min_length=1, max_length=40)


class ChecklistOut(BaseModel):
    insurer_code: str
    loss_type: LossType
    source: Literal["configured", "default"]
    items: list[ChecklistItem]


# -- webhooks ---------------------------------------------------------------------------------


class WebhookIn(Input):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://claims.example-insurer.cn/claimdesk/events",
                    "events": ["case.assigned", "case.surveyor_arrived", "case.closed"],
                }
            ]
        },
    )
    url: str = Field(
        min_length=8,
        max_length=500,
        pattern=r"^https?://[^\s]+$",
        description=d("where to POST updates", "回调地址"),
    )
    events: list[WebhookEvent] = Field(min_length=1, description=d("which updates", "订阅的事件"))


class WebhookOut(BaseModel):
    webhook_id: str
    url: str
    events: list[str]
    created_at: datetime
    secret: str | None = Field(
        None, description=d("signing secret, shown once at creation", "签名密钥,仅创建时返回")
    )


class DeliveryOut(BaseModel):
    delivery_id: str
    event: str
    case_id: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    log: list[dict[str, Any]] = Field(default=[], description=d("every attempt", "每次投递记录"))


# -- bilingual descriptions and examples for every model --------------------------------------

FIELD_DOCS: dict[str, tuple[str, str]] = {
    "case_id": ("case id", "案件编号"),
    "report_no": ("the insurer's report number", "保险公司报案号"),
    "policy_no": ("policy number", "保单号"),
    "plate": ("licence plate", "车牌号"),
    "loss_type": ("kind of loss", "损失类型"),
    "loss_time": ("when the loss happened", "出险时间"),
    "loss_address": ("where it happened", "出险地点"),
    "loss_lat": ("latitude", "纬度"),
    "loss_lon": ("longitude", "经度"),
    "region": ("district used for dispatch", "所属区域"),
    "description": ("what happened", "事故经过"),
    "reporter_name": ("who reported it", "报案人"),
    "reporter_phone": ("reporter's phone", "报案人电话"),
    "insured_name": ("insured person", "被保险人"),
    "insured_phone": ("insured's phone", "被保险人电话"),
    "survey_place": ("survey at the scene or a repair shop", "查勘地点"),
    "repair_shop": ("repair shop", "修理厂"),
    "injuries": ("anyone injured", "是否有人伤"),
    "priority": ("priority", "优先级"),
    "vehicle_model": ("vehicle make and model", "厂牌车型"),
    "caller_name": ("caller", "来电人"),
    "caller_phone": ("caller's phone", "来电人电话"),
    "callback_promised_at": ("promised call-back time", "承诺回电时间"),
    "cancel_reason": ("why it was cancelled", "撤案原因"),
    "updated_at": ("last change", "最后更新时间"),
    "received": ("arrived", "是否已收到"),
    "received_at": ("when it arrived", "收到时间"),
    "received_by": ("who recorded it", "登记人"),
    "code": ("code", "代码"),
    "name": ("name", "名称"),
    "items": ("entries", "条目"),
    "insurer_id": ("insurer id", "保险公司标识"),
    "key_id": ("key id", "密钥标识"),
    "active_keys": ("keys in force", "有效密钥数"),
    "created_at": ("created at", "创建时间"),
    "staff_id": ("staff id", "员工标识"),
    "number": ("staff number", "工号"),
    "role": ("role", "角色"),
    "team": ("team", "班组"),
    "active": ("not deactivated", "是否在职"),
    "token": ("bearer token, keep it secret", "访问令牌,请保密"),
    "token_id": ("token id (for revocation)", "令牌标识(用于吊销)"),
    "expires_at": ("expiry", "过期时间"),
    "consultation_id": ("consultation id", "咨询编号"),
    "agent": ("agent who took the call", "受理坐席"),
    "owner": ("first-contact owner", "首问责任人"),
    "topic": ("question", "咨询内容"),
    "answer": ("answer given", "答复"),
    "resolved": ("answered in full", "是否已解答"),
    "follow_up_owner": ("follow-up owner", "跟进责任人"),
    "follow_up_due": ("follow-up due", "跟进时限"),
    "logged_at": ("logged at", "登记时间"),
    "subject_type": ("case or consultation", "案件或咨询"),
    "subject_id": ("its id", "编号"),
    "discrepancy_id": ("discrepancy id", "差错编号"),
    "field": ("field that differs", "不一致的字段"),
    "phone_value": ("value registered by phone", "电话登记值"),
    "insurer_value": ("value posted by the insurer", "保险公司推送值"),
    "status": ("state", "状态"),
    "note": ("note", "备注"),
    "resolved_by": ("who resolved it", "处理人"),
    "resolved_at": ("when", "处理时间"),
    "insurer_code": ("insurer code", "保险公司代码"),
    "source": ("configured or default", "已配置或默认"),
    "webhook_id": ("webhook id", "回调标识"),
    "url": ("endpoint URL", "回调地址"),
    "events": ("subscribed updates", "订阅事件"),
    "delivery_id": ("delivery id", "投递标识"),
    "event": ("update type", "事件类型"),
    "attempts": ("attempts so far", "已尝试次数"),
    "last_status_code": ("last HTTP status", "最近一次HTTP状态码"),
    "last_error": ("last error", "最近一次错误"),
    "next_attempt_at": ("next retry", "下次重试时间"),
    "delivered_at": ("delivered at", "送达时间"),
    "revoked": ("revoked now", "本次吊销数量"),
    "version": ("events in the case's stream", "案件版本号"),
}

CONSULTATION_OUT_EXAMPLE = {
    "consultation_id": "Q20261126-7A8B9C0D",
    "case_id": None,
    "agent": "A001",
    "owner": "A001",
    "caller_name": "李娜",
    "caller_phone": "13900001111",
    "topic": "车损险理赔需要哪些单证",
    "answer": "已告知需提供驾驶证、行驶证、事故照片和索赔申请书",
    "resolved": True,
    "follow_up_owner": None,
    "follow_up_due": None,
    "logged_at": "2026-11-26T00:40:00Z",
}
WEBHOOK_OUT_EXAMPLE = {
    "webhook_id": "wh_3c2b1a0f9e8d",
    "url": "https://claims.example-insurer.cn/claimdesk/events",
    "events": ["case.assigned", "case.closed"],
    "created_at": "2026-11-26T00:45:00Z",
    "secret": "whsec_shown-once",
}
OUT_EXAMPLES: dict[str, dict[str, Any]] = {
    "CaseOut": CASE_OUT_EXAMPLE,
    "ConsultationOut": CONSULTATION_OUT_EXAMPLE,
    "WebhookOut": WEBHOOK_OUT_EXAMPLE,
    "ChecklistOut": {
        "insurer_code": "PICC",
        "loss_type": "vehicle_own_damage",
        "source": "default",
        "items": [{"code": "claim_form", "name": "机动车辆保险索赔申请书 claim form"}],
    },
    "ChecklistItem": {"code": "claim_form", "name": "索赔申请书 claim form"},
    "DocumentState": {
        "code": "claim_form",
        "name": "索赔申请书 claim form",
        "received": True,
        "received_at": "2026-11-26T01:00:00Z",
        "received_by": "agent:A001",
    },
    "DeliveryOut": {
        "delivery_id": "dlv_0f1e2d3c4b5a69",
        "event": "case.assigned",
        "case_id": "C20261126-3F9A1B7C",
        "status": "delivered",
        "attempts": 2,
        "last_status_code": 204,
        "last_error": None,
        "next_attempt_at": None,
        "created_at": "2026-11-26T00:50:00Z",
        "delivered_at": "2026-11-26T00:50:02Z",
        "log": [
            {
                "attempt": 1,
                "at": "2026-11-26T00:50:00Z",
                "status_code": 503,
                "error": "HTTP 503",
                "duration_ms": 12,
            },
            {
                "attempt": 2,
                "at": "2026-11-26T00:50:02Z",
                "status_code": 204,
                "error": None,
                "duration_ms": 9,
            },
        ],
    },
    "InsurerOut": {
        "insurer_id": "ins_5d1c0e4a",
        "code": "PICC",
        "name": "中国人民财产保险股份有限公司",
        "active_keys": 1,
        "created_at": "2026-11-26T00:00:00Z",
    },
    "StaffOut": {
        "staff_id": "stf_1a2b3c4d",
        "number": "A001",
        "name": "王丽",
        "role": "agent",
        "team": "坐席一组",
        "active": True,
        "created_at": "2026-11-26T00:00:00Z",
    },
}


def _documented(extra: Any, name: str) -> Any:
    def fill(schema: dict[str, Any], cls: Any = None) -> None:
        if isinstance(extra, dict):
            schema.update(copy.deepcopy(extra))
        if name in OUT_EXAMPLES and "examples" not in schema:
            schema["examples"] = [OUT_EXAMPLES[name]]
        for field, prop in schema.get("properties", {}).items():
            if "description" not in prop and field in FIELD_DOCS:
                prop["description"] = d(*FIELD_DOCS[field])

    return fill


for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, BaseModel) and _cls.__module__ == __name__:
        _cls.model_config["json_schema_extra"] = _documented(
            _cls.model_config.get("json_schema_extra"), _cls.__name__
        )
        _cls.model_rebuild(force=True)
