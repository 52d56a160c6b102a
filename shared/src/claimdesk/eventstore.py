"""The event store: append with optimistic concurrency, read a stream, read all in commit order.

Appending writes the events and their outbox rows in one statement, inside the caller's
transaction, so a handler's own table writes commit or roll back with its events.

Reading everything in commit order without skipping (the sequence-gap problem): identity
values are handed out at insert time, not at commit, so a reader that follows
`global_position` can pass a slow transaction's lower position before it commits and never
see it. Each row therefore stores its transaction id (`xid8`), and readers only return rows
whose transaction is older than the oldest transaction still running
(`pg_snapshot_xmin(pg_current_snapshot())`), ordered by (tx_id, global_position). Every
transaction below that horizon has finished, so nothing can appear behind the reader later.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from claimdesk.clock import Clock
from claimdesk.context import current_cause
from claimdesk.events.base import REGISTRY, Envelope, Event
from claimdesk.metrics import EVENTS_APPENDED
from claimdesk.telemetry import current_trace_context

ANY = -1
"""Expected version meaning 'append at the end, whatever it is' (still conflict-checked)."""


class ConcurrencyConflict(Exception):
    """The stream was not at the expected version: someone else appended first."""

    def __init__(self, stream_id: str, expected: int, actual: int | None = None) -> None:
        super().__init__(f"stream {stream_id}: expected version {expected}, found {actual}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class Position(NamedTuple):
    """A reader's place in commit order."""

    tx_id: int
    global_position: int


START = Position(0, 0)


@dataclass(frozen=True)
class StoredEvent:
    position: Position
    envelope: Envelope


_APPEND_SQL = """
WITH head AS (
    SELECT coalesce(max(sequence), 0) AS version FROM events WHERE stream_id = $1
), base AS (
    SELECT CASE WHEN $2::int < 0 THEN head.version ELSE $2::int END AS v, head.version AS actual
    FROM head
), ins AS (
    INSERT INTO events (stream_id, sequence, event_id, event_type, schema_version,
                        occurred_at, recorded_at, meta, payload)
    SELECT $1, base.v + t.ord, t.event_id, t.event_type, t.schema_version,
           t.occurred_at, $3, t.meta, t.payload
    FROM base, unnest($4::uuid[], $5::text[], $6::int[], $7::timestamptz[], $8::jsonb[],
                      $9::jsonb[]) WITH ORDINALITY AS t(event_id, event_type, schema_version,
                                                        occurred_at, meta, payload, ord)
    WHERE base.v = base.actual
    RETURNING global_position, sequence, event_id
), ob AS (
    INSERT INTO outbox (global_position, topic, key)
    SELECT ins.global_position, o.topic, o.key
    FROM ins JOIN unnest($4::uuid[], $10::text[], $11::text[]) AS o(event_id, topic, key)
      ON o.event_id = ins.event_id
)
SELECT (SELECT actual FROM base) AS actual, (SELECT min(sequence) FROM ins) AS first_sequence
"""


def read_columns(alias: str = "") -> str:
    """The event columns `decode_row` decodes, optionally qualified by a table alias."""
    p = f"{alias}." if alias else ""
    return (
        f"{p}tx_id::text::bigint AS tx, {p}global_position, {p}stream_id, {p}sequence, "
        f"{p}event_id, {p}event_type, {p}schema_version, {p}occurred_at, {p}recorded_at, "
        f"{p}meta, {p}payload"
    )


_READ_COLUMNS = read_columns()


def decode_row(row: asyncpg.Record) -> Envelope:
    meta = row["meta"]
    payload = REGISTRY.decode_payload(row["event_type"], row["schema_version"], row["payload"])
    return Envelope(
        event_id=row["event_id"],
        event_type=row["event_type"],
        schema_version=payload.schema_version,
        stream_id=row["stream_id"],
        sequence=row["sequence"],
        occurred_at=row["occurred_at"],
        recorded_at=row["recorded_at"],
        producer=meta["producer"],
        correlation_id=meta["correlation_id"],
        causation_id=meta.get("causation_id"),
        actor=meta.get("actor"),
        key=meta["key"],
        trace_context=meta.get("trace_context", {}),
        payload=payload,
    )


class EventStore:
    """One service's event store. Connections come from a pool bound to the service's schema."""

    def __init__(self, producer: str, clock: Clock, topic_for: Callable[[str], str]) -> None:
        self.producer = producer
        self.clock = clock
        self.topic_for = topic_for  # context name -> topic

    async def append(
        self,
        conn: asyncpg.Connection,
        stream_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        occurred_at: datetime | None = None,
    ) -> list[Envelope]:
        """Append `events` to `stream_id` if it is at `expected_version` (0: a new stream).

        Raises ConcurrencyConflict otherwise. Must run inside the caller's transaction when
        other writes belong with it; on its own it is atomic anyway (one statement).
        """
        if not events:
            return []
        now = self.clock.now()
        cause = current_cause()
        trace = current_trace_context()
        ids = [uuid.uuid4() for _ in events]
        occurred = occurred_at or now
        metas: list[dict[str, Any]] = []
        keys: list[str] = []
        for e in events:
            key = e.partition_key() or stream_id
            keys.append(key)
            metas.append(
                {
                    "producer": self.producer,
                    "correlation_id": str(cause.correlation_id),
                    "causation_id": str(cause.causation_id) if cause.causation_id else None,
                    "actor": cause.actor,
                    "key": key,
                    "trace_context": trace,
                }
            )
        try:
            row = await conn.fetchrow(
                _APPEND_SQL,
                stream_id,
                expected_version,
                now,
                ids,
                [e.event_type for e in events],
                [e.schema_version for e in events],
                [occurred] * len(events),
                metas,
                [e.model_dump(mode="json") for e in events],
                [self.topic_for(e.context) for e in events],
                keys,
            )
        except asyncpg.UniqueViolationError as exc:
            raise ConcurrencyConflict(stream_id, expected_version) from exc
        assert row is not None
        if row["first_sequence"] is None:
            raise ConcurrencyConflict(stream_id, expected_version, row["actual"])
        EVENTS_APPENDED.labels(self.producer).inc(len(events))
        first = row["first_sequence"]
        return [
            Envelope(
                event_id=ids[i],
                event_type=e.event_type,
                schema_version=e.schema_version,
                stream_id=stream_id,
                sequence=first + i,
                occurred_at=occurred,
                recorded_at=now,
                producer=self.producer,
                correlation_id=cause.correlation_id,
                causation_id=cause.causation_id,
                actor=cause.actor,
                key=keys[i],
                trace_context=trace,
                payload=e,
            )
            for i, e in enumerate(events)
        ]

    async def read_stream(
        self, conn: asyncpg.Connection, stream_id: str, after_sequence: int = 0
    ) -> list[Envelope]:
        rows = await conn.fetch(
            f"SELECT {_READ_COLUMNS} FROM events WHERE stream_id = $1 AND sequence > $2 "
            "ORDER BY sequence",
            stream_id,
            after_sequence,
        )
        return [decode_row(r) for r in rows]

    async def stream_version(self, conn: asyncpg.Connection, stream_id: str) -> int:
        v = await conn.fetchval(
            "SELECT coalesce(max(sequence), 0) FROM events WHERE stream_id = $1", stream_id
        )
        return int(v)

    async def read_all(
        self, conn: asyncpg.Connection, after: Position = START, limit: int = 1000
    ) -> list[StoredEvent]:
        """Events after `after`, in commit order, never skipping a late committer."""
        rows = await conn.fetch(
            f"""SELECT {_READ_COLUMNS} FROM events
                WHERE (tx_id, global_position) > ($1::text::xid8, $2::bigint)
                  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
                ORDER BY tx_id, global_position LIMIT $3""",
            str(after.tx_id),
            after.global_position,
            limit,
        )
        return [StoredEvent(Position(r["tx"], r["global_position"]), decode_row(r)) for r in rows]

    async def position_of(self, conn: asyncpg.Connection, global_position: int) -> Position:
        """The commit-order place just before the event at `global_position` (0: the start)."""
        if global_position <= 0:
            return START
        tx = await conn.fetchval(
            "SELECT tx_id::text::bigint FROM events WHERE global_position >= $1 "
            "ORDER BY global_position LIMIT 1",
            global_position,
        )
        return START if tx is None else Position(int(tx), global_position - 1)
