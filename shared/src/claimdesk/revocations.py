"""Staff tokens revoked at intake, refused by every other service.

Intake records each revocation as a `StaffTokensRevoked` event on its topic. Every other
service takes those from the intake topic into its own `revoked_tokens` table, and each of its
processes holds the ids of the revoked tokens that have not expired yet in memory
(`Runtime.revoked_tokens`), which `claimdesk.auth` checks on every request: the process that
consumes an event adds its ids at once, and every process re-reads the table every
`REFRESH_S` (a service's replicas share the table but not the consumer group's messages). A
revocation therefore takes effect everywhere within seconds of intake's commit; a token
expires anyway at its `exp`, after which its row is dropped.

The events ride along with a consumer the service already has on the intake topic
(`ride_along`: its types widened, its handlers wrapped), so they cost no second read of the
busiest topic (a consumer of its own added a sixth to the broker's CPU at 100 cases/s). A
service without one gets a consumer of its own (`consumer_spec`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import TYPE_CHECKING
from uuid import UUID

import asyncpg

from claimdesk.consumer import ConsumerSpec
from claimdesk.events.base import Envelope
from claimdesk.events.intake import StaffTokensRevoked

if TYPE_CHECKING:
    from claimdesk.service import Runtime

log = logging.getLogger(__name__)

REFRESH_S = 2.0
FETCH_WAIT_MS = 1000
PRUNE_EVERY = 1800  # refreshes (about an hour) between deletions of expired rows
TYPES = frozenset({StaffTokensRevoked.event_type})


async def record(runtime: Runtime, conn: asyncpg.Connection, env: Envelope) -> None:
    """Store a StaffTokensRevoked (idempotent) and refuse its tokens in this process at once
    (before the commit: refusing early is the safe side; the next refresh reads the table as
    committed). The payload may be its model or a consumer's raw form (`.data`)."""
    event = env.payload
    if not isinstance(event, StaffTokensRevoked):
        event = StaffTokensRevoked.model_validate(getattr(event, "data", event))
    await conn.execute(
        "INSERT INTO revoked_tokens (token_id, expires_at, revoked_at) "
        "SELECT unnest($1::text[]), $2, $3 ON CONFLICT (token_id) DO NOTHING",
        event.token_ids,
        event.expires_at,
        env.occurred_at,
    )
    runtime.revoked_tokens = runtime.revoked_tokens | frozenset(event.token_ids)


def consumer_spec(runtime: Runtime) -> ConsumerSpec:
    """A consumer of its own, for a service that reads nothing else from the intake topic."""

    async def handle(conn: asyncpg.Connection, env: Envelope) -> None:
        await record(runtime, conn, env)

    return ConsumerSpec(
        "revocations",
        [runtime.topic("intake")],
        handle,
        event_types=TYPES,
        fetch_max_wait_ms=FETCH_WAIT_MS,  # rare events: a fetch about once a second
        fetch_min_bytes=1 << 20,
    )


def ride_along(runtime: Runtime, spec: ConsumerSpec) -> None:
    """Have `spec` (a consumer of the intake topic) record revocations too, in the same
    transactions as its own work; it sees them only if it took every type anyway."""
    takes_all = spec.event_types is None
    if not takes_all:
        spec.event_types = frozenset(spec.event_types or ()) | TYPES
    handler, batch_handler = spec.handler, spec.batch_handler

    async def handle(conn: asyncpg.Connection, env: Envelope) -> None:
        if env.event_type in TYPES:
            await record(runtime, conn, env)
            if not takes_all:
                return
        await handler(conn, env)

    spec.handler = handle
    if batch_handler is None:
        return

    async def handle_batch(
        conn: asyncpg.Connection, envs: list[Envelope]
    ) -> Collection[UUID] | None:
        revoked = [e for e in envs if e.event_type in TYPES]
        for env in revoked:
            await record(runtime, conn, env)
        if revoked and not takes_all:
            envs = [e for e in envs if e.event_type not in TYPES]
        if envs:
            return await batch_handler(conn, envs)
        return [] if spec.batch_dedupes else None

    spec.batch_handler = handle_batch


async def load(runtime: Runtime, conn: asyncpg.Connection, *, replace: bool = True) -> None:
    """Read the revoked ids that have not expired. `replace=False` adds them to what the
    process holds instead: a read that began before this process's own consumer committed an
    id must not drop that id again (revocations only grow until they expire). Replacing (to
    let expired ids go) keeps the ids the consumer added while the read ran, for the same
    reason."""
    held = runtime.revoked_tokens
    rows = await conn.fetch("SELECT token_id FROM revoked_tokens WHERE expires_at > now()")
    loaded = frozenset(r["token_id"] for r in rows)
    if replace:
        runtime.revoked_tokens = loaded | (runtime.revoked_tokens - held)
    else:
        runtime.revoked_tokens = runtime.revoked_tokens | loaded


async def keep_fresh(runtime: Runtime) -> None:
    """Re-read the revoked ids every REFRESH_S (adding to those held); drop expired ones now
    and then."""
    turns = 0
    while True:
        await asyncio.sleep(REFRESH_S)
        turns += 1
        try:
            async with runtime.pool.acquire() as conn:
                if turns % PRUNE_EVERY == 0:  # about hourly: expired ids leave the table and memory
                    await conn.execute("DELETE FROM revoked_tokens WHERE expires_at < now()")
                    await load(runtime, conn)
                else:
                    await load(runtime, conn, replace=False)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("revoked tokens not refreshed", extra={"cd_error": repr(exc)})
