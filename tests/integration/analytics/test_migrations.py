"""Analytics' migrations on a database from an older release: the history keeps its rows."""

from __future__ import annotations

import uuid

from analytics.history import case_history
from analytics.tables import CASE_EVENTS, MIGRATIONS
from claimdesk.db import CORE_MIGRATIONS, create_pool, migrate
from claimdesk.settings import Settings


async def test_history_payload_becomes_text_in_place(settings: Settings) -> None:
    """Migration 4 (payload json -> text, case index narrowed and bytewise) keeps every stored
    event as it was, needs no rebuild, and the history reads the same afterwards."""
    assert settings.database_url
    schema = f"{settings.schema_prefix}mig_{uuid.uuid4().hex[:6]}"
    pool = await create_pool(settings.database_url, schema, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            old = [m for m in MIGRATIONS if m.version <= 3]
            await migrate(conn, schema, [*CORE_MIGRATIONS, *old])
            # The history as releases before migration 4 made it (migrations 1-3 build from
            # today's table specs).
            await conn.execute(
                """DROP INDEX case_events_case;
                   ALTER TABLE case_events
                       ALTER COLUMN payload TYPE json USING payload::json,
                       ALTER COLUMN case_id TYPE text COLLATE "default";
                   CREATE INDEX case_events_case ON case_events (case_id, occurred_at, recorded_at);
                """
            )
            assert (
                await conn.fetchval(
                    "SELECT data_type FROM information_schema.columns WHERE table_schema = $1 "
                    "AND table_name = 'case_events' AND column_name = 'payload'",
                    schema,
                )
                == "json"
            )
            payload = '{"case_id":"M1", "note":"追尾 {\\"x\\": 1}"}'  # spacing kept as stored
            event_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO case_events (event_id, case_id, subject, event_type, schema_version,"
                " context, producer, stream_id, sequence, occurred_at, recorded_at, actor,"
                " correlation_id, causation_id, key, known, payload) VALUES ($1, 'M1', 'M1',"
                " 'CaseReported', 1, 'intake', 'intake', 'case-M1', 1, now(), now(), 'a', $2,"
                " NULL, 'M1', true, $3::text::json)",
                event_id,
                uuid.uuid4(),
                payload,
            )
            applied = await migrate(conn, schema, [*CORE_MIGRATIONS, *MIGRATIONS])
            assert len(applied) == len(MIGRATIONS) - len(old)
            cols = {
                r["column_name"]: (r["data_type"], r["collation_name"])
                for r in await conn.fetch(
                    "SELECT column_name, data_type, collation_name FROM information_schema.columns"
                    " WHERE table_schema = $1 AND table_name = 'case_events'",
                    schema,
                )
            }
            assert cols["payload"] == ("text", None)
            assert cols["case_id"] == ("text", "C")
            indexes = {
                r["indexname"]: r["indexdef"]
                for r in await conn.fetch(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1"
                    " AND tablename = 'case_events'",
                    schema,
                )
            }
            assert indexes["case_events_case"].endswith("USING btree (case_id)")
            assert "case_events_recorded" in indexes
            # No rebuild asked for: the rows are the same rows.
            assert (
                await conn.fetchval(
                    "SELECT value FROM analytics_meta WHERE key = 'projection_version'"
                )
                is None
            )
            assert await conn.fetchval("SELECT payload FROM case_events") == payload
            await conn.execute("SET search_path TO " + schema)
            (item,) = await case_history(conn, "M1")
            assert item["event_id"] == str(event_id)
            assert item["payload"] == {"case_id": "M1", "note": '追尾 {"x": 1}'}
            # A fresh schema gets the same shape from the table specs.
            ddl = CASE_EVENTS.ddl("x")
            assert 'case_id text COLLATE "C"' in ddl and "payload text" in ddl
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await pool.close()
