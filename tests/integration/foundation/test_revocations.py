"""Revocations: a service learns StaffTokensRevoked from the intake topic and refuses the tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
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
