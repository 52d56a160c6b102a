"""Outbox relay and consumer against the real broker and Postgres."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from uuid import UUID

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from claimdesk.consumer import ConsumerSpec, EventConsumer
from claimdesk.events.base import Envelope
from claimdesk.kafka import ensure_topics, make_consumer, make_producer
from claimdesk.outbox import OutboxRelay, _publish_in_batches, republish
from claimdesk.settings import Settings
from claimdesk.testing.plugin import eventually

from tests.integration.analytics.workload import unknown_envelope
from tests.support import (
    case_reported,
    corrected,
    publish_store,
    read_topic,
    store_in_schema,
)


def relay_for(pool: asyncpg.Pool, settings: Settings, factory=None) -> OutboxRelay:  # type: ignore[no-untyped-def]
    return OutboxRelay(
        pool,
        factory or (lambda: make_producer(settings, "t-relay")),
        topic_for=settings.topic,
        service="intake",
        lock_key=f"relay:{settings.schema_prefix}",
        poll_s=0.01,
        max_backoff_s=0.3,
    )


async def append_cases(pool: asyncpg.Pool, store, cases: int, steps: int) -> None:  # type: ignore[no-untyped-def]
    for c in range(cases):
        async with pool.acquire() as conn:
            await store.append(conn, f"case-{c}", [case_reported(f"case-{c}")], 0)
    for s in range(1, steps + 1):
        for c in range(cases):
            async with pool.acquire() as conn:
                await store.append(conn, f"case-{c}", [corrected(f"case-{c}", s)], s)


async def test_relay_publishes_in_order_keyed_by_case_with_headers(settings: Settings) -> None:
    await ensure_topics(settings)
    topic = settings.topic("intake")
    async with store_in_schema(settings) as (pool, store):
        await append_cases(pool, store, cases=6, steps=4)
        relay = relay_for(pool, settings)
        task = asyncio.create_task(relay.run())
        try:
            await eventually(lambda: relay.published == 30)
            assert await relay.backlog() == 0
        finally:
            task.cancel()
        records = await read_topic(settings, topic, 30)
    assert len(records) == 30
    per_key: dict[str, list[int]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for r in records:
        body = json.loads(r.value)
        key = r.key.decode()
        assert key == body["payload"]["case_id"]
        headers = dict(r.headers)
        assert headers["event_type"].decode() == body["event_type"]
        assert headers["event_id"].decode() == body["event_id"]
        per_key[key].append(body["sequence"])
        partitions[key].add(r.partition)
    for key, seqs in per_key.items():
        assert seqs == sorted(seqs) == list(range(1, 6)), key
        assert len(partitions[key]) == 1


async def test_relay_survives_an_unreachable_broker(settings: Settings) -> None:
    """Broker down: rows stay, the relay backs off; broker back: all published, in order."""
    await ensure_topics(settings)
    broker_up = asyncio.Event()

    def factory() -> AIOKafkaProducer:
        if broker_up.is_set():
            return make_producer(settings, "t-relay")
        return AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", request_timeout_ms=300)

    async with store_in_schema(settings) as (pool, store):
        relay = relay_for(pool, settings, factory)
        task = asyncio.create_task(relay.run())
        try:
            await append_cases(pool, store, cases=3, steps=2)
            await eventually(lambda: relay.last_error is not None, timeout=10)
            assert await relay.backlog() == 9  # nothing lost while the broker is away
            broker_up.set()
            await eventually(lambda: relay.published == 9, timeout=15)
        finally:
            task.cancel()
        records = await read_topic(settings, settings.topic("intake"), 9)
    per_key: dict[str, list[int]] = defaultdict(list)
    for r in records:
        per_key[r.key.decode()].append(json.loads(r.value)["sequence"])
    assert all(v == [1, 2, 3] for v in per_key.values()), per_key


async def test_republish_from_zero_refills_a_topic(settings: Settings) -> None:
    await ensure_topics(settings)
    async with store_in_schema(settings) as (pool, store):
        await append_cases(pool, store, cases=4, steps=1)
        producer = make_producer(settings, "t-republish")
        await producer.start()
        try:
            assert await republish(pool, store, producer, service="intake") == 8
        finally:
            await producer.stop()
        records = await read_topic(settings, settings.topic("intake"), 8)
    assert len(records) == 8


class Crash(BaseException):
    """Stands for the process dying between the database commit and the offset commit."""


def crashing_consumer(spec: ConsumerSpec, pool: asyncpg.Pool, settings: Settings) -> EventConsumer:
    """A consumer that dies between its database commit and its offset commit."""

    async def crash() -> None:
        raise Crash

    return EventConsumer(
        spec,
        pool,
        lambda g: make_consumer(settings, g),
        service="t",
        before_offset_commit=crash,
    )


async def test_redelivery_after_crash_counts_nothing_twice(settings: Settings) -> None:
    await ensure_topics(settings)
    async with store_in_schema(settings, "analytics") as (pool, store):
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE tally (case_id text PRIMARY KEY, n int NOT NULL)")

        async def count(conn: asyncpg.Connection, env: Envelope) -> None:
            await conn.execute(
                "INSERT INTO tally VALUES ($1, 1) ON CONFLICT (case_id) DO UPDATE SET n = tally.n + 1",
                env.key,
            )

        spec = ConsumerSpec(
            "tally", [settings.topic("intake")], count, group_id=f"{settings.topic_prefix}tally"
        )

        first = crashing_consumer(spec, pool, settings)
        producer_store = store
        async with pool.acquire() as conn:
            for c in range(5):
                await producer_store.append(conn, f"c{c}", [case_reported(f"c{c}")], 0)
        relay = relay_for(pool, settings)
        relay_task = asyncio.create_task(relay.run())
        with pytest.raises(Crash):
            await asyncio.wait_for(first.run(), 30)
        crashed_handled = first.stats.handled
        assert crashed_handled >= 1
        second = EventConsumer(spec, pool, lambda g: make_consumer(settings, g), service="t")
        task = asyncio.create_task(second.run())
        try:

            async def all_counted() -> bool:
                async with pool.acquire() as conn:
                    return bool(await conn.fetchval("SELECT count(*) = 5 FROM tally"))

            await eventually(all_counted, timeout=20)
            await eventually(lambda: second.stats.skipped_duplicates >= crashed_handled, timeout=10)
        finally:
            task.cancel()
            relay_task.cancel()
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT sum(n) FROM tally") == 5


async def test_failing_event_and_malformed_message_go_to_dead_letters(settings: Settings) -> None:
    await ensure_topics(settings)
    topic = settings.topic("intake")
    async with store_in_schema(settings, "analytics") as (pool, store):
        handled: list[str] = []

        async def handler(conn: asyncpg.Connection, env: Envelope) -> None:
            if env.key == "poison":
                raise ValueError("cannot fold this")
            handled.append(env.key)

        spec = ConsumerSpec("dlq", [topic], handler, group_id=f"{settings.topic_prefix}dlq")
        consumer = EventConsumer(
            spec,
            pool,
            lambda g: make_consumer(settings, g),
            service="t",
            max_attempts=3,
            retry_backoff_s=0.01,
        )
        producer = make_producer(settings, "t-raw")
        await producer.start()
        try:
            good_before = case_reported("ok-1")
            async with pool.acquire() as conn:
                await store.append(conn, "poison", [case_reported("poison")], 0)
                await store.append(conn, "ok-1", [good_before], 0)
            await (await producer.send(topic, b"{not json", key=b"ok-1"))
            async with pool.acquire() as conn:
                await store.append(conn, "ok-2", [case_reported("ok-2")], 0)
            async with pool.acquire() as conn:
                await republish(pool, store, producer, service="intake")
        finally:
            await producer.stop()
        task = asyncio.create_task(consumer.run())
        try:
            await eventually(lambda: {"ok-1", "ok-2"} <= set(handled), timeout=20)
            await eventually(lambda: consumer.stats.dead_lettered == 2, timeout=10)
        finally:
            task.cancel()
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT key, event_type, error, attempts FROM dead_letters ORDER BY id"
            )
        errors = {r["key"]: r for r in rows}
        assert errors["poison"]["attempts"] == 3 and "cannot fold this" in errors["poison"]["error"]
        assert "undecodable" in errors["ok-1"]["error"]


async def test_relay_is_not_held_back_by_another_long_transaction(settings: Settings) -> None:
    """A long transaction elsewhere in the cluster (another service's fold, say) must not delay
    publishing; the slow transaction's own rows follow when it commits."""
    await ensure_topics(settings)
    async with store_in_schema(settings) as (pool, store):
        relay = relay_for(pool, settings)
        task = asyncio.create_task(relay.run())
        slow = await pool.acquire()
        try:
            tx = slow.transaction()
            await tx.start()
            await store.append(slow, "slow-case", [case_reported("slow-case")], 0)
            async with pool.acquire() as conn:
                await store.append(conn, "fast-case", [case_reported("fast-case")], 0)
            await eventually(lambda: relay.published == 1, timeout=5)  # not waiting for `slow`
            await tx.commit()
            await eventually(lambda: relay.published == 2, timeout=5)
        finally:
            await pool.release(slow)
            task.cancel()
        records = await read_topic(settings, settings.topic("intake"), 2)
    assert {r.key.decode() for r in records} == {
        "fast-case",
        "slow-case",
    }  # other partitions: any order


async def test_unwanted_types_are_skipped_before_decoding(settings: Settings) -> None:
    """A consumer that handles some types skips the others by their header: no decoding, no
    mark, no dead letter; a message without the header is still decoded (and skipped too if
    its type is unknown here, dead-lettered if it cannot be read)."""
    await ensure_topics(settings)
    topic = settings.topic("intake")
    async with store_in_schema(settings, "analytics") as (pool, store):
        handled: list[str] = []

        async def handler(conn: asyncpg.Connection, env: Envelope) -> None:
            handled.append(env.event_type)

        spec = ConsumerSpec(
            "picky",
            [topic],
            handler,
            event_types=frozenset({"CaseReported"}),
            group_id=f"{settings.topic_prefix}picky",
        )
        consumer = EventConsumer(spec, pool, lambda g: make_consumer(settings, g), service="t")
        async with pool.acquire() as conn:
            for c in range(3):
                await store.append(
                    conn, f"p{c}", [case_reported(f"p{c}"), corrected(f"p{c}", 1)], 0
                )
        producer = make_producer(settings, "t-raw")
        await producer.start()
        try:
            await republish(pool, store, producer, service="intake")
            # an unwanted type by its header: never decoded, so its bad body does no harm
            await producer.send(
                topic, b"{not json", key=b"p0", headers=[("event_type", b"CaseDetailsCorrected")]
            )
            # no header: decoded, and so dead-lettered
            await (await producer.send(topic, b"{not json either", key=b"p1"))
            # no header, a type this code does not know: not one it takes either, so skipped
            await producer.send(topic, json.dumps(unknown_envelope("p0")).encode(), key=b"p0")
            # no header, a type it takes in a version newer than this code: dead-lettered
            future = {**unknown_envelope("p2"), "event_type": "CaseReported", "schema_version": 99}
            await (await producer.send(topic, json.dumps(future).encode(), key=b"p2"))
        finally:
            await producer.stop()
        task = asyncio.create_task(consumer.run())
        try:
            await eventually(lambda: consumer.stats.dead_lettered == 2, timeout=20)
            await eventually(lambda: len(handled) == 3, timeout=10)
        finally:
            task.cancel()
        async with pool.acquire() as conn:
            marks = await conn.fetchval("SELECT count(*) FROM processed_events")
            letters = await conn.fetch("SELECT key, error FROM dead_letters")
    assert handled == ["CaseReported"] * 3
    assert marks == 3  # the handled events only: skipped ones leave no mark
    assert sorted(r["key"] for r in letters) == ["p1", "p2"]
    assert "newer than this code" in next(r["error"] for r in letters if r["key"] == "p2")


async def test_self_deduping_batch_handler_writes_no_marks_and_counts_once(
    settings: Settings,
) -> None:
    """`batch_dedupes`: the batch handler's own unique key is the record of what was
    processed. A crash between the database commit and the offset commit redelivers the
    batch; the handler finds the events stored and says so, and nothing counts twice."""
    await ensure_topics(settings)
    async with store_in_schema(settings, "analytics") as (pool, store):
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE seen (event_id uuid PRIMARY KEY, case_id text)")
            await conn.execute("CREATE TABLE tally (case_id text PRIMARY KEY, n int NOT NULL)")

        async def one(conn: asyncpg.Connection, env: Envelope) -> None:
            await batch(conn, [env])

        async def batch(conn: asyncpg.Connection, envs: list[Envelope]) -> list[UUID]:
            rows = await conn.fetch(
                "INSERT INTO seen SELECT * FROM unnest($1::uuid[], $2::text[]) "
                "ON CONFLICT (event_id) DO NOTHING RETURNING event_id, case_id",
                [e.event_id for e in envs],
                [e.key for e in envs],
            )
            await conn.execute(
                "INSERT INTO tally SELECT c, 1 FROM unnest($1::text[]) AS c "
                "ON CONFLICT (case_id) DO UPDATE SET n = tally.n + 1",
                [r["case_id"] for r in rows],
            )
            return [r["event_id"] for r in rows]

        spec = ConsumerSpec(
            "self-deduping",
            [settings.topic("intake")],
            one,
            batch_handler=batch,
            batch_dedupes=True,
            pipelined=True,
            group_id=f"{settings.topic_prefix}self-deduping",
        )
        async with pool.acquire() as conn:
            for c in range(6):
                await store.append(conn, f"d{c}", [case_reported(f"d{c}")], 0)
        await publish_store(settings, pool, store)

        first = crashing_consumer(spec, pool, settings)
        with pytest.raises(Crash):
            await asyncio.wait_for(first.run(), 30)
        assert first.stats.handled >= 1  # committed in Postgres, not in Kafka
        second = EventConsumer(spec, pool, lambda g: make_consumer(settings, g), service="t")
        task = asyncio.create_task(second.run())
        try:

            async def all_counted() -> bool:
                async with pool.acquire() as conn:
                    return bool(await conn.fetchval("SELECT count(*) = 6 FROM tally"))

            await eventually(all_counted, timeout=20)
            await eventually(
                lambda: second.stats.skipped_duplicates >= first.stats.handled, timeout=10
            )
        finally:
            task.cancel()
        assert first.stats.handled + second.stats.handled == 6
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT sum(n) FROM tally") == 6
            assert await conn.fetchval("SELECT count(*) FROM seen") == 6
            # the batches left no marks: the handler's key was the record
            assert await conn.fetchval("SELECT count(*) FROM processed_events") == 0

        # A fetch of one redelivered message goes the one-by-one way: a duplicate there too.
        records = await read_topic(settings, settings.topic("intake"), expect=6)
        assert len(records) == 6
        handled = second.stats.handled
        for record in records:
            await second.process([record])
        assert second.stats.handled == handled
        assert second.stats.skipped_duplicates >= first.stats.handled + 6
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT sum(n) FROM tally") == 6


async def test_backlog_gauge_counts_what_a_full_batch_left_and_zero_once_drained(
    settings: Settings,
) -> None:
    from claimdesk.metrics import OUTBOX_BACKLOG

    await ensure_topics(settings)
    async with store_in_schema(settings) as (pool, store):
        await append_cases(pool, store, cases=5, steps=0)
        relay = relay_for(pool, settings)
        relay.batch_size = 2
        gauge = OUTBOX_BACKLOG.labels("intake")
        producer = make_producer(settings, "t-relay-gauge")
        await producer.start()
        try:
            assert await relay.relay_once(producer) == 2  # full: the rest is counted
            assert gauge._value.get() == 3
            assert await relay.relay_once(producer) == 2
            assert gauge._value.get() == 1
            assert await relay.relay_once(producer) == 1  # short: everything committed went
            assert gauge._value.get() == 0
            assert await relay.backlog() == 0
        finally:
            await producer.stop()


async def test_batched_publishing_keeps_each_keys_partition_and_order(settings: Settings) -> None:
    """Without spans the relay sends one record batch per partition: a key lands where
    `send` puts it, and its messages keep their order, also across full batches."""
    await ensure_topics(settings)
    topic, probe = settings.topic("intake"), settings.topic("complaints")
    long = "长" * 900  # ~2.7 KB a message: several full batches per partition
    async with store_in_schema(settings) as (pool, store):
        for c in range(12):
            async with pool.acquire() as conn:
                await store.append(
                    conn, f"case-{c}", [case_reported(f"case-{c}", description=long)], 0
                )
                await store.append(
                    conn, f"case-{c}", [corrected(f"case-{c}", s) for s in (1, 2)], 1
                )
        async with pool.acquire() as conn:
            rows = await store.read_all_rows(conn, limit=100)
        assert len(rows) == 36
        producer = make_producer(settings, "t-batched")
        await producer.start()
        try:
            await _publish_in_batches(producer, rows, lambda row: topic)
            for c in range(12):  # where `send` puts each key
                await producer.send_and_wait(probe, value=b"{}", key=f"case-{c}".encode())
        finally:
            await producer.stop()
    where_send = {r.key.decode(): r.partition for r in await read_topic(settings, probe, 12)}
    records = await read_topic(settings, topic, 36)
    assert len(records) == 36
    per_key: dict[str, list[int]] = defaultdict(list)
    for r in records:
        key = r.key.decode()
        assert r.partition == where_send[key], key
        per_key[key].append(json.loads(r.value)["sequence"])
    assert all(seqs == [1, 2, 3] for seqs in per_key.values()), per_key
    assert len(set(where_send.values())) > 1  # the keys did spread over partitions
