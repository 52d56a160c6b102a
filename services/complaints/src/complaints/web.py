"""The customers' complaint form: plain HTML that works without JavaScript, on a phone.

Strict validation (the same rules as the agents' API), a hidden honeypot field, and a
rate limit per client address and per phone number, stored in Postgres so it holds across
processes. The complaint is owned by the configured duty agent (首问责任制: never ownerless).
"""

from __future__ import annotations

import html
from datetime import timedelta
from typing import Annotated
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from claimdesk.context import set_actor
from claimdesk.events.complaints import ComplaintReceived
from claimdesk.mainland import Phone
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from complaints import handlers
from complaints.handlers import Ctx
from complaints.models import CASE_ID
from complaints.settings import ComplaintsSettings
from complaints.sla import Category

router = APIRouter(tags=["public"])
MAX_FORM_BYTES = 16 * 1024

CATEGORIES = {
    "attitude": "服务态度 Attitude",
    "delay": "处理不及时 Delay",
    "assessed_amount": "定损金额 Assessed amount",
    "damage": "车辆/财产损坏 Damage",
    "other": "其他 Other",
}
FIELD_NAMES = {
    "case_id": "案件号 case number",
    "category": "投诉类别 category",
    "caller_name": "姓名 name",
    "caller_phone": "手机号 phone",
    "matter": "投诉内容 what happened",
}


class WebComplaint(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    case_id: Annotated[str | None, Field(None, pattern=CASE_ID)]
    category: Category
    caller_name: str = Field(min_length=1, max_length=60)
    caller_phone: Phone
    matter: str = Field(min_length=10, max_length=2000)
    website: str = Field("", max_length=0)  # honeypot: people never see it, bots fill it


STYLE = """
*{box-sizing:border-box}body{font-family:system-ui,-apple-system,"PingFang SC","Noto Sans CJK SC",sans-serif;
margin:0;background:#f4f6f8;color:#1b1f23;font-size:17px}
main{max-width:560px;margin:0 auto;padding:16px}h1{font-size:1.35rem;margin:.4rem 0 1rem}
label{display:block;font-weight:600;margin:14px 0 6px}
input,select,textarea{width:100%;font-size:17px;padding:12px;border:1px solid #aab3bd;border-radius:8px;background:#fff}
textarea{min-height:140px}button{margin-top:18px;width:100%;padding:14px;font-size:18px;border:0;
border-radius:8px;background:#0b5cad;color:#fff}.hint{color:#57606a;font-size:.9rem}
.errors{background:#fdecea;border:1px solid #f5c2c0;padding:10px 14px;border-radius:8px}
.ok{background:#e8f5e9;border:1px solid #a5d6a7;padding:14px;border-radius:8px}.hp{position:absolute;left:-5000px}
"""


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body><main>{body}</main></body></html>""",
        status_code=status,
    )


def form_html(values: dict[str, str], errors: list[str]) -> str:
    v = {k: html.escape(values.get(k, "")) for k in FIELD_NAMES}
    options = "".join(
        f'<option value="{k}"{" selected" if values.get("category") == k else ""}>{label}</option>'
        for k, label in CATEGORIES.items()
    )
    error_html = (
        '<div class="errors" role="alert" id="errors"><ul>'
        + "".join(f"<li>{html.escape(e)}</li>" for e in errors)
        + "</ul></div>"
        if errors
        else ""
    )
    return f"""<h1>投诉受理 · Make a complaint</h1>
<p class="hint">我们会在承诺时间内答复您。We will answer within the promised time.</p>
{error_html}
<form method="post" action="/complaint-form" novalidate>
<label for="caller_name">姓名 Name</label>
<input id="caller_name" name="caller_name" required maxlength="60" value="{v["caller_name"]}" autocomplete="name">
<label for="caller_phone">手机号 Phone</label>
<input id="caller_phone" name="caller_phone" required inputmode="tel" value="{v["caller_phone"]}" autocomplete="tel">
<label for="case_id">案件号 Case number <span class="hint">(如有 if known)</span></label>
<input id="case_id" name="case_id" maxlength="64" value="{v["case_id"]}">
<label for="category">投诉类别 Category</label>
<select id="category" name="category" required><option value="">请选择 choose…</option>{options}</select>
<label for="matter">投诉内容 What happened</label>
<textarea id="matter" name="matter" required minlength="10" maxlength="2000">{v["matter"]}</textarea>
<div class="hp" aria-hidden="true"><label for="website">Website</label>
<input id="website" name="website" tabindex="-1" autocomplete="off"></div>
<button type="submit">提交 Submit</button>
</form>"""


@router.get(
    "/complaint-form",
    response_class=HTMLResponse,
    summary="The customers' complaint form (mobile-friendly HTML)",
    description="A plain HTML form; it posts to the same address.",
)
async def complaint_form() -> HTMLResponse:
    return page("投诉受理 Complaint", form_html({}, []))


@router.post(
    "/complaint-form",
    response_class=HTMLResponse,
    summary="Submit the customers' complaint form",
    description="application/x-www-form-urlencoded. 201 with the complaint number; 422 with "
    "every problem listed; 429 when one address or phone sends too many.",
    responses={
        201: {"content": {"text/html": {"example": "<p>投诉编号 CP1A2B3C4D5E6F</p>"}}},
        422: {"content": {"text/html": {"example": "<li>手机号 phone: invalid</li>"}}},
        429: {"content": {"text/html": {"example": "<p>提交过于频繁</p>"}}},
    },
)
async def submit_form(request: Request) -> HTMLResponse:
    rt = request.app.state.runtime
    cfg: ComplaintsSettings = rt.extras["complaints_settings"]
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return page("错误 Error", "<p class='errors'>请使用表单提交 Use the form.</p>", 415)
    length = request.headers.get("content-length", "")
    if not length.isdigit() or int(length) > MAX_FORM_BYTES:
        return page("错误 Error", "<p class='errors'>内容过长 Too long.</p>", 413)
    raw = (await request.body())[:MAX_FORM_BYTES].decode("utf-8", errors="replace")
    values = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
    values = {k: v for k, v in values.items() if k != "case_id" or v.strip()}
    try:
        data = WebComplaint.model_validate(values)
    except ValidationError as exc:
        errors = []
        for e in exc.errors():
            field = str(e["loc"][0]) if e["loc"] else "form"
            if field == "website":
                return page("错误 Error", "<p class='errors'>提交被拒绝 Rejected.</p>", 422)
            errors.append(f"{FIELD_NAMES.get(field, field)}: {e['msg']}")
        return page("请修改 Please correct", form_html(values, errors), 422)
    client = request.client.host if request.client else "unknown"
    set_actor(f"public:{client}")
    async with rt.pool.acquire() as conn, conn.transaction():
        now = rt.clock.now()
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('complaints:web-form'))")
        recent = await conn.fetchval(
            "SELECT count(*) FROM form_submissions WHERE client = ANY($1::text[]) AND at > $2",
            [f"ip:{client}", f"phone:{data.caller_phone}"],
            now - timedelta(hours=1),
        )
        if recent >= cfg.web_form_per_hour:
            return page(
                "请稍后再试 Try later",
                "<p class='errors' role='alert'>提交过于频繁，请稍后再试或致电客服。"
                "Too many submissions: please try later or call us.</p>",
                429,
            )
        await conn.executemany(
            "INSERT INTO form_submissions (client, at) VALUES ($1, $2)",
            [(f"ip:{client}", now), (f"phone:{data.caller_phone}", now)],
        )
        complaint_id = handlers.new_complaint_id()
        state, _ = await handlers.receive(
            Ctx(rt.store, now),
            conn,
            ComplaintReceived(
                complaint_id=complaint_id,
                case_id=data.case_id,
                category=data.category,
                severity="medium",
                channel="web",
                caller_name=data.caller_name,
                caller_phone=data.caller_phone,
                matter=data.matter,
                owner=cfg.web_form_owner,
            ),
        )
    promised = state.promised_answer_at
    when = (
        promised.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")
        if promised
        else ""
    )
    return page(
        "已受理 Received",
        f"""<h1>已受理 · Received</h1><div class="ok" role="status">
<p>投诉编号 Complaint number: <strong id="complaint-id">{complaint_id}</strong></p>
<p>我们将在 <strong>{html.escape(when)}</strong> 前答复您。We will answer by then.</p></div>""",
        201,
    )
