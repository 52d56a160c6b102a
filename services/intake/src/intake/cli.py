"""`claimdesk insurer ...` and `claimdesk staff ...`: the admin endpoints over HTTP.

The URL comes from Settings().url("intake"), the admin token from CLAIMDESK_ADMIN_TOKEN.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx
from claimdesk.settings import load_settings

ROLES = ["agent", "dispatcher", "team_lead", "supervisor", "manager", "surveyor"]


def _call(method: str, path: str, body: dict[str, Any] | None = None) -> int:
    settings = load_settings()
    if settings.admin_token is None:
        sys.stderr.write("claimdesk: CLAIMDESK_ADMIN_TOKEN is not set\n")
        return 2
    url = settings.url("intake") + path
    headers = {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}
    try:
        r = httpx.request(method, url, json=body, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        sys.stderr.write(f"claimdesk: intake not reachable at {url}: {exc}\n")
        return 1
    try:
        data = r.json()
    except ValueError:
        data = r.text
    if r.is_success:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
        return 0
    message = data.get("message", data) if isinstance(data, dict) else data
    sys.stderr.write(f"claimdesk: {r.status_code} {message}\n")
    return 1


def register(subparsers: Any) -> None:
    ins = subparsers.add_parser("insurer", help="insurers and their API keys (admin)")
    isub = ins.add_subparsers(dest="insurer_command", required=True)
    p = isub.add_parser("add", help="register an insurer; prints its API key once")
    p.add_argument("--code", required=True)
    p.add_argument("--name", required=True)
    p.set_defaults(
        func=lambda a: _call("POST", "/v1/admin/insurers", {"code": a.code, "name": a.name})
    )
    p = isub.add_parser("rotate-key", help="issue a new API key; older keys stop working")
    p.add_argument("--code", required=True)
    p.set_defaults(func=lambda a: _call("POST", f"/v1/admin/insurers/{a.code}/keys/rotate"))
    p = isub.add_parser("revoke", help="revoke every API key of an insurer")
    p.add_argument("--code", required=True)
    p.set_defaults(func=lambda a: _call("POST", f"/v1/admin/insurers/{a.code}/keys/revoke"))
    p = isub.add_parser("list", help="list insurers")
    p.set_defaults(func=lambda a: _call("GET", "/v1/admin/insurers"))

    st = subparsers.add_parser("staff", help="staff members and their tokens (admin)")
    ssub = st.add_subparsers(dest="staff_command", required=True)
    p = ssub.add_parser("add", help="register a staff member; prints a token")
    p.add_argument("--number", required=True, help="staff number (工号), e.g. A001")
    p.add_argument("--name", required=True)
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--team", default=None)
    p.set_defaults(func=_staff_add)
    p = ssub.add_parser("rotate-token", help="issue a new token; older ones are revoked")
    p.add_argument("--number", required=True)
    p.set_defaults(func=lambda a: _call("POST", f"/v1/admin/staff/{a.number}/tokens/rotate"))
    p = ssub.add_parser("revoke", help="deactivate a staff member and revoke their tokens")
    p.add_argument("--number", required=True)
    p.set_defaults(func=lambda a: _call("POST", f"/v1/admin/staff/{a.number}/revoke"))
    p = ssub.add_parser("list", help="list staff")
    p.set_defaults(func=lambda a: _call("GET", "/v1/admin/staff"))


def _staff_add(a: argparse.Namespace) -> int:
    body = {"number": a.number, "name": a.name, "role": a.role, "team": a.team}
    return _call("POST", "/v1/admin/staff", body)
