"""Demo mode: seed insurers and staff idempotently, write their credentials, stream cases."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from datetime import timedelta
from functools import cache
from importlib import resources
from typing import Any

from claimdesk.auth import Principal, verify_token
from claimdesk.errors import DomainError
from claimdesk.mainland import PROVINCES
from claimdesk.service import Runtime
from fastapi.exceptions import RequestValidationError

from intake import identity
from intake.handlers import isettings, log_consultation, report_case
from intake.schemas import CaseIn, ConsultationIn

log = logging.getLogger(__name__)


@cache
def demo_data() -> dict[str, Any]:
    text = resources.files("intake").joinpath("data/demo.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _read_credentials(path: Any) -> dict[str, str]:
    """`name = secret` lines written by a previous start (so keys survive restarts)."""
    out: dict[str, str] = {}
    try:
        for line in path.read_text("utf-8").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] in ("insurer", "staff"):
                out[f"{parts[0]}:{parts[1]}"] = parts[2]
    except OSError:
        pass
    return out


async def seed(rt: Runtime) -> None:
    """Create the demo insurers and staff once; reuse their still-valid credentials."""
    s = rt.settings
    path = s.data_dir / "credentials-intake.txt"
    previous = _read_credentials(path)
    now = rt.clock.now()
    secret = s.secret()
    lines = ["# ClaimDesk intake demo credentials (API keys for insurers, tokens for staff)"]
    async with rt.pool.acquire() as conn:
        for ins in demo_data()["insurers"]:
            key = previous.get(f"insurer:{ins['code']}")
            exists = await conn.fetchval("SELECT true FROM insurers WHERE code = $1", ins["code"])
            if not exists:
                key = (await identity.create_insurer(conn, ins["code"], ins["name"], now))[
                    "api_key"
                ]
            elif key is None or not await identity.insurer_key_valid(conn, key):
                key = (await identity.rotate_insurer_key(conn, ins["code"], now))["api_key"]
            lines.append(f"insurer {ins['code']:<10} {key}")
        for st in demo_data()["staff"]:
            token = previous.get(f"staff:{st['number']}")
            exists = await conn.fetchval("SELECT true FROM staff WHERE number = $1", st["number"])
            if not exists:
                issued = await identity.create_staff(conn, st, secret, now, s.token_ttl_s)
                token = issued["token"]
            elif token is None or not await _token_ok(conn, secret, token):
                issued = await identity.rotate_staff_token(
                    conn, rt.store, st["number"], secret, now, s.token_ttl_s
                )
                token = issued["token"]
            lines.append(f"staff   {st['number']:<10} {token}  ({st['role']}, {st['name']})")
    s.data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", "utf-8")
    path.chmod(0o600)


async def _token_ok(conn: Any, secret: str, token: str) -> bool:
    try:
        p = verify_token(secret, token)
    except DomainError:
        return False
    return not await conn.fetchval(
        "SELECT revoked_at IS NOT NULL FROM staff_tokens WHERE token_id = $1", p.token_id
    )


def random_consultation(rnd: random.Random, now: Any) -> dict[str, Any]:
    data = demo_data()
    q = rnd.choice(data["consultations"])
    resolved = "核实" not in q["answer"] and rnd.random() < 0.8
    out: dict[str, Any] = {
        "caller_name": rnd.choice(data["names"]),
        "caller_phone": f"1{rnd.choice('35789')}{rnd.randrange(10**9):09d}",
        "topic": q["topic"],
        "answer": q["answer"],
        "resolved": resolved,
    }
    if not resolved:
        out["follow_up_owner"] = "S001"
        out["follow_up_due"] = (now + timedelta(hours=4)).isoformat()
    return out


def random_case(rnd: random.Random, now: Any, n: int) -> dict[str, Any]:
    data = demo_data()
    place = rnd.choice(data["places"])
    loss_type = rnd.choices(
        ["vehicle_own_damage", "vehicle_third_party", "injury", "property"], [6, 3, 1, 1]
    )[0]
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    if rnd.random() < 0.25:
        plate = f"沪{rnd.choice('ABDE')}{rnd.choice('DF')}{rnd.randrange(10**5):05d}"
    else:
        plate = f"沪{rnd.choice(letters[:14])}{rnd.randrange(10**5):05d}"
    if rnd.random() < 0.1:
        plate = rnd.choice(PROVINCES[:12]) + plate[1:]
    name = rnd.choice(data["names"])
    phone = f"1{rnd.choice('35789')}{rnd.randrange(10**9):09d}"
    shop = rnd.random() < 0.3
    return {
        "report_no": f"DEMO{now:%Y%m%d%H%M%S}{n:04d}{rnd.randrange(1000):03d}",
        "policy_no": f"P{rnd.randrange(10**12):012d}",
        "plate": plate,
        "loss_type": loss_type,
        "loss_time": (now - timedelta(minutes=rnd.randint(5, 120))).isoformat(),
        "loss_address": place["address"],
        "loss_lat": round(place["lat"] + rnd.uniform(-0.004, 0.004), 5),
        "loss_lon": round(place["lon"] + rnd.uniform(-0.004, 0.004), 5),
        "description": rnd.choice(data["descriptions"]),
        "reporter_name": name,
        "reporter_phone": phone,
        "insured_name": name,
        "insured_phone": phone,
        "survey_place": "repair_shop" if shop else "scene",
        "repair_shop": rnd.choice(data["repair_shops"]) if shop else None,
        "injuries": loss_type == "injury",
        "priority": "urgent" if loss_type == "injury" or rnd.random() < 0.1 else "normal",
    }


async def case_stream(rt: Runtime) -> None:
    """One generated insurer case every CLAIMDESK_INTAKE_DEMO_CASE_INTERVAL_S seconds."""
    interval = isettings(rt).demo_case_interval_s
    if interval <= 0:
        return
    rnd = random.Random()  # noqa: S311 - demo data
    n = 0
    while True:
        await asyncio.sleep(interval)
        n += 1
        insurer = rnd.choice(demo_data()["insurers"])
        who = Principal(subject="demo", role="insurer", insurer_code=insurer["code"])
        try:
            body = CaseIn.model_validate(random_case(rnd, rt.clock.now(), n))
            await report_case(rt, who, body, None)
            if n % 3 == 0:  # now and then a caller asks a question (理赔咨询)
                agent = Principal(subject="demo", role="agent", number="A001", name="王丽")
                q = ConsultationIn.model_validate(random_consultation(rnd, rt.clock.now()))
                await log_consultation(rt, agent, q)
        except asyncio.CancelledError:
            raise
        except (DomainError, RequestValidationError, ValueError) as exc:
            log.warning("demo case rejected", extra={"cd_error": repr(exc)})
        except Exception as exc:
            log.warning("demo case failed", extra={"cd_error": repr(exc)})
