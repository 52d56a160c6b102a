"""Identity shared by every service: signed bearer tokens for staff and surveyors.

Tokens are HS256 JWTs signed with CLAIMDESK_TOKEN_SECRET and verified locally by each
service (no shared table). Insurer API keys are opaque and checked by intake alone. A token
carries `jti`, so intake can revoke one: intake refuses it from its own table, and every other
service from the revocations it learns from the intake topic (`claimdesk.revocations`; the
runtime's `revoked_tokens`). A service may refuse more through its runtime's `token_check`
(dispatch: a surveyor's tokens of an older generation, or of a retired surveyor). A live
stream asks `refusal` every `REVALIDATE_S` and ends (`revoked_sse`) once its token is refused.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import jwt
from fastapi import Depends, Request
from pydantic import BaseModel

from claimdesk.errors import Forbidden, Unauthorized

Role = Literal["agent", "dispatcher", "team_lead", "supervisor", "manager", "surveyor", "admin"]
STAFF_ROLES: tuple[Role, ...] = ("agent", "dispatcher", "team_lead", "supervisor", "manager")
_ALGORITHM = "HS256"
_ISSUER = "claimdesk"


class Principal(BaseModel):
    """Who is calling: a staff member, a surveyor, the admin, or an insurer (intake only)."""

    subject: str
    role: Role | Literal["insurer"]
    name: str = ""
    number: str | None = None
    team: str | None = None
    insurer_code: str | None = None
    token_id: str | None = None
    # surveyor tokens: rotating a surveyor's token voids those of earlier generations
    token_generation: int = 0

    @property
    def actor(self) -> str:
        if self.role == "insurer":
            return f"insurer:{self.insurer_code}"
        return f"{self.role}:{self.number or self.subject}"


def issue_token(
    secret: str,
    *,
    subject: str,
    role: Role,
    now: datetime,
    ttl: timedelta,
    name: str = "",
    number: str | None = None,
    team: str | None = None,
    generation: int = 0,
) -> tuple[str, str]:
    """Sign a token; returns (token, token id)."""
    jti = uuid.uuid4().hex
    claims = {
        "iss": _ISSUER,
        "sub": subject,
        "role": role,
        "name": name,
        "num": number,
        "team": team,
        "jti": jti,
        "gen": generation,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=_ALGORITHM), jti


def verify_token(secret: str, token: str, now: datetime | None = None) -> Principal:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            issuer=_ISSUER,
            options={"require": ["exp", "sub", "role"], "verify_exp": now is None},
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    if now is not None and claims["exp"] < now.timestamp():
        raise Unauthorized("invalid token: Signature has expired")
    return Principal(
        subject=claims["sub"],
        role=claims["role"],
        name=claims.get("name") or "",
        number=claims.get("num"),
        team=claims.get("team"),
        token_id=claims.get("jti"),
        token_generation=int(claims.get("gen") or 0),
    )


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    return value.strip()


def admin_matches(expected: str | None, presented: str) -> bool:
    return expected is not None and secrets.compare_digest(expected.encode(), presented.encode())


def principal_for_token(runtime: Any, token: str) -> Principal:
    """The admin token, else a signed staff or surveyor token that was not revoked (the
    runtime's `revoked_tokens`: what this service learned from intake)."""
    settings = runtime.settings
    admin = settings.admin_token.get_secret_value() if settings.admin_token else None
    if admin_matches(admin, token):
        return Principal(subject="admin", role="admin", name="administrator", number="admin")
    principal = verify_token(settings.secret(), token)
    refused = refusal(runtime, principal)
    if refused is not None:
        raise Unauthorized(refused)
    return principal


def refusal(runtime: Any, principal: Principal) -> str | None:
    """Why this verified token is no longer accepted here, or None."""
    if principal.role == "admin":
        return None
    if principal.token_id is not None and principal.token_id in runtime.revoked_tokens:
        return "token revoked"
    check = getattr(runtime, "token_check", None)
    return check(principal) if check is not None else None


REVALIDATE_S = 2.0  # how often a live stream asks `refusal` again


def revoked_sse(reason: str) -> dict[str, str]:
    """The last event of a live stream whose token is no longer accepted (`refusal`): the page
    can say why instead of reconnecting into a 401."""
    return {"event": "revoked", "data": json.dumps({"reason": reason})}


def principal_from_request(request: Request) -> Principal:
    """Verify the bearer token (`principal_for_token`)."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    principal = principal_for_token(request.app.state.runtime, bearer(request))
    request.state.principal = principal
    return principal


def require_roles(*roles: str) -> Callable[[Request], Principal]:
    """A dependency admitting these roles (the admin is always admitted)."""
    allowed = set(roles) | {"admin"}

    def dep(request: Request) -> Principal:
        principal = principal_from_request(request)
        if principal.role not in allowed:
            raise Forbidden(f"role {principal.role} may not do this; allowed: {sorted(allowed)}")
        return principal

    return dep


AnyStaff = Annotated[Principal, Depends(require_roles(*STAFF_ROLES))]
