"""The tenancy matrix over real HTTP: each insurer, each role, each endpoint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from intake.bootstrap import DEFINITION

from tests.integration.intake.helpers import (
    ADMIN,
    add_insurer,
    add_staff,
    bearer,
    case_body,
    phone_body,
)

INSURERS = ["PICC", "PINGAN", "CPIC"]
ROLES = ["agent", "dispatcher", "team_lead", "supervisor", "manager", "surveyor"]
DESK = {"agent", "team_lead", "supervisor", "manager", "admin"}
STAFF = {"agent", "dispatcher", "team_lead", "supervisor", "manager"}


@dataclass
class Caller:
    name: str  # PICC, PINGAN, CPIC, a role, admin or anonymous
    headers: dict[str, str]

    @property
    def insurer(self) -> bool:
        return self.name in INSURERS


@dataclass
class Endpoint:
    label: str
    request: Callable[[Caller, dict[str, Any]], tuple[str, str, dict[str, Any] | None]]
    expect: Callable[[Caller], int]


def own_or_404(ok: int, staff: set[str]) -> Callable[[Caller], int]:
    """PICC owns the resource: other insurers get 404, listed staff `ok`, others 403."""

    def f(c: Caller) -> int:
        if c.name == "anonymous":
            return 401
        if c.insurer:
            return ok if c.name == "PICC" else 404
        return ok if c.name in staff else 403

    return f


def only(ok: int, names: set[str]) -> Callable[[Caller], int]:
    def f(c: Caller) -> int:
        if c.name == "anonymous":
            return 401
        return ok if c.name in names or (c.insurer and "insurer" in names) else 403

    return f


def endpoints() -> list[Endpoint]:
    return [
        Endpoint(
            "POST /v1/cases",
            lambda c, w: ("POST", "/v1/cases", case_body()),
            only(201, {"insurer"}),
        ),
        Endpoint(
            "GET /v1/cases/{picc case}",
            lambda c, w: ("GET", f"/v1/cases/{w['case']}", None),
            own_or_404(200, STAFF | {"admin"}),
        ),
        Endpoint(
            "GET /v1/cases",
            lambda c, w: ("GET", "/v1/cases", None),
            only(200, STAFF | {"admin", "insurer"}),
        ),
        Endpoint(
            "POST /v1/cases/{picc case}/corrections",
            lambda c, w: (
                "POST",
                f"/v1/cases/{w['case']}/corrections",
                {"changes": {"description": f"更正 by {c.name}"}, "reason": "核对后更正"},
            ),
            own_or_404(200, DESK),
        ),
        Endpoint(
            "POST /v1/cases/{fresh picc case}/cancellation",
            lambda c, w: (
                "POST",
                f"/v1/cases/{w['fresh'][c.name]}/cancellation",
                {"reason": "撤案测试"},
            ),
            own_or_404(200, DESK),
        ),
        Endpoint(
            "POST /v1/cases/{picc case}/documents/claim_form/received",
            lambda c, w: ("POST", f"/v1/cases/{w['case']}/documents/claim_form/received", {}),
            own_or_404(200, DESK),
        ),
        Endpoint(
            "POST /v1/cases/{picc case}/handover",
            lambda c, w: (
                "POST",
                f"/v1/cases/{w['fresh'][c.name + ':h']}/handover",
                {"to_owner": "S001", "reason": "移交主管处理"},
            ),
            only(200, {"team_lead", "supervisor", "manager", "admin"}),
        ),
        Endpoint(
            "POST /v1/phone-reports",
            lambda c, w: ("POST", "/v1/phone-reports", phone_body("PICC")),
            only(201, DESK),
        ),
        Endpoint(
            "POST /v1/consultations",
            lambda c, w: (
                "POST",
                "/v1/consultations",
                {
                    "caller_name": "李娜",
                    "caller_phone": "13900001111",
                    "topic": "理赔流程",
                    "answer": "已告知流程",
                    "resolved": True,
                },
            ),
            only(201, DESK),
        ),
        Endpoint(
            "GET /v1/discrepancies",
            lambda c, w: ("GET", "/v1/discrepancies", None),
            only(200, {"team_lead", "supervisor", "manager", "admin"}),
        ),
        Endpoint(
            "GET /v1/document-checklists/PICC/injury",
            lambda c, w: ("GET", "/v1/document-checklists/PICC/injury", None),
            own_or_404(200, STAFF | {"admin"}),
        ),
        Endpoint(
            "PUT /v1/document-checklists/PICC/other",
            lambda c, w: (
                "PUT",
                "/v1/document-checklists/PICC/other",
                {"items": [{"code": "claim_form", "name": "索赔申请书"}]},
            ),
            only(200, {"manager", "admin"}),
        ),
        Endpoint(
            "POST /v1/webhooks",
            lambda c, w: (
                "POST",
                "/v1/webhooks",
                {"url": "http://127.0.0.1:9/hook", "events": ["case.closed"]},
            ),
            only(201, {"insurer"}),
        ),
        Endpoint(
            "GET /v1/webhooks/{picc webhook}/deliveries",
            lambda c, w: ("GET", f"/v1/webhooks/{w['webhook']}/deliveries", None),
            own_or_404(200, {"admin"}),
        ),
        Endpoint(
            "POST /v1/admin/staff",
            lambda c, w: (
                "POST",
                "/v1/admin/staff",
                {
                    "number": f"X{len(c.name)}{c.name[:3].upper()}",
                    "name": "新员工",
                    "role": "agent",
                },
            ),
            only(201, {"admin"}),
        ),
        Endpoint(
            "GET /v1/consultations",
            lambda c, w: ("GET", "/v1/consultations", None),
            only(200, STAFF | {"admin"}),
        ),
        Endpoint(
            "GET /v1/insurers",
            lambda c, w: ("GET", "/v1/insurers", None),
            only(200, STAFF | {"admin"}),
        ),
        Endpoint(
            "GET /v1/webhooks",
            lambda c, w: ("GET", "/v1/webhooks", None),
            only(200, {"insurer"}),
        ),
        Endpoint(
            "POST /v1/discrepancies/{unknown}/resolve",
            lambda c, w: ("POST", "/v1/discrepancies/dis_unknown/resolve", {"note": "核对完毕"}),
            only(404, {"supervisor", "manager", "admin"}),
        ),
        Endpoint(
            "POST /v1/admin/insurers/ZZTEST/keys/rotate",
            lambda c, w: ("POST", "/v1/admin/insurers/ZZTEST/keys/rotate", None),
            only(200, {"admin"}),
        ),
        Endpoint(
            "GET /v1/admin/staff",
            lambda c, w: ("GET", "/v1/admin/staff", None),
            only(200, {"admin"}),
        ),
        Endpoint(
            "GET /v1/consultations/{id}",
            lambda c, w: ("GET", f"/v1/consultations/{w['consultation']}", None),
            only(200, STAFF | {"admin"}),
        ),
        Endpoint(
            "POST /v1/consultations/{fresh, owned by the agent}/handover",
            lambda c, w: (
                "POST",
                f"/v1/consultations/{w['fresh_q'][c.name]}/handover",
                {"to_owner": "S001", "reason": "转主管跟进"},
            ),
            only(200, {"agent", "team_lead", "supervisor", "manager", "admin"}),
        ),
        Endpoint(
            "DELETE /v1/webhooks/{fresh picc webhook}",
            lambda c, w: ("DELETE", f"/v1/webhooks/{w['fresh_hook'][c.name]}", None),
            own_or_404(204, set()),
        ),
        Endpoint(
            "POST /v1/admin/insurers",
            lambda c, w: (
                "POST",
                "/v1/admin/insurers",
                {"code": f"N{c.name[:3].upper()}{len(c.name)}", "name": "新保险公司"},
            ),
            only(201, {"admin"}),
        ),
        Endpoint(
            "POST /v1/admin/insurers/ZZREVOKE/keys/revoke",
            lambda c, w: ("POST", "/v1/admin/insurers/ZZREVOKE/keys/revoke", None),
            only(200, {"admin"}),
        ),
        Endpoint(
            "POST /v1/admin/staff/X900/tokens/rotate",
            lambda c, w: ("POST", "/v1/admin/staff/X900/tokens/rotate", None),
            only(200, {"admin"}),
        ),
        Endpoint(
            "POST /v1/admin/tokens/{a token of X901}/revoke",
            lambda c, w: ("POST", f"/v1/admin/tokens/{w['x901_token_id']}/revoke", None),
            only(200, {"admin"}),
        ),
        Endpoint(
            "POST /v1/admin/staff/X902/revoke",
            lambda c, w: ("POST", "/v1/admin/staff/X902/revoke", None),
            only(200, {"admin"}),
        ),
        Endpoint(
            "GET /v1/admin/insurers",
            lambda c, w: ("GET", "/v1/admin/insurers", None),
            only(200, {"admin"}),
        ),
    ]


async def test_tenancy_matrix(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        c = svc.client
        callers = [Caller(code, bearer(await add_insurer(c, code))) for code in INSURERS]
        for n, role in enumerate(ROLES):
            callers.append(Caller(role, bearer(await add_staff(c, f"R{n:03d}", role))))
        await add_staff(c, "S001", "supervisor")
        await add_insurer(c, "ZZTEST")
        await add_insurer(c, "ZZREVOKE")
        await add_staff(c, "X900", "agent")
        await add_staff(c, "X902", "agent")
        x901 = await c.post(
            "/v1/admin/staff",
            json={"number": "X901", "name": "临时", "role": "agent"},
            headers=ADMIN,
        )
        agent = next(x for x in callers if x.name == "agent")
        callers += [Caller("admin", ADMIN), Caller("anonymous", {})]
        picc = callers[0].headers
        world: dict[str, Any] = {"fresh": {}}
        world["case"] = (await c.post("/v1/cases", json=case_body(), headers=picc)).json()[
            "case_id"
        ]
        for caller in callers:
            for suffix in ("", ":h"):
                r = await c.post("/v1/cases", json=case_body(), headers=picc)
                world["fresh"][caller.name + suffix] = r.json()["case_id"]
        world["x901_token_id"] = x901.json()["token_id"]
        q = {
            "caller_name": "李娜",
            "caller_phone": "13900001111",
            "topic": "理赔流程",
            "answer": "已告知流程",
            "resolved": True,
        }
        world["consultation"] = (
            await c.post("/v1/consultations", json=q, headers=agent.headers)
        ).json()["consultation_id"]
        world["fresh_q"], world["fresh_hook"] = {}, {}
        for caller in callers:
            r = await c.post("/v1/consultations", json=q, headers=agent.headers)
            world["fresh_q"][caller.name] = r.json()["consultation_id"]
            r = await c.post(
                "/v1/webhooks",
                json={"url": "http://127.0.0.1:9/y", "events": ["case.closed"]},
                headers=picc,
            )
            world["fresh_hook"][caller.name] = r.json()["webhook_id"]
        hook = await c.post(
            "/v1/webhooks",
            json={"url": "http://127.0.0.1:9/x", "events": ["case.assigned"]},
            headers=picc,
        )
        world["webhook"] = hook.json()["webhook_id"]

        failures = []
        checked = 0
        for ep in endpoints():
            for caller in callers:
                method, path, body = ep.request(caller, world)
                r = await c.request(method, path, json=body, headers=caller.headers)
                want = ep.expect(caller)
                checked += 1
                if r.status_code != want:
                    failures.append(
                        f"{ep.label} as {caller.name}: {r.status_code} != {want} {r.text[:200]}"
                    )
        assert not failures, "\n".join(failures)
        assert checked == len(endpoints()) * len(callers)

        # an insurer's list holds only its own cases
        for caller in callers[:3]:
            items = (await c.get("/v1/cases?limit=200", headers=caller.headers)).json()["items"]
            assert {i["insurer_code"] for i in items} <= {caller.name}
