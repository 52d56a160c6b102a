"""Helpers for the foundation tests: sample events, a throwaway schema, Kafka reads."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from claimdesk.clock import SystemClock
from claimdesk.db import CORE_MIGRATIONS, create_pool, migrate
from claimdesk.events.intake import CaseDetailsCorrected, CaseReported
from claimdesk.eventstore import EventStore
from claimdesk.settings import Settings


def case_reported(case_id: str | None = None, **kw: object) -> CaseReported:
    values: dict[str, object] = {
        "case_id": case_id or f"C-{uuid.uuid4().hex[:8]}",
        "insurer_code": "PICC",
        "channel": "insurer_api",
        "loss_type": "vehicle_own_damage",
        "loss_time": datetime(2026, 11, 20, 8, 30, tzinfo=UTC),
        "loss_address": "上海市浦东新区世纪大道 100 号",
        "plate": "沪A12345",
    }
    values.update(kw)
    return CaseReported(**values)  # type: ignore[arg-type]


def corrected(case_id: str, n: int) -> CaseDetailsCorrected:
    return CaseDetailsCorrected(
        case_id=case_id,
        changes={"description": f"v{n}"},
        previous={},
        corrected_by="A001",
        reason="test",
    )


@asynccontextmanager
async def store_in_schema(
    settings: Settings, service: str = "intake"
) -> AsyncIterator[tuple[asyncpg.Pool, EventStore]]:
    assert settings.database_url
    schema = settings.schema_name(service)
    pool = await create_pool(settings.database_url, schema, min_size=1, max_size=12)
    async with pool.acquire() as conn:
        await migrate(conn, schema, CORE_MIGRATIONS)
    try:
        yield pool, EventStore(producer=service, clock=SystemClock(), topic_for=settings.topic)
    finally:
        await pool.close()


async def read_topic(settings: Settings, topic: str, expect: int, timeout_s: float = 10.0) -> list:  # type: ignore[type-arg]
    """Read a topic from the beginning without a group (assign) until `expect` messages."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list = []  # type: ignore[type-arg]
        import asyncio

        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(out) < expect and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


async def publish_store(
    settings: Settings, pool: asyncpg.Pool, store: EventStore, service: str = "intake"
) -> int:
    """Publish every event of a store to its topic (a fresh producer); returns how many."""
    from claimdesk.kafka import make_producer
    from claimdesk.outbox import republish

    producer = make_producer(settings, "t-publish-store")
    await producer.start()
    try:
        return await republish(pool, store, producer, service=service)
    finally:
        await producer.stop()
