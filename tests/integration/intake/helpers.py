"""Helpers for intake tests: register insurers and staff over the admin API, sample bodies."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from claimdesk.testing.plugin import TEST_ADMIN

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def add_insurer(client: httpx.AsyncClient, code: str, name: str | None = None) -> str:
    r = await client.post(
        "/v1/admin/insurers", json={"code": code, "name": name or f"{code} 财产保险"}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    key: str = r.json()["api_key"]
    assert key.startswith("cdk_")
    return key


async def add_staff(
    client: httpx.AsyncClient, number: str, role: str, team: str = "坐席一组"
) -> str:
    r = await client.post(
        "/v1/admin/staff",
        json={"number": number, "name": f"员工{number}", "role": role, "team": team},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


def report_no() -> str:
    return f"RPT{uuid.uuid4().hex[:12].upper()}"


def case_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "report_no": report_no(),
        "policy_no": "PDAA202631010000012345",
        "plate": "沪A12345",
        "loss_type": "vehicle_own_damage",
        "loss_time": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "loss_address": "上海市浦东新区世纪大道100号",
        "loss_lat": 31.2353,
        "loss_lon": 121.5058,
        "description": "两车追尾,前车后保险杠受损",
        "reporter_name": "张伟",
        "reporter_phone": "13812345678",
        "insured_name": "张伟",
        "insured_phone": "13812345678",
        "survey_place": "scene",
        "injuries": False,
        "priority": "normal",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def phone_body(insurer_code: str, **overrides: Any) -> dict[str, Any]:
    body = case_body(**overrides)
    body.pop("report_no", None) if "report_no" not in overrides else None
    body.update(
        insurer_code=insurer_code,
        caller_name="张伟",
        caller_phone="13812345678",
        callback_promised_at=(datetime.now(UTC) + timedelta(minutes=30)).isoformat(),
    )
    return body
