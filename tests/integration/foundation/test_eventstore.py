"""Event store contract against real Postgres: concurrency, commit-order reads, upcasting."""

from __future__ import annotations

import asyncio
import json
import random
import uuid

import pytest
from claimdesk.db import CORE_MIGRATIONS, create_pool, migrate
from claimdesk.events.intake import CaseReported
from claimdesk.eventstore import ANY, START, ConcurrencyConflict, PreparedAppend
from claimdesk.settings import Settings

from tests.support import case_reported, corrected, store_in_schema


async def test_append_and_read_stream(settings: Settings) -> None:
    async with store_in_schema(settings) as (pool, store), pool.acquire() as conn:
        envs = await store.append(
            conn, "case-1", [case_reported("case-1"), corrected("case-1", 1)], 0
        )
        assert [e.sequence for e in envs] == [1, 2]
        read = await store.read_stream(conn, "case-1")
        assert [e.event_id for e in read] == [e.event_id for e in envs]
        assert isinstance(read[0].payload, CaseReported)
        assert read[0].key == "case-1"
        assert await store.stream_version(conn, "case-1") == 2
        # one outbox row for the append, naming both events
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 1
        assert await conn.fetchval("SELECT sum(events) FROM outbox") == 2


@pytest.mark.parametrize("expected", [0, 1, 3, 5])
async def test_wrong_expected_version_is_a_typed_conflict(
    settings: Settings, expected: int
) -> None:
    async with store_in_schema(settings) as (pool, store), pool.acquire() as conn:
        await store.append(conn, "s", [corrected("s", i) for i in range(2)], 0)
        with pytest.raises(ConcurrencyConflict) as info:
            await store.append(conn, "s", [corrected("s", 9)], expected)
        assert info.value.stream_id == "s"
        assert await store.stream_version(conn, "s") == 2
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 1  # nothing half-written


async def test_append_is_atomic_with_the_callers_transaction(settings: Settings) -> None:
    async with store_in_schema(settings) as (pool, store), pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await store.append(conn, "s", [corrected("s", 1)], 0)
                raise RuntimeError("handler failed after appending")
        assert await store.stream_version(conn, "s") == 0
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0


@pytest.mark.parametrize("count", [1, 2])
async def test_append_with_the_callers_writes_in_one_statement(
    settings: Settings, count: int
) -> None:
    """The caller's CTEs and the append are one statement: its guard decides whether anything
    is written, its parameters are renumbered past the append's, its columns come back."""
    claim = """t AS (SELECT $1::text AS name),
        mine AS (INSERT INTO claimed (name) SELECT name FROM t WHERE $2::bool RETURNING name)"""
    async with store_in_schema(settings) as (pool, store), pool.acquire() as conn:
        await conn.execute("CREATE TABLE claimed (name text PRIMARY KEY)")
        events = [corrected("s", i) for i in range(count)]

        async def attempt(name: str, go: bool, expected: int) -> tuple[str | None, int]:
            row, envs = await store.append_with(
                conn, "s", events, expected, before=claim, args=[name, go], guard="mine",
                select="(SELECT name FROM mine) AS claimed",
            )  # fmt: skip
            return row["claimed"], len(envs)

        assert await attempt("held back", False, 0) == (None, 0)  # the guard is empty
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
        assert await store.stream_version(conn, "s") == 0
        assert await attempt("first", True, 0) == ("first", count)
        assert await store.stream_version(conn, "s") == count
        assert await conn.fetchval("SELECT sum(events) FROM outbox") == count
        assert [r["name"] for r in await conn.fetch("SELECT name FROM claimed")] == ["first"]
        # a stale expected version is a conflict, guard or not, and nothing is kept
        with pytest.raises(ConcurrencyConflict):
            await attempt("second", True, 0)
        assert await conn.fetchval("SELECT count(*) FROM claimed") == 1
        assert await attempt("third", True, ANY) == ("third", count)
        assert await store.stream_version(conn, "s") == 2 * count


async def test_concurrent_appends_to_one_stream_one_wins(settings: Settings) -> None:
    async with store_in_schema(settings) as (pool, store):
        async with pool.acquire() as conn:
            await store.append(conn, "s", [corrected("s", 0)], 0)

        async def attempt(i: int) -> bool:
            async with pool.acquire() as conn:
                try:
                    await store.append(conn, "s", [corrected("s", i)], 1)
                    return True
                except ConcurrencyConflict:
                    return False

        results = await asyncio.gather(*(attempt(i) for i in range(8)))
        assert results.count(True) == 1
        async with pool.acquire() as conn:
            assert await store.stream_version(conn, "s") == 2


async def test_a_lost_race_leaves_the_transaction_usable(settings: Settings) -> None:
    """A one-event append whose sequence a concurrent writer took meanwhile is refused without
    an error inside Postgres (`aborted` False): the loser's transaction goes on, and an
    append at the stream's end then lands after the winner's event."""
    async with store_in_schema(settings) as (pool, store), pool.acquire() as a, pool.acquire() as b:
        await store.append(a, "s", [corrected("s", 0)], 0)
        tx_a, tx_b = a.transaction(), b.transaction()
        await tx_a.start()
        await tx_b.start()
        await store.append(a, "s", [corrected("s", 1)], ANY)  # takes sequence 2
        await b.execute("CREATE TEMP TABLE mine AS SELECT 1 AS x")  # the loser's own write
        loser = asyncio.create_task(store.append(b, "s", [corrected("s", 2)], ANY))
        await asyncio.sleep(0.2)  # b waits for a's row
        assert not loser.done()
        await tx_a.commit()
        with pytest.raises(ConcurrencyConflict) as info:
            await loser
        assert info.value.aborted is False
        envs = await store.append(b, "s", [corrected("s", 2)], ANY)  # same transaction
        await tx_b.commit()
        assert envs[0].sequence == 3
        assert await b.fetchval("SELECT count(*) FROM mine") == 1  # b's write stood
        assert await store.stream_version(b, "s") == 3
        assert await b.fetchval("SELECT sum(events) FROM outbox") == 3


async def test_prepared_appends_run_together_all_or_none(settings: Settings) -> None:
    """Appends prepared one by one run in one round trip per statement text, with the
    caller's CTEs; one stale version fails them all, nothing half-written."""
    claim = "mine AS (INSERT INTO claimed (name) VALUES ($1) RETURNING name)"
    async with store_in_schema(settings) as (pool, store), pool.acquire() as conn:
        await conn.execute("CREATE TABLE claimed (name text PRIMARY KEY)")

        def prepared(stream: str, expected: int, n: int = 2) -> PreparedAppend:
            return store.prepare_with(
                stream, [corrected(stream, i) for i in range(n)], expected,
                before=claim, args=[stream], guard="mine",
            )  # fmt: skip

        batch = [prepared("a", 0), prepared("b", 0), prepared("c", 0, 1)]
        async with conn.transaction():
            await store.append_prepared(conn, batch)
        assert [e.sequence for e in batch[0].envelopes] == [1, 2]
        for stream, version in (("a", 2), ("b", 2), ("c", 1)):
            assert await store.stream_version(conn, stream) == version
        assert await conn.fetchval("SELECT count(*) FROM claimed") == 3
        assert await conn.fetchval("SELECT sum(events) FROM outbox") == 5
        with pytest.raises(ConcurrencyConflict):
            async with conn.transaction():
                await store.append_prepared(conn, [prepared("d", 0), prepared("a", 0)])
        assert await store.stream_version(conn, "d") == 0
        assert await conn.fetchval("SELECT count(*) FROM claimed") == 3
        with pytest.raises(ValueError, match="exact expected version"):
            prepared("e", ANY)


async def test_any_version_appends_at_the_end(settings: Settings) -> None:
    async with store_in_schema(settings) as (pool, store), pool.acquire() as conn:
        await store.append(conn, "s", [corrected("s", 0)], ANY)
        envs = await store.append(conn, "s", [corrected("s", 1)], ANY)
        assert envs[0].sequence == 2


async def test_reader_never_skips_a_slow_committer(settings: Settings) -> None:
    """8 writers hold their transactions open for random times after appending, so positions
    commit out of order; a concurrent reader must still see every event exactly once."""
    writers, per_writer = 8, 25
    async with store_in_schema(settings) as (pool, store):
        done = asyncio.Event()
        seen: list[uuid.UUID] = []

        async def writer(w: int) -> None:
            rng = random.Random(w)
            for i in range(per_writer):
                async with pool.acquire() as conn, conn.transaction():
                    await store.append(
                        conn, f"w{w}-{i}", [corrected(f"w{w}-{i}", i)] * rng.randint(1, 3), 0
                    )
                    await asyncio.sleep(rng.random() * 0.02)

        async def reader() -> None:
            pos = START
            async with pool.acquire() as conn:
                while True:
                    finished = done.is_set()
                    batch = await store.read_all(conn, pos, limit=50)
                    for item in batch:
                        seen.append(item.envelope.event_id)
                        pos = item.position
                    if finished and not batch:
                        return
                    await asyncio.sleep(0.001)

        reading = asyncio.create_task(reader())
        await asyncio.gather(*(writer(w) for w in range(writers)))
        done.set()
        await asyncio.wait_for(reading, 30)
        async with pool.acquire() as conn:
            stored = [r["event_id"] for r in await conn.fetch("SELECT event_id FROM events")]
        assert len(seen) == len(set(seen)), "an event was read twice"
        assert set(seen) == set(stored), f"reader skipped {len(set(stored) - set(seen))} events"


async def test_naive_position_reader_would_skip(settings: Settings) -> None:
    """Shows the gap the commit-order read solves: a higher position commits first."""
    async with store_in_schema(settings) as (pool, store):
        slow = await pool.acquire()
        fast = await pool.acquire()
        try:
            tx = slow.transaction()
            await tx.start()
            await store.append(
                slow, "slow", [corrected("slow", 1)], 0
            )  # lower position, uncommitted
            await store.append(
                fast, "fast", [corrected("fast", 1)], 0
            )  # higher position, committed
            naive = await fast.fetch("SELECT global_position FROM events ORDER BY global_position")
            assert len(naive) == 1  # a position reader would move past the slow one now
            assert await store.read_all(fast, START) == []  # ours waits for the slow transaction
            await tx.commit()
            after = await store.read_all(fast, START)
            assert [e.envelope.stream_id for e in after] == ["slow", "fast"]
        finally:
            await pool.release(slow)
            await pool.release(fast)


async def test_stored_v1_event_is_read_as_v2(settings: Settings) -> None:
    async with store_in_schema(settings) as (pool, store), pool.acquire() as conn:
        v1 = case_reported("case-v1").model_dump(mode="json")
        v1["location"] = v1.pop("loss_address")
        del v1["loss_lat"], v1["loss_lon"]
        await conn.execute(
            """INSERT INTO events (stream_id, sequence, event_id, event_type, schema_version,
                                   occurred_at, recorded_at, producer, correlation_id, key, payload)
               VALUES ('case-v1', 1, $1, 'CaseReported', 1, now(), now(), 'intake', $2,
                       'case-v1', $3::jsonb::json)""",
            uuid.uuid4(),
            uuid.uuid4(),
            v1,
        )
        [env] = await store.read_stream(conn, "case-v1")
        assert env.schema_version == 2
        assert isinstance(env.payload, CaseReported)
        assert env.payload.loss_address == "上海市浦东新区世纪大道 100 号"
        assert env.payload.loss_lat is None
        # the same upcast applies to a published v1 message
        from claimdesk.events import REGISTRY

        wire = json.loads(env.model_dump_json())
        wire["schema_version"] = 1
        wire["payload"] = v1
        assert REGISTRY.decode(json.dumps(wire)).payload == env.payload


async def test_stored_v1_document_requests_are_read_as_one_item_lists(settings: Settings) -> None:
    from claimdesk.events.intake import DocumentRequested, RequestedDocument

    async with store_in_schema(settings) as (pool, store), pool.acquire() as conn:
        for seq, (code, name) in enumerate(
            [("claim_form", "索赔申请书"), ("id_card", "身份证")], 1
        ):
            await conn.execute(
                """INSERT INTO events (stream_id, sequence, event_id, event_type, schema_version,
                                       occurred_at, recorded_at, producer, correlation_id, key,
                                       payload)
                   VALUES ('case-d1', $1, $2, 'DocumentRequested', 1, now(), now(), 'intake', $3,
                           'case-d1', $4::jsonb::json)""",
                seq,
                uuid.uuid4(),
                uuid.uuid4(),
                {"case_id": "case-d1", "document_code": code, "document_name": name},
            )
        envs = await store.read_stream(conn, "case-d1")
    assert [e.schema_version for e in envs] == [2, 2]
    assert [e.payload for e in envs] == [
        DocumentRequested(case_id="case-d1", documents=[RequestedDocument(code=c, name=n)])
        for c, n in [("claim_form", "索赔申请书"), ("id_card", "身份证")]
    ]


async def test_migrations_upgrade_an_older_database_in_place(settings: Settings) -> None:
    assert settings.database_url
    schema = settings.schema_name("upgrade")
    pool = await create_pool(settings.database_url, schema)
    try:
        async with pool.acquire() as conn:
            assert await migrate(conn, schema, CORE_MIGRATIONS[:1]) == ["core/0001_event_store"]
            store_row = await conn.execute(
                """INSERT INTO events (stream_id, sequence, event_id, event_type, schema_version,
                       occurred_at, recorded_at, producer, correlation_id, key, payload)
                   VALUES ('x', 1, $1, 'CaseCancelled', 1, now(), now(), 'intake', $2, 'x', '{}')""",
                uuid.uuid4(),
                uuid.uuid4(),
            )
            assert store_row == "INSERT 0 1"
            assert await migrate(conn, schema, CORE_MIGRATIONS) == [
                "core/0002_consumers_and_timers",
                "core/0003_queue_table_vacuum",
                "core/0004_stream_conflict",
                "core/0005_revoked_tokens",
                "core/0006_timers_fired",
            ]
            assert await migrate(conn, schema, CORE_MIGRATIONS) == []
            assert await conn.fetchval("SELECT count(*) FROM events") == 1
            assert await conn.fetchval("SELECT to_regclass('timers') IS NOT NULL")
            options = await conn.fetchval(
                "SELECT reloptions FROM pg_class WHERE oid = to_regclass('outbox')"
            )
            assert "autovacuum_vacuum_threshold=1000" in options
    finally:
        await pool.close()
