"""Identity held by intake: insurer API keys (hashes only), staff and their token ids.

API keys are opaque (`cdk_` + 32 random bytes, URL-safe), shown once and stored as SHA-256
hashes; the prefix lets the auth dependency tell them from staff JWTs. Staff tokens are the
shared signed tokens (`claimdesk.auth.issue_token`); intake keeps their ids so it can revoke
them and rejects revoked ids and deactivated staff. Each revocation is also an event
(`StaffTokensRevoked`, stream `staff-<staff_id>`) in the same transaction: every other service
learns it from the intake topic (`claimdesk.revocations`) and refuses those tokens too.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg
from claimdesk.auth import Principal, bearer, issue_token, principal_from_request
from claimdesk.context import set_actor
from claimdesk.errors import Conflict, Forbidden, NotFound, Unauthorized
from claimdesk.events.intake import StaffTokensRevoked
from claimdesk.eventstore import ANY, EventStore
from fastapi import Request

KEY_PREFIX = "cdk_"
KEY_CACHE_TTL_S = 2.0
"""A verified API key is trusted this long by the process that verified it. Rotation and
revocation clear that process's cache at once; other processes follow within this time."""


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(5)}"


async def create_insurer(
    conn: asyncpg.Connection, code: str, name: str, now: datetime
) -> dict[str, Any]:
    insurer_id = _id("ins")
    async with conn.transaction():
        inserted = await conn.fetchval(
            "INSERT INTO insurers (insurer_id, code, name, created_at) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (code) DO NOTHING RETURNING insurer_id",
            insurer_id,
            code,
            name,
            now,
        )
        if inserted is None:
            raise Conflict(f"insurer {code} already exists; rotate its key instead", code=code)
        key, key_id = await _add_key(conn, insurer_id, now)
    return {"insurer_id": insurer_id, "code": code, "name": name, "api_key": key, "key_id": key_id}


async def _add_key(conn: asyncpg.Connection, insurer_id: str, now: datetime) -> tuple[str, str]:
    key = new_api_key()
    key_id = _id("key")
    await conn.execute(
        "INSERT INTO api_keys (key_id, insurer_id, key_hash, key_prefix, created_at) "
        "VALUES ($1, $2, $3, $4, $5)",
        key_id,
        insurer_id,
        hash_key(key),
        key[:10],
        now,
    )
    return key, key_id


async def _insurer(conn: asyncpg.Connection, code: str) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM insurers WHERE code = $1", code)
    if row is None:
        raise NotFound(f"no insurer {code}")
    return row


async def rotate_insurer_key(conn: asyncpg.Connection, code: str, now: datetime) -> dict[str, Any]:
    """A new key; every older key of the insurer stops working at once."""
    async with conn.transaction():
        ins = await _insurer(conn, code)
        await conn.execute(
            "UPDATE api_keys SET revoked_at = $2 WHERE insurer_id = $1 AND revoked_at IS NULL",
            ins["insurer_id"],
            now,
        )
        key, key_id = await _add_key(conn, ins["insurer_id"], now)
    return {
        "insurer_id": ins["insurer_id"],
        "code": code,
        "name": ins["name"],
        "api_key": key,
        "key_id": key_id,
    }


async def revoke_insurer_keys(conn: asyncpg.Connection, code: str, now: datetime) -> int:
    ins = await _insurer(conn, code)
    result = await conn.execute(
        "UPDATE api_keys SET revoked_at = $2 WHERE insurer_id = $1 AND revoked_at IS NULL",
        ins["insurer_id"],
        now,
    )
    return int(result.split()[-1])


async def insurer_key_valid(conn: asyncpg.Connection, key: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", hash_key(key)
        )
    )


async def _issue(
    conn: asyncpg.Connection, staff: asyncpg.Record, secret: str, now: datetime, ttl_s: int
) -> dict[str, Any]:
    ttl = timedelta(seconds=ttl_s)
    token, token_id = issue_token(
        secret,
        subject=staff["staff_id"],
        role=staff["role"],
        now=now,
        ttl=ttl,
        name=staff["name"],
        number=staff["number"],
        team=staff["team"],
    )
    await conn.execute(
        "INSERT INTO staff_tokens (token_id, staff_id, issued_at, expires_at) "
        "VALUES ($1, $2, $3, $4)",
        token_id,
        staff["staff_id"],
        now,
        now + ttl,
    )
    return {
        "staff_id": staff["staff_id"],
        "number": staff["number"],
        "role": staff["role"],
        "token": token,
        "token_id": token_id,
        "expires_at": now + ttl,
    }


async def create_staff(
    conn: asyncpg.Connection,
    body: dict[str, Any],
    secret: str,
    now: datetime,
    ttl_s: int,
) -> dict[str, Any]:
    async with conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO staff (staff_id, number, name, role, team, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (number) DO NOTHING RETURNING *",
            _id("stf"),
            body["number"],
            body["name"],
            body["role"],
            body.get("team"),
            now,
        )
        if row is None:
            raise Conflict(
                f"staff number {body['number']} already exists; rotate the token instead",
                number=body["number"],
            )
        return await _issue(conn, row, secret, now, ttl_s)


async def _revoked(
    conn: asyncpg.Connection,
    store: EventStore,
    staff: asyncpg.Record,
    tokens: list[asyncpg.Record],
    reason: Literal["revoked", "rotated", "deactivated"],
) -> int:
    """Record tokens just revoked (rows with token_id, expires_at) as one event, in the
    caller's transaction; returns how many."""
    if tokens:
        event = StaffTokensRevoked(
            staff_id=staff["staff_id"],
            number=staff["number"],
            token_ids=[t["token_id"] for t in tokens],
            reason=reason,
            expires_at=max(t["expires_at"] for t in tokens),
        )
        await store.append(conn, f"staff-{staff['staff_id']}", [event], ANY)
    return len(tokens)


_REVOKE_ALL = (
    "UPDATE staff_tokens SET revoked_at = $2 WHERE staff_id = $1 AND revoked_at IS NULL "
    "RETURNING token_id, expires_at"
)


async def rotate_staff_token(  # noqa: PLR0917
    conn: asyncpg.Connection,
    store: EventStore,
    number: str,
    secret: str,
    now: datetime,
    ttl_s: int,
) -> dict[str, Any]:
    async with conn.transaction():
        staff = await conn.fetchrow("SELECT * FROM staff WHERE number = $1", number)
        if staff is None:
            raise NotFound(f"no staff member {number}")
        if staff["deactivated_at"] is not None:
            raise Conflict(f"staff member {number} is deactivated", state="deactivated")
        old = await conn.fetch(_REVOKE_ALL, staff["staff_id"], now)
        await _revoked(conn, store, staff, old, "rotated")
        return await _issue(conn, staff, secret, now, ttl_s)


async def deactivate_staff(
    conn: asyncpg.Connection, store: EventStore, number: str, now: datetime
) -> int:
    async with conn.transaction():
        staff = await conn.fetchrow(
            "UPDATE staff SET deactivated_at = coalesce(deactivated_at, $2) WHERE number = $1 "
            "RETURNING staff_id, number",
            number,
            now,
        )
        if staff is None:
            raise NotFound(f"no staff member {number}")
        tokens = await conn.fetch(_REVOKE_ALL, staff["staff_id"], now)
        return await _revoked(conn, store, staff, tokens, "deactivated")


async def revoke_token(
    conn: asyncpg.Connection, store: EventStore, token_id: str, now: datetime
) -> int:
    async with conn.transaction():
        row = await conn.fetchrow(
            "UPDATE staff_tokens t SET revoked_at = $2 FROM staff s "
            "WHERE t.token_id = $1 AND t.revoked_at IS NULL AND s.staff_id = t.staff_id "
            "RETURNING t.token_id, t.expires_at, s.staff_id, s.number",
            token_id,
            now,
        )
        if row is None:
            if not await conn.fetchval(
                "SELECT true FROM staff_tokens WHERE token_id = $1", token_id
            ):
                raise NotFound(f"no token {token_id}")
            return 0
        return await _revoked(conn, store, row, [row], "revoked")


_STAFF_CHECK = """
SELECT (SELECT revoked_at IS NOT NULL FROM staff_tokens WHERE token_id = $1) AS revoked,
       (SELECT deactivated_at IS NOT NULL FROM staff WHERE number = $2) AS deactivated
"""


async def authenticate(request: Request) -> Principal:
    """The caller: an insurer (API key), the admin, or staff (signed token, not revoked)."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    token = bearer(request)
    rt = request.app.state.runtime
    pool: asyncpg.Pool = rt.pool
    if token.startswith(KEY_PREFIX):
        digest = hash_key(token)
        cache: dict[str, tuple[float, Principal]] = rt.extras.setdefault("key_cache", {})
        hit = cache.get(digest)
        now = time.monotonic()
        if hit is not None and now - hit[0] < KEY_CACHE_TTL_S:
            principal = hit[1]
        else:
            row = await pool.fetchrow(
                "SELECT i.insurer_id, i.code, i.name FROM api_keys k JOIN insurers i USING "
                "(insurer_id) WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
                digest,
            )
            if row is None:
                raise Unauthorized("unknown or revoked API key")
            principal = Principal(
                subject=row["insurer_id"],
                role="insurer",
                name=row["name"],
                insurer_code=row["code"],
            )
            if len(cache) > 10_000:
                cache.clear()
            cache[digest] = (now, principal)
        request.state.principal = principal
    else:
        principal = principal_from_request(request)
        if principal.role != "admin":
            row = await pool.fetchrow(_STAFF_CHECK, principal.token_id or "", principal.number)
            if row is not None and row["revoked"]:
                raise Unauthorized("token revoked")
            if row is not None and row["deactivated"]:
                raise Unauthorized(f"staff member {principal.number} is deactivated")
    set_actor(principal.actor)
    return principal


def allow(*roles: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency admitting these roles; `admin` only when named."""
    allowed = set(roles)

    async def dep(request: Request) -> Principal:
        principal = await authenticate(request)
        if principal.role not in allowed:
            raise Forbidden(f"role {principal.role} may not do this; allowed: {sorted(allowed)}")
        return principal

    return dep


def forget_keys(extras: dict[str, Any]) -> None:
    """Drop cached key verifications (after a rotation or revocation)."""
    extras.pop("key_cache", None)
