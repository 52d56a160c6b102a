"""Pool connections: no reset round trip on release, the full reset when session state was left."""

from __future__ import annotations

import os

import asyncpg
import pytest
from claimdesk.db import create_pool, needs_reset
from claimdesk.embedded import EMBEDDED_SETTINGS
from claimdesk.settings import Settings


async def test_release_skips_the_reset_unless_session_state_was_left(settings: Settings) -> None:
    assert settings.database_url
    pool = await create_pool(settings.database_url, settings.schema_name("pooltest"), max_size=1)
    key = f"pooltest:{settings.schema_prefix}"
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'left-behind'")
        async with pool.acquire() as conn:  # the same connection (max_size=1), not reset
            assert await conn.fetchval("SHOW application_name") == "left-behind"
            assert await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key)
            needs_reset(conn)
        async with pool.acquire() as conn:  # reset: the lock and the setting are gone
            assert await conn.fetchval("SHOW application_name") != "left-behind"
            held = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = "
                "pg_backend_pid()"
            )
            assert held == 0
        async with pool.acquire() as conn:  # and only once
            await conn.execute("SET application_name = 'again'")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW application_name") == "again"
    finally:
        await pool.close()


async def test_the_embedded_server_runs_with_its_own_settings(settings: Settings) -> None:
    """EMBEDDED_SETTINGS reach the running server (the test session's Postgres is the embedded
    one unless CLAIMDESK_TEST_DATABASE_URL points elsewhere)."""
    if os.environ.get("CLAIMDESK_TEST_DATABASE_URL"):
        pytest.skip("an external Postgres keeps its own settings")
    assert settings.database_url
    conn = await asyncpg.connect(settings.database_url)
    try:
        for name, value in EMBEDDED_SETTINGS.items():
            assert await conn.fetchval(f"SHOW {name}") == value, name
    finally:
        await conn.close()
