"""Consumers: Kafka consumer groups whose effects and 'already processed' marks commit together.

For each message the consumer opens a Postgres transaction, records (consumer, event_id) in
`processed_events` and runs the handler on the same connection. If the mark already exists
the event was handled before (a redelivery after a crash between the database commit and the
Kafka offset commit, or a duplicate publish) and is skipped. Offsets are committed to Kafka
only after the database commit, so nothing is lost either.

A handler that keeps failing is retried `max_attempts` times with backoff, then the message
goes to `dead_letters` with its error and the partition moves on. A message that cannot be
decoded goes there at once.

Messages whose `event_type` header names a type the consumer does not handle are skipped
before decoding, with no database work (a fetch of only such messages commits its offsets and
nothing else). So is a message without the header whose type this code does not know, when the
consumer takes only some types (a consumer of every type dead-letters it: it cannot fold it).

Batches: the consumer first tries a whole fetched batch in one transaction (fast path); if any
handler fails, the batch is rolled back and replayed one message per transaction.

A batch handler may dedupe itself (`batch_dedupes`): it stores every event it handles under
the event's id, with a unique key, in the same transaction, and returns the ids it had not
stored before. The batch then writes no marks: that store is the record of what was
processed (a redelivered event finds itself there, and a concurrent consumer handling the same
event waits on the key and finds it too). The one-by-one path (a fetch of one message, a batch
replayed) still marks, so a dead-lettered event stays skipped there, and then hands the event
to the batch handler too, whose answer says whether it was new: a redelivered event counts as
a duplicate on either path. Redelivered in a batch, a dead-lettered event is tried again (and
counts once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from opentelemetry import trace

from claimdesk.context import caused_by
from claimdesk.events.base import REGISTRY, Envelope, UnknownEvent
from claimdesk.metrics import CONSUMER_LAG, EVENTS_CONSUMED
from claimdesk.telemetry import extract_context, headers_to_carrier, tracer

log = logging.getLogger(__name__)

Handler = Callable[[asyncpg.Connection, Envelope], Awaitable[None]]
# A batch handler returns None, or with `batch_dedupes` the ids of the events it had not
# handled before.
BatchHandler = Callable[[asyncpg.Connection, list[Envelope]], Awaitable[Collection[UUID] | None]]
Decoder = Callable[[bytes], Envelope]

DECODE_SLICE = 25  # pipelined: messages decoded between two turns of the event loop (a few
# hundred microseconds: the running transaction's replies are read that much sooner)


@dataclass
class ConsumerSpec:
    """What a service consumes: a name (its position and dedupe namespace), topics, a handler."""

    name: str
    topics: Sequence[str]
    handler: Handler
    event_types: frozenset[str] | None = None  # None: every type; others are marked and skipped
    group_id: str | None = None
    # Optional: fold a whole fetched batch at once (fresh, wanted events only, in order) in the
    # batch transaction; the one-by-one fallback still calls `handler` (with batch_dedupes,
    # it calls batch_handler with one event).
    batch_handler: BatchHandler | None = None
    # Optional, with batch_handler: the batch handler dedupes itself (see the module doc) and
    # returns the ids of the events new to it; the batch path then writes no marks.
    batch_dedupes: bool = False
    # Optional: decode a message's bytes (default REGISTRY.decode).
    decoder: Decoder | None = None
    # Optional: decode the next fetch while the previous one's transaction runs, and commit a
    # fetch's offsets while the next one's transaction runs. Fetches still commit one at a
    # time, in order, each fetch's offsets only after its database commit.
    pipelined: bool = False
    # Optional: at most this many messages per fetch, so per transaction (default: the
    # settings' consumer_batch_size). Smaller batches commit, and so show their effects, sooner.
    max_records: int | None = None
    # Optional: its effects may trail by a fraction of a second, so it fetches with the
    # settings' kafka_background_fetch_max_wait_ms (fewer, fuller fetches) instead of the
    # short wait that latency-bound consumers (dispatch's assignment) need.
    background: bool = False
    # Optional: how long the broker may hold a fetch, and how many bytes it waits for, overriding
    # the above (a consumer of rare events among many others, such as token revocations, asks
    # seldom instead of on every message).
    fetch_max_wait_ms: int | None = None
    fetch_min_bytes: int | None = None


@dataclass(slots=True)
class _Decoded:
    record: ConsumerRecord[bytes, bytes]
    envelope: Envelope | None
    error: str | None = None


@dataclass
class ConsumerStats:
    handled: int = 0
    skipped_duplicates: int = 0
    dead_lettered: int = 0
    batches: int = 0
    assigned: set[TopicPartition] = field(default_factory=set)


class EventConsumer:
    def __init__(
        self,
        spec: ConsumerSpec,
        pool: asyncpg.Pool,
        consumer_factory: Callable[[str], AIOKafkaConsumer],
        *,
        service: str,
        max_attempts: int = 5,
        retry_backoff_s: float = 0.05,
        before_offset_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.spec = spec
        self.pool = pool
        self.consumer_factory = consumer_factory
        self.service = service
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.before_offset_commit = before_offset_commit  # test hook: crash between commits
        self.stats = ConsumerStats()
        self.running = False
        self.last_error: str | None = None
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def group_id(self) -> str:
        return self.spec.group_id or self.spec.name

    async def run(self) -> None:
        """Consume until cancelled; reconnect with backoff when the broker goes away."""
        backoff = 0.2
        while True:
            consumer = self.consumer_factory(self.group_id)
            self._consumer = consumer
            try:
                await consumer.start()
                consumer.subscribe(list(self.spec.topics))
                self.running = True
                backoff = 0.2
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = repr(exc)
                log.warning(
                    "consumer failed, restarting",
                    extra={"cd_consumer": self.spec.name, "cd_error": repr(exc)},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.running = False
                self._consumer = None
                try:
                    await asyncio.wait_for(consumer.stop(), timeout=5)
                except Exception as exc:
                    log.debug("consumer stop failed", extra={"cd_error": repr(exc)})

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        # Pipelined specs: the previous fetch's transaction, and the offset commits not yet
        # done (each waits for its fetch's transaction and for the commit before it).
        inflight: asyncio.Task[None] | None = None
        commits: deque[asyncio.Task[None]] = deque()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=self.spec.max_records)
                self.stats.assigned = set(consumer.assignment())
                while commits and commits[0].done():
                    await commits.popleft()  # raises its error, if any
                fetched = {tp: records for tp, records in batches.items() if records}
                if not fetched:
                    if inflight is not None and inflight.done():
                        await inflight  # raises its error, if any
                        inflight = None
                    continue
                # One transaction for the whole fetch: each partition's records stay in
                # order; order across partitions carries no meaning.
                records = [r for records in fetched.values() for r in records]
                if not self.spec.pipelined:
                    await self.process(records, None)
                    await self._commit_offsets(consumer, fetched)
                    continue
                decoded: list[_Decoded] = []
                for i in range(0, len(records), DECODE_SLICE):  # let the previous fetch go on
                    decoded += self._prepare(records[i : i + DECODE_SLICE])
                    await asyncio.sleep(0)
                if inflight is not None:
                    await inflight  # its database commit; its offsets may still be on the way
                if len(commits) >= 2:
                    await commits.popleft()
                inflight = asyncio.create_task(self.process(records, decoded))
                commits.append(
                    asyncio.create_task(
                        self._commit_after(
                            consumer, fetched, inflight, commits[-1] if commits else None
                        )
                    )
                )
        finally:
            # Let a transaction under way end (what it counted, it committed); offsets not
            # committed yet are not: those messages come again, as duplicates.
            if inflight is not None and not inflight.done():
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(inflight), timeout=10)
                inflight.cancel()
                with contextlib.suppress(BaseException):
                    await inflight
            for task in commits:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _commit_after(
        self,
        consumer: AIOKafkaConsumer,
        fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        processed: asyncio.Task[None],
        previous: asyncio.Task[None] | None,
    ) -> None:
        """A pipelined fetch's offsets: after its database commit and the previous fetch's
        offsets, while the next fetch's transaction runs."""
        await processed
        if previous is not None:
            await previous
        await self._commit_offsets(consumer, fetched)

    async def _commit_offsets(
        self,
        consumer: AIOKafkaConsumer,
        fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        if self.before_offset_commit is not None:
            await self.before_offset_commit()
        await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in fetched.items()})
        for tp, rs in fetched.items():
            self._update_lag(consumer, tp, rs[-1].offset)

    def _update_lag(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        end = consumer.highwater(tp)
        if end is not None:
            CONSUMER_LAG.labels(self.service, self.spec.name, tp.topic, str(tp.partition)).set(
                max(end - offset - 1, 0)
            )

    # -- processing -------------------------------------------------------------------------

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> _Decoded | None:
        """The message decoded, or why not; None for an event of a type unknown to this code
        when the consumer takes only some types (it would not handle it anyway)."""
        try:
            if record.value is None:
                raise ValueError("empty message")
            return _Decoded(record, (self.spec.decoder or REGISTRY.decode)(record.value))
        except UnknownEvent as exc:
            if (
                self.spec.event_types is not None
                and _event_type(record) not in self.spec.event_types
            ):
                return None
            return _Decoded(record, None, f"undecodable message: {exc!r}"[:2000])
        except Exception as exc:
            return _Decoded(record, None, f"undecodable message: {exc!r}"[:2000])

    def _unwanted(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        """A message whose `event_type` header names a type this consumer does not handle.

        Skipped before decoding and without a mark: it has no effect, so handling it again
        after a redelivery is the same no-op. A message without the header is decoded."""
        if self.spec.event_types is None:
            return False
        event_type = _header(record, "event_type")
        return event_type is not None and event_type not in self.spec.event_types

    def _prepare(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> list[_Decoded]:
        """Decode the messages of types this consumer handles (count the others ignored)."""
        wanted = [r for r in records if not self._unwanted(r)]
        if len(wanted) < len(records):
            EVENTS_CONSUMED.labels(self.service, self.spec.name, "ignored").inc(
                len(records) - len(wanted)
            )
        decode = self.spec.decoder or REGISTRY.decode
        out: list[_Decoded] = []
        unknown = 0
        for r in wanted:  # _decode, inlined: the path every message takes
            value = r.value
            try:
                env = None if value is None else decode(value)
            except Exception:
                env = None  # _decode says why
            if env is not None:
                out.append(_Decoded(r, env))
            elif (failed := self._decode(r)) is not None:
                out.append(failed)
            else:
                unknown += 1
        if unknown:
            EVENTS_CONSUMED.labels(self.service, self.spec.name, "ignored").inc(unknown)
        return out

    async def process(
        self,
        records: Sequence[ConsumerRecord[bytes, bytes]],
        decoded: list[_Decoded] | None = None,
    ) -> None:
        """Handle one fetched batch (`decoded`: its messages already prepared): all in one
        transaction, else one by one."""
        self.stats.batches += 1
        if decoded is None:
            decoded = self._prepare(records)
        if len(decoded) > 1 and all(d.envelope is not None for d in decoded):
            try:
                async with self.pool.acquire() as conn:
                    async with conn.transaction():
                        if self.spec.batch_handler is not None:
                            outcomes = await self._handle_batch(conn, decoded)
                        else:
                            outcomes = [await self._handle(conn, d) for d in decoded]
                    # Counted at once: nothing (not even a cancellation) comes in between.
                    for outcome, n in Counter(outcomes).items():
                        self._count(outcome, n)
                return
            except (asyncpg.InterfaceError, OSError, ConnectionError):
                raise
            except Exception as exc:
                log.info(
                    "batch failed, replaying one by one",
                    extra={"cd_consumer": self.spec.name, "cd_error": repr(exc)},
                )
        for d in decoded:
            await self._process_one(d)

    async def _process_one(self, d: _Decoded) -> None:
        if d.envelope is None:
            await self._dead_letter(d, d.error or "undecodable", 1)
            return
        error = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with self.pool.acquire() as conn:
                    async with conn.transaction():
                        outcome = await self._handle(conn, d)
                    self._count(outcome)
                return
            except (asyncpg.InterfaceError, OSError, ConnectionError):
                raise  # infrastructure, not the event: let run() reconnect and redeliver
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "handler failed",
                    extra={
                        "cd_consumer": self.spec.name,
                        "cd_event_id": str(d.envelope.event_id),
                        "cd_attempt": attempt,
                        "cd_error": error,
                    },
                )
                if attempt < self.max_attempts:
                    await asyncio.sleep(self.retry_backoff_s * 2 ** (attempt - 1))
        await self._dead_letter(d, error, self.max_attempts)

    def _count(self, outcome: str, n: int = 1) -> None:
        if outcome == "handled":
            self.stats.handled += n
        elif outcome == "duplicate":
            self.stats.skipped_duplicates += n
        EVENTS_CONSUMED.labels(self.service, self.spec.name, outcome).inc(n)

    async def _handle(self, conn: asyncpg.Connection, d: _Decoded) -> str:
        """Mark and handle one event on `conn`; the outcome counts once the transaction commits."""
        env = d.envelope
        assert env is not None
        fresh = await conn.fetchval(
            "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING RETURNING true",
            self.spec.name,
            env.event_id,
        )
        if not fresh:
            return "duplicate"
        if self.spec.event_types is not None and env.event_type not in self.spec.event_types:
            return "ignored"
        parent = extract_context(env.trace_context or headers_to_carrier(d.record.headers))
        with (
            tracer().start_as_current_span(
                f"consume {env.event_type}", context=parent, kind=trace.SpanKind.CONSUMER
            ) as span,
            caused_by(correlation_id=env.correlation_id, causation_id=env.event_id, actor=None),
        ):
            span.set_attribute("messaging.consumer.group.name", self.spec.name)
            span.set_attribute("messaging.message.id", str(env.event_id))
            if self.spec.batch_dedupes:
                # Its own store decides here too: an event it holds already (a fetch of one
                # redelivered message, a batch replayed one by one) counts as a duplicate.
                assert self.spec.batch_handler is not None
                new = await self.spec.batch_handler(conn, [env])
                return "handled" if new and env.event_id in new else "duplicate"
            await self.spec.handler(conn, env)
        return "handled"

    async def _handle_batch(self, conn: asyncpg.Connection, decoded: list[_Decoded]) -> list[str]:
        """Mark a batch in one statement and give the fresh, wanted events to `batch_handler`
        (with `batch_dedupes`: give it the wanted events, and it says which were fresh)."""
        envs = [d.envelope for d in decoded if d.envelope is not None]
        types = self.spec.event_types
        if self.spec.batch_dedupes:
            wanted = [e for e in envs if types is None or e.event_type in types]
            new = await self._run_batch_handler(conn, wanted) if wanted else ()
            if new is None:
                raise TypeError(f"{self.spec.name}: a deduping batch handler returned None")
            fresh = set(new)
            outcomes: list[str] = []
            for env in envs:
                if types is not None and env.event_type not in types:
                    outcomes.append("ignored")
                elif env.event_id in fresh:
                    fresh.discard(env.event_id)
                    outcomes.append("handled")
                else:
                    outcomes.append("duplicate")
            return outcomes
        rows = await conn.fetch(
            "INSERT INTO processed_events (consumer, event_id) "
            "SELECT $1, e FROM unnest($2::uuid[]) AS e ON CONFLICT DO NOTHING RETURNING event_id",
            self.spec.name,
            [e.event_id for e in envs],
        )
        fresh_ids = {r["event_id"] for r in rows}
        outcomes = []
        wanted = []
        for env in envs:
            if env.event_id not in fresh_ids:
                outcomes.append("duplicate")
                continue
            fresh_ids.discard(env.event_id)
            if types is not None and env.event_type not in types:
                outcomes.append("ignored")
                continue
            outcomes.append("handled")
            wanted.append(env)
        if wanted:
            await self._run_batch_handler(conn, wanted)
        return outcomes

    async def _run_batch_handler(
        self, conn: asyncpg.Connection, wanted: list[Envelope]
    ) -> Collection[UUID] | None:
        assert self.spec.batch_handler is not None
        with tracer().start_as_current_span(
            f"consume batch of {len(wanted)}", kind=trace.SpanKind.CONSUMER
        ) as span:
            span.set_attribute("messaging.consumer.group.name", self.spec.name)
            span.set_attribute("messaging.batch.message_count", len(wanted))
            # One span per traced event, in that event's trace, so the batch shows up in
            # every journey it folded (the batch span itself belongs to no single trace).
            batch_link = [trace.Link(span.get_span_context())]
            per_event = [
                tracer().start_span(
                    f"consume {env.event_type}",
                    context=extract_context(env.trace_context),
                    kind=trace.SpanKind.CONSUMER,
                    links=batch_link,
                    attributes={
                        "messaging.consumer.group.name": self.spec.name,
                        "messaging.message.id": str(env.event_id),
                    },
                )
                for env in wanted
                if env.trace_context
            ]
            try:
                return await self.spec.batch_handler(conn, wanted)
            finally:
                for event_span in per_event:
                    event_span.end()

    async def _dead_letter(self, d: _Decoded, error: str, attempts: int) -> None:
        r = d.record
        env = d.envelope
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO dead_letters (consumer, topic, partition, "offset", key, event_id,
                       event_type, value, error, attempts)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                   ON CONFLICT (consumer, topic, partition, "offset") DO NOTHING""",
                self.spec.name,
                r.topic,
                r.partition,
                r.offset,
                r.key.decode(errors="replace") if r.key else None,
                env.event_id if env else None,
                env.event_type if env else _header(r, "event_type"),
                r.value,
                error[:4000],
                attempts,
            )
            if env is not None:
                await conn.execute(
                    "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) "
                    "ON CONFLICT DO NOTHING",
                    self.spec.name,
                    env.event_id,
                )
        self.stats.dead_lettered += 1
        EVENTS_CONSUMED.labels(self.service, self.spec.name, "dead_letter").inc()
        log.error(
            "message dead-lettered",
            extra={
                "cd_consumer": self.spec.name,
                "cd_topic": r.topic,
                "cd_offset": r.offset,
                "cd_error": error,
            },
        )


def _event_type(record: ConsumerRecord[bytes, bytes]) -> str | None:
    """The `event_type` of a message's envelope, read from its JSON (the rare path)."""
    try:
        value = json.loads(record.value or b"").get("event_type")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name and value is not None:
            return bytes(value).decode(errors="replace")
    return None
