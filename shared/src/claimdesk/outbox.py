"""The outbox relay: publishes committed outbox rows to Kafka in order, then deletes them.

- Only one relay per service publishes at a time (a Postgres advisory lock); other replicas
  wait as hot standbys, so per-key order holds with several replicas.
- Rows are read in outbox-id order among those committed, and deleted once published. Unlike a
  position-tracking reader (`EventStore.read_all`), the relay cannot skip a slow committer:
  whatever it has not seen stays in the table for the next pass. Causal order holds: an append
  that depends on another started after that one committed, so it has a higher id and is
  visible only when the earlier one is. The relay therefore does not wait for the oldest
  running transaction in the cluster, and one service's long transaction (an analytics fold
  batch, say) never delays another service's events.
- A batch is deleted only after the broker acknowledged every message in it (acks=all). If
  the broker is unreachable the relay backs off and retries the same rows: nothing is lost
  and nothing is reordered; a retry may publish a message twice, which consumers absorb by
  event id.
- `republish` replays the event store itself (not the outbox) from a position: the embedded
  broker keeps its log in memory, and Postgres is the source of truth.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from opentelemetry import trace

from claimdesk.db import needs_reset
from claimdesk.events.base import REGISTRY
from claimdesk.eventstore import START, EventStore, Position, read_columns, wire_message
from claimdesk.metrics import EVENTS_PUBLISHED, OUTBOX_BACKLOG
from claimdesk.telemetry import extract_context, spans_observed, tracer

log = logging.getLogger(__name__)

# The oldest committed appends, with their events in order.
# LATERAL: each outbox row reads its own events by position (an index range). A plain join
# let the planner pick a hash join over a sequential scan of the whole events table, on every
# poll with something to publish: the relay slowed down as the store grew.
_BATCH_SQL = f"""
SELECT o.id AS outbox_id, e.*
FROM (SELECT id, tx_id, first_position, last_position FROM outbox ORDER BY id LIMIT $1) o
CROSS JOIN LATERAL (
    SELECT {read_columns()} FROM events
    WHERE global_position BETWEEN o.first_position AND o.last_position AND tx_id = o.tx_id
    ORDER BY global_position
) e
ORDER BY o.id, e.global_position
"""


async def publish_rows(
    producer: AIOKafkaProducer, rows: list[asyncpg.Record], topic_of: Any, service: str
) -> None:
    """Send stored rows in order and wait for every acknowledgement; raise if any failed.

    A message whose event carries a trace context gets a PRODUCER span in that trace (when
    spans are received at all: the context reaches the consumers in the headers either way)."""
    traced = spans_observed()
    if not traced:
        await _publish_in_batches(producer, rows, topic_of)
        EVENTS_PUBLISHED.labels(service).inc(len(rows))
        return
    futures = []
    for row in rows:
        key, value, headers = wire_message(row)
        topic = topic_of(row)
        trace_context = row["trace_context"]
        if trace_context and traced:
            with tracer().start_as_current_span(
                f"publish {row['event_type']}",
                context=extract_context(trace_context),
                kind=trace.SpanKind.PRODUCER,
            ) as span:
                span.set_attribute("messaging.destination.name", topic)
                span.set_attribute("messaging.message.id", str(row["event_id"]))
                futures.append(await producer.send(topic, value=value, key=key, headers=headers))
        else:
            futures.append(await producer.send(topic, value=value, key=key, headers=headers))
    await asyncio.gather(*futures)
    EVENTS_PUBLISHED.labels(service).inc(len(rows))


_PARTITIONER = DefaultPartitioner()


async def _publish_in_batches(
    producer: AIOKafkaProducer, rows: list[asyncpg.Record], topic_of: Any
) -> None:
    """`publish_rows` without spans: the messages go into one record batch per partition
    (chosen by key, as `send` chooses it: the default partitioner over the sorted partition
    list), a full batch sent before the next one for its partition is begun, so each key's
    messages keep their order. A fraction of the CPU of one `send` per message."""
    partitions: dict[str, list[int]] = {}
    open_batches: dict[tuple[str, int], Any] = {}
    futures = []
    for row in rows:
        key, value, headers = wire_message(row)
        topic = topic_of(row)
        ps = partitions.get(topic)
        if ps is None:
            ps = partitions[topic] = sorted(await producer.partitions_for(topic))
        tp = (topic, _PARTITIONER(key, ps, ps))
        batch = open_batches.get(tp)
        if (
            batch is None
            or batch.append(key=key, value=value, timestamp=None, headers=headers) is None
        ):
            if batch is not None:  # full: on its way before the next one for this partition
                futures.append(await producer.send_batch(batch, tp[0], partition=tp[1]))
            batch = open_batches[tp] = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None, headers=headers)  # the first fits
    for (topic, partition), batch in open_batches.items():
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*futures)


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        producer_factory: Callable[[], AIOKafkaProducer],
        *,
        topic_for: Callable[[str], str],
        service: str,
        lock_key: str,
        batch_size: int = 500,
        poll_s: float = 0.02,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.pool = pool
        self.producer_factory = producer_factory
        self.topic_for = topic_for  # context -> topic
        self.service = service
        self.lock_key = lock_key
        self.batch_size = batch_size
        self.poll_s = poll_s
        self.max_backoff_s = max_backoff_s
        self.is_leader = False
        self.last_error: str | None = None
        self.broker_ok = False
        self.published = 0

    async def run(self) -> None:
        """Run until cancelled: take the relay lock, then publish as rows commit."""
        while True:
            try:
                async with self.pool.acquire() as lock_conn:
                    needs_reset(lock_conn)  # a session lock: never hand it on with the conn
                    while not await lock_conn.fetchval(
                        "SELECT pg_try_advisory_lock(hashtext($1))", self.lock_key
                    ):
                        self.is_leader = False
                        await asyncio.sleep(1.0)
                    self.is_leader = True
                    try:
                        await self._lead()
                    finally:
                        self.is_leader = False
                        await lock_conn.execute(
                            "SELECT pg_advisory_unlock(hashtext($1))", self.lock_key
                        )
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.last_error = f"postgres: {exc}"
                log.warning("outbox relay lost Postgres, retrying", extra={"cd_error": str(exc)})
                await asyncio.sleep(1.0)

    async def _lead(self) -> None:
        backoff = 0.1
        producer: AIOKafkaProducer | None = None
        try:
            while True:
                try:
                    if producer is None:
                        producer = self.producer_factory()
                        await producer.start()
                        self.broker_ok = True
                    sent = await self.relay_once(producer)
                    backoff = 0.1
                    self.last_error = None
                    if sent < self.batch_size:
                        await asyncio.sleep(self.poll_s)
                except (asyncpg.PostgresError, asyncpg.InterfaceError):
                    raise  # Postgres trouble: the outer loop re-acquires the lock
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # broker trouble: back off, keep the rows, retry in order
                    self.broker_ok = False
                    self.last_error = f"broker: {exc!r}"
                    log.warning(
                        "outbox relay cannot publish, backing off",
                        extra={"cd_error": repr(exc), "cd_backoff_s": backoff},
                    )
                    if producer is not None:
                        await _stop_quietly(producer)
                        producer = None
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.max_backoff_s)
        finally:
            if producer is not None:
                await _stop_quietly(producer)

    def _topic_of(self, row: asyncpg.Record) -> str:
        return self.topic_for(REGISTRY.get(row["event_type"]).context)

    async def relay_once(self, producer: AIOKafkaProducer) -> int:
        """Publish up to `batch_size` committed appends; returns how many appends."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_BATCH_SQL, self.batch_size)
            if not rows:
                OUTBOX_BACKLOG.labels(self.service).set(0)
                return 0
            await publish_rows(producer, rows, self._topic_of, self.service)
            done = sorted({r["outbox_id"] for r in rows})
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", done)
            self.broker_ok = True
            self.published += len(rows)
            # A short batch took all that was committed: what is left is what committed since
            # (the next poll's), so the sum over the outbox is only worth a query after a full one.
            full = len(done) >= self.batch_size
            OUTBOX_BACKLOG.labels(self.service).set(await self.backlog(conn) if full else 0)
            return len(done)

    async def backlog(self, conn: asyncpg.Connection | None = None) -> int:
        """Events committed but not yet published."""
        sql = "SELECT coalesce(sum(events), 0) FROM outbox"
        if conn is not None:
            return int(await conn.fetchval(sql))
        async with self.pool.acquire() as c:
            return int(await c.fetchval(sql))


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), timeout=5)
    except Exception as exc:
        log.debug("producer stop failed", extra={"cd_error": repr(exc)})


async def republish(
    pool: asyncpg.Pool,
    store: EventStore,
    producer: AIOKafkaProducer,
    *,
    service: str,
    from_position: int = 0,
    batch_size: int = 2000,
    progress: Callable[[int], Any] | None = None,
) -> int:
    """Publish every stored event from `from_position` (a global position) in commit order."""
    total = 0
    async with pool.acquire() as conn:
        pos: Position = await store.position_of(conn, from_position) if from_position else START

        def topic_of(row: asyncpg.Record) -> str:
            return store.topic_for(REGISTRY.get(row["event_type"]).context)

        while True:
            batch = await store.read_all_rows(conn, pos, batch_size)
            if not batch:
                return total
            await publish_rows(producer, batch, topic_of, service)
            pos = Position(batch[-1]["tx"], batch[-1]["global_position"])
            total += len(batch)
            if progress is not None:
                progress(len(batch))
