"""Request bodies of the complaints API, with descriptions in English and Chinese and examples."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from claimdesk.mainland import Phone
from pydantic import BaseModel, ConfigDict, Field

from complaints.sla import Category, Duration, Severity

STAFF_ID = r"^[A-Za-z0-9_.:-]{1,40}$"
CASE_ID = r"^[A-Za-z0-9_.:-]{1,64}$"


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ComplaintIn(Body):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "case_id": "C20261126-0001",
                    "category": "attitude",
                    "severity": "medium",
                    "channel": "phone",
                    "caller_name": "王先生",
                    "caller_phone": "13800138000",
                    "matter": "查勘员态度差，定损时不解释扣减项目",
                    "surveyor_id": "S017",
                }
            ]
        },
    )
    case_id: str | None = Field(None, pattern=CASE_ID, description="case 案件号 (optional)")
    category: Category = Field(description="category 投诉类别")
    severity: Severity = Field("medium", description="severity 严重程度")
    channel: Literal["phone", "web", "email", "insurer", "callback"] = Field(
        "phone", description="how it came in 来源渠道"
    )
    caller_name: str = Field(min_length=1, max_length=60, description="caller's name 来电人姓名")
    caller_phone: Phone = Field(description="caller's phone 联系电话")
    matter: str = Field(
        min_length=2, max_length=2000, description="what the complaint is about 投诉事项"
    )
    surveyor_id: str | None = Field(
        None, pattern=STAFF_ID, description="surveyor complained about 被投诉公估师"
    )
    insurer_code: str | None = Field(
        None, pattern=r"^[A-Z0-9_]{2,20}$", description="insurer 委托保险公司 (else from the case)"
    )
    promised_answer_at: datetime | None = Field(
        None,
        description="answer time promised to the caller 承诺答复时间 (default: resolution due time)",
    )


class TriageIn(Body):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {"valid": True, "reason": "查勘超时属实", "assignee": "T003"},
                {"valid": False, "reason": "非本公司承办案件", "assignee": None},
            ]
        },
    )
    valid: bool = Field(description="is it a valid complaint 是否有效投诉")
    reason: str = Field(min_length=2, max_length=1000, description="why 判定理由")
    assignee: str | None = Field(
        None, pattern=STAFF_ID, description="responsible person 责任人 (required when valid)"
    )


class AssignIn(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"assignee": "T005", "reason": "原责任人休假"}]},
    )
    assignee: str = Field(pattern=STAFF_ID, description="new responsible person 新责任人")
    reason: str = Field(min_length=2, max_length=500, description="why 变更原因")


class WaitIn(Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "等待客户提供维修发票"}]}
    )
    reason: str = Field(min_length=2, max_length=500, description="what we wait for 等待客户事项")


class ResumeIn(Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"note": "客户已补交发票"}]}
    )
    note: str = Field("", max_length=500, description="what came back 客户回复")


class ExtendIn(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"reason": "需等待保险公司复核定损金额", "extend_to": {"days": 30}}]
        },
    )
    reason: str = Field(min_length=2, max_length=500, description="why 延期理由")
    extend_to: Duration | None = Field(
        None, description="new total limit 延至 (default and maximum: the policy's, 30 days)"
    )


class ResolveIn(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "outcome": "重新核定定损金额，补偿 800 元",
                    "feedback_to_customer": "已电话告知客户复核结果及补偿方案",
                }
            ]
        },
    )
    outcome: str = Field(min_length=2, max_length=2000, description="outcome 处理结果")
    feedback_to_customer: str = Field(
        min_length=2, max_length=2000, description="what the customer was told 反馈客户内容"
    )


class FeedbackIn(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"satisfied": True, "comment": "满意"},
                {"satisfied": False, "comment": "补偿金额不认可", "reopen": True},
            ]
        },
    )
    satisfied: bool = Field(description="customer satisfied 客户是否满意")
    comment: str = Field("", max_length=1000, description="customer's words 客户意见")
    reopen: bool = Field(True, description="reopen when not satisfied 不满意时重新处理")


class ImprovementIn(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "action": "对查勘员进行服务规范培训",
                    "owner": "T003",
                    "due_at": "2026-12-10T10:00:00Z",
                }
            ]
        },
    )
    action: str = Field(min_length=2, max_length=1000, description="improvement action 整改措施")
    owner: str = Field(pattern=STAFF_ID, description="who carries it out 整改责任人")
    due_at: datetime | None = Field(None, description="due 完成期限")


class CompleteIn(Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"note": "培训已完成，签到表存档"}]}
    )
    note: str = Field("", max_length=1000, description="what was done 完成情况")


class HandoverIn(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "item_type": "complaint",
                    "item_id": "CP1A2B3C4D5E6F",
                    "to_owner": "A007",
                    "reason": "交班：本人下班，移交夜班坐席跟进",
                }
            ]
        },
    )
    item_type: Literal["complaint", "callback", "improvement"] = Field(description="what 事项类型")
    item_id: str = Field(pattern=CASE_ID, description="its id 事项编号")
    complaint_id: str | None = Field(
        None, pattern=CASE_ID, description="the complaint an improvement belongs to"
    )
    to_owner: str = Field(pattern=STAFF_ID, description="named new owner 新责任人")
    reason: str = Field(min_length=2, max_length=500, description="why 移交原因")


class RateIn(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rate": 0.3}]})
    rate: float = Field(ge=0, le=1, description="share of completed surveys called back 回访比例")


class ComplaintFromCallback(Body):
    category: Category = Field(description="category 投诉类别")
    severity: Severity = Field("medium", description="severity 严重程度")
    matter: str | None = Field(None, max_length=2000, description="matter (default: the reasons)")
    caller_name: str | None = Field(None, max_length=60, description="default: the case's caller")
    caller_phone: Phone | None = Field(None, description="default: the case's phone")


class AttemptIn(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"reached": False, "reason": "无人接听"},
                {
                    "reached": True,
                    "satisfaction": 2,
                    "surveyor_rating": 2,
                    "reasons": ["到场慢", "态度冷淡"],
                    "comment": "等了三个小时",
                    "open_complaint": {"category": "delay", "severity": "medium"},
                },
            ]
        },
    )
    reached: bool = Field(description="customer reached 是否接通")
    reason: str = Field("", max_length=300, description="why not reached 未接通原因")
    satisfaction: int | None = Field(None, ge=1, le=5, description="satisfaction 满意度 1-5")
    surveyor_rating: int | None = Field(None, ge=1, le=5, description="surveyor rating 公估师评分")
    reasons: list[str] = Field(
        [], max_length=10, description="reasons for dissatisfaction 不满意原因"
    )
    comment: str = Field("", max_length=1000, description="customer's words 客户意见")
    open_complaint: ComplaintFromCallback | None = Field(
        None, description="open a linked complaint in the same step 一键转投诉"
    )
