"""Revocations: a service learns StaffTokensRevoked from the intake topic and refuses the tokens."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from claimdesk import revocations
from claimdesk.auth import issue_token, principal_for_token
from claimdesk.errors import Unauthorized
from claimdesk.events.intake import StaffTokensRevoked
from claimdesk.eventstore import ANY
from claimdesk.service import ServiceDefinition
from claimdesk.settings import Settings
from claimdesk.testing.plugin import eventually

from tests.support import publish_store, store_in_schema


async def test_a_service_without_an_intake_consumer_learns_revocations_with_its_own(
    settings: Settings, start_service
) -> None:  # type: ignore[no-untyped-def]
    bare = ServiceDefinition(name="probe", title="Probe", description="consumes nothing itself")
    now = datetime.now(UTC)
    token, jti = issue_token(
        settings.secret(),
        subject="stf_1",
        role="agent",
        now=now,
        ttl=timedelta(hours=1),
        number="A1",
    )
    async with start_service(bare) as svc, store_in_schema(settings, "intake") as (pool, store):
        assert [c.spec.name for c in svc.runtime.consumers] == ["revocations"]
        assert principal_for_token(svc.runtime, token).number == "A1"
        revoked = StaffTokensRevoked(
            staff_id="stf_1",
            number="A1",
            token_ids=[jti],
            reason="revoked",
            expires_at=now + timedelta(hours=1),
        )
        async with pool.acquire() as conn:
            await store.append(conn, "staff-stf_1", [revoked], ANY)
        await publish_store(settings, pool, store)
        await eventually(lambda: jti in svc.runtime.revoked_tokens, timeout=20)
        with pytest.raises(Unauthorized, match="revoked"):
            principal_for_token(svc.runtime, token)
        async with svc.runtime.pool.acquire() as conn:
            stored = await conn.fetchval(
                "SELECT expires_at FROM revoked_tokens WHERE token_id = $1", jti
            )
        assert stored == revoked.expires_at  # kept until then, and loaded by a process at start


async def test_the_hourly_reread_keeps_an_id_revoked_while_it_ran(settings: Settings) -> None:
    """The re-read that lets expired ids go replaces the ids a process holds; an id this
    process's consumer added meanwhile (its transaction not yet committed when the read
    began) stays refused instead of being accepted until the next refresh."""
    async with store_in_schema(settings, "revocations") as (pool, _):
        now = datetime.now(UTC)
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO revoked_tokens (token_id, expires_at, revoked_at) VALUES "
                "('expired', $1, $2), ('kept', $3, $2)",
                now - timedelta(minutes=1),
                now - timedelta(hours=2),
                now + timedelta(hours=1),
            )
        runtime = SimpleNamespace(revoked_tokens=frozenset({"expired", "kept"}))
        async with pool.acquire() as blocker, pool.acquire() as reader:
            lock = blocker.transaction()
            await lock.start()
            await blocker.execute("LOCK TABLE revoked_tokens IN ACCESS EXCLUSIVE MODE")
            reading = asyncio.create_task(revocations.load(runtime, reader))  # type: ignore[arg-type]
            await asyncio.sleep(0.3)
            assert not reading.done()  # the read waits on the lock
            runtime.revoked_tokens |= {"just-revoked"}  # as the consumer's `record` does
            await lock.rollback()
            await asyncio.wait_for(reading, 10)
        assert runtime.revoked_tokens == {"kept", "just-revoked"}  # the expired one is gone
