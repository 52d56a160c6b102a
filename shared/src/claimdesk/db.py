"""Postgres: one pool per service, bound to the service's own schema, and versioned migrations."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson


@dataclass(frozen=True)
class Migration:
    """One schema change. `component` separates the shared core from a service's own tables."""

    component: str
    version: int
    name: str
    sql: str


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg has no stubs
    """A pool connection that skips asyncpg's reset query when it goes back to the pool.

    asyncpg resets every released connection (`SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL`): one more round trip, and four statements for Postgres, per
    checkout. Ours carry no session state between checkouts: work runs in transactions
    (`SET LOCAL`, transaction-level advisory locks) and LISTEN has connections of its own.
    Whoever leaves session state behind (a session advisory lock, a SET outside a transaction)
    calls `needs_reset(conn)`, and that connection gets the full reset when released. asyncpg
    still rolls back an open transaction and drops listener callbacks on every release."""

    _reset_due = False

    def reset_on_release(self) -> None:
        self._reset_due = True

    def get_reset_query(self) -> str:
        if self._reset_due:
            self._reset_due = False
            query: str = super().get_reset_query()
            return query
        return ""


def needs_reset(conn: asyncpg.Connection) -> None:
    """Give this pool connection (or the pool's proxy of it) asyncpg's full reset on release."""
    mark = getattr(conn, "reset_on_release", None)  # the proxy forwards to the connection
    if mark is not None:
        mark()


def dumps(value: Any) -> str:
    """JSON text for a json/jsonb parameter (orjson: several times faster than json.dumps
    on the write path of every service; dict keys that are not strings become strings, as
    json.dumps made them)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def loads(text: str) -> Any:
    """A json/jsonb column's value; the json module takes what orjson refuses (an integer
    beyond 64 bits, say)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ, encoder=dumps, decoder=loads, schema="pg_catalog", format="text"
        )


async def create_pool(
    url: str, schema: str, *, min_size: int = 1, max_size: int = 10
) -> asyncpg.Pool:
    """A pool whose connections resolve unqualified names in `schema` first."""
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        server_settings={"search_path": f'"{schema}",public', "application_name": schema[:60]},
        init=_init_connection,
        connection_class=PooledConnection,
    )
    assert pool is not None
    return pool


async def migrate(
    conn: asyncpg.Connection, schema: str, migrations: Sequence[Migration]
) -> list[str]:
    """Create `schema` and apply the migrations it has not seen, in order, under a lock.

    Two processes starting at once serialise on an advisory lock; a database from an older
    release gets only the newer migrations. Returns the names applied now.
    """
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations (
                component text NOT NULL, version int NOT NULL, name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))"""
        )
        rows = await conn.fetch(f'SELECT component, version FROM "{schema}".schema_migrations')
        seen = {(r["component"], r["version"]) for r in rows}
        await conn.execute(f'SET LOCAL search_path TO "{schema}", public')
        for m in sorted(migrations, key=lambda m: (m.component != "core", m.component, m.version)):
            if (m.component, m.version) in seen:
                continue
            await conn.execute(m.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)",
                m.component,
                m.version,
                m.name,
            )
            applied_now.append(f"{m.component}/{m.version:04d}_{m.name}")
    return applied_now


CORE_MIGRATIONS: list[Migration] = [
    Migration(
        "core",
        1,
        "event_store",
        """
        CREATE TABLE events (
            global_position bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
            stream_id text NOT NULL,
            sequence int NOT NULL CHECK (sequence > 0),
            event_id uuid NOT NULL UNIQUE,
            event_type text NOT NULL,
            schema_version int NOT NULL,
            occurred_at timestamptz NOT NULL,
            recorded_at timestamptz NOT NULL,
            producer text NOT NULL,
            correlation_id uuid NOT NULL,
            causation_id uuid,
            actor text,
            key text NOT NULL,
            trace_context jsonb,
            payload json NOT NULL,
            PRIMARY KEY (stream_id, sequence)
        );
        CREATE INDEX events_commit_order ON events (tx_id, global_position);
        -- One row per append (state change): the positions of its events in this transaction.
        CREATE TABLE outbox (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
            first_position bigint NOT NULL,
            last_position bigint NOT NULL,
            events int NOT NULL
        );
        CREATE INDEX outbox_commit_order ON outbox (tx_id, id);
        """,
    ),
    Migration(
        "core",
        2,
        "consumers_and_timers",
        """
        CREATE TABLE processed_events (
            consumer text NOT NULL,
            event_id uuid NOT NULL,
            processed_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (consumer, event_id)
        );
        CREATE TABLE dead_letters (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            consumer text NOT NULL,
            topic text NOT NULL,
            partition int NOT NULL,
            "offset" bigint NOT NULL,
            key text,
            event_id uuid,
            event_type text,
            value bytea,
            error text NOT NULL,
            attempts int NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (consumer, topic, partition, "offset")
        );
        CREATE TABLE timers (
            timer_id text PRIMARY KEY,
            kind text NOT NULL,
            due_at timestamptz NOT NULL,
            payload jsonb NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now(),
            fired_at timestamptz,
            attempts int NOT NULL DEFAULT 0,
            last_error text
        );
        CREATE INDEX timers_due ON timers (due_at) WHERE fired_at IS NULL;
        """,
    ),
    Migration(
        "core",
        3,
        "queue_table_vacuum",
        """
        -- The outbox is a queue: every row is deleted soon after it is written. With the default
        -- thresholds (a fifth of the table) autovacuum rarely came, and each relay poll walked
        -- thousands of dead index entries (14,000 after a two-minute load, never vacuumed).
        -- Vacuum it after every thousand dead rows instead; timers are updated once each.
        ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0,
                                autovacuum_vacuum_threshold = 1000);
        ALTER TABLE timers SET (autovacuum_vacuum_scale_factor = 0.05);
        """,
    ),
    Migration(
        "core",
        4,
        "stream_conflict",
        """
        -- Fails the statement that calls it: an append spliced into a caller's statement
        -- (EventStore.append_with) found its stream at another version, and the caller's own
        -- writes in that statement must not stand without the events.
        CREATE FUNCTION stream_conflict(stream text, actual int) RETURNS int
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'stream version conflict: % is at version %', stream, actual
                USING ERRCODE = 'serialization_failure';
        END $$;
        """,
    ),
    Migration(
        "core",
        5,
        "revoked_tokens",
        """
        -- Staff tokens revoked at intake, as this service learned them (claimdesk.revocations).
        CREATE TABLE revoked_tokens (
            token_id text PRIMARY KEY,
            expires_at timestamptz NOT NULL,
            revoked_at timestamptz NOT NULL
        );
        """,
    ),
    Migration(
        "core",
        6,
        "timers_fired",
        """
        -- The scheduler deletes timers fired long ago, the oldest first (timers.prune_fired).
        CREATE INDEX timers_fired ON timers (fired_at) WHERE fired_at IS NOT NULL;
        """,
    ),
]
