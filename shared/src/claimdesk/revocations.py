"""Staff tokens revoked at intake, refused by every other service.

Intake records each revocation as a `StaffTokensRevoked` event on its topic. Every other
service consumes those (consumer `revocations`, its own group) into its own `revoked_tokens`
table, and each of its processes holds the ids of the revoked tokens that have not expired
yet in memory (`Runtime.revoked_tokens`), which `claimdesk.auth` checks on every request: the
process that consumes an event adds its ids at once, and every process re-reads the table
every `REFRESH_S` (a service's replicas share the table but not the consumer group's
messages). A revocation therefore takes effect everywhere within seconds of intake's commit;
a token expires anyway at its `exp`, after which its row is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import asyncpg

from claimdesk.consumer import ConsumerSpec
from claimdesk.events.base import Envelope
from claimdesk.events.intake import StaffTokensRevoked

if TYPE_CHECKING:
    from claimdesk.service import Runtime

log = logging.getLogger(__name__)

REFRESH_S = 2.0
PRUNE_EVERY = 1800  # refreshes (about an hour) between deletions of expired rows
TYPES = frozenset({StaffTokensRevoked.event_type})


def consumer_spec(runtime: Runtime) -> ConsumerSpec:
    async def handle(conn: asyncpg.Connection, env: Envelope) -> None:
        event = env.payload
        assert isinstance(event, StaffTokensRevoked)
        await conn.execute(
            "INSERT INTO revoked_tokens (token_id, expires_at, revoked_at) "
            "SELECT unnest($1::text[]), $2, $3 ON CONFLICT (token_id) DO NOTHING",
            event.token_ids,
            event.expires_at,
            env.occurred_at,
        )
        # at once in this process (before the commit: refusing early is the safe side, and the
        # next refresh reads the table as committed)
        runtime.revoked_tokens = runtime.revoked_tokens | frozenset(event.token_ids)

    return ConsumerSpec(
        "revocations", [runtime.topic("intake")], handle, event_types=TYPES, background=True
    )


async def load(runtime: Runtime, conn: asyncpg.Connection) -> None:
    rows = await conn.fetch("SELECT token_id FROM revoked_tokens WHERE expires_at > now()")
    runtime.revoked_tokens = frozenset(r["token_id"] for r in rows)


async def keep_fresh(runtime: Runtime) -> None:
    """Re-read the revoked ids every REFRESH_S; drop expired rows now and then."""
    turns = 0
    while True:
        await asyncio.sleep(REFRESH_S)
        turns += 1
        try:
            async with runtime.pool.acquire() as conn:
                await load(runtime, conn)
                if turns % PRUNE_EVERY == 0:
                    await conn.execute("DELETE FROM revoked_tokens WHERE expires_at < now()")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("revoked tokens not refreshed", extra={"cd_error": repr(exc)})
