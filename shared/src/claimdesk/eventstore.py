"""The event store: append with optimistic concurrency, read a stream, read all in commit order.

Appending writes the events and one outbox row in one statement, inside the caller's
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

import contextlib
import functools
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg
import orjson

from claimdesk.clock import Clock
from claimdesk.context import current_cause
from claimdesk.events.base import REGISTRY, Envelope, Event, UnknownEvent
from claimdesk.metrics import EVENTS_APPENDED
from claimdesk.telemetry import current_trace_context

ANY = -1
"""Expected version meaning 'append at the end, whatever it is' (still conflict-checked)."""


def new_event_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit millisecond time, then random bits.

    Time-ordered ids keep the event-id index's inserts at its right edge instead of scattering
    them over the whole B-tree, which matters for bulk appends."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (ms & ((1 << 48) - 1)) << 80
        | 0x7 << 76
        | (rand >> 68) << 64
        | 0b10 << 62
        | rand & ((1 << 62) - 1)
    )
    return uuid.UUID(int=value)


class ConcurrencyConflict(Exception):
    """The stream was not at the expected version: someone else appended first.

    `aborted`: the failing statement raised inside Postgres, so an enclosing transaction is
    aborted (only a savepoint or a new transaction can go on). A one-event append that lost a
    race to a concurrent writer is refused without an error (`aborted` False): the caller's
    transaction stays usable, and an append at the stream's end (ANY) can simply run again."""

    def __init__(
        self, stream_id: str, expected: int, actual: int | None = None, *, aborted: bool = True
    ) -> None:
        super().__init__(f"stream {stream_id}: expected version {expected}, found {actual}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        self.aborted = aborted


class Position(NamedTuple):
    """A reader's place in commit order."""

    tx_id: int
    global_position: int


START = Position(0, 0)


@dataclass(frozen=True)
class StoredEvent:
    position: Position
    envelope: Envelope


def shift_params(sql: str, by: int) -> str:
    """Renumber a statement's `$n` placeholders to `$(n + by)`, so that SQL written with its own
    parameters from $1 can follow `by` parameters of another (no `$` may appear in literals)."""
    return re.sub(r"\$(\d+)", lambda m: f"${int(m[1]) + by}", sql) if by else sql


# Appending: $1 stream, $2 expected version, $3 recorded_at, $4-$9 the events (arrays, or
# plain values for one event), $10-$14 producer, correlation, causation, actor, trace.
_APPEND_PARAMS = 14

# Many events: one row each from arrays.
_APPEND_MANY = """head AS (
    SELECT coalesce(max(sequence), 0) AS version FROM events WHERE stream_id = $1
), base AS (
    SELECT CASE WHEN $2::int < 0 THEN head.version ELSE $2::int END AS v, head.version AS actual
    FROM head
), ins AS (
    INSERT INTO events (stream_id, sequence, event_id, event_type, schema_version,
                        occurred_at, recorded_at, producer, correlation_id, causation_id,
                        actor, key, trace_context, payload)
    SELECT $1, base.v + t.ord, t.event_id, t.event_type, t.schema_version,
           t.occurred_at, $3, $10, $11, $12, $13, t.key, $14, t.payload::json
    FROM base, unnest($4::uuid[], $5::text[], $6::int[], $7::timestamptz[], $8::text[],
                      $9::text[]) WITH ORDINALITY AS t(event_id, event_type, schema_version,
                                                       occurred_at, key, payload, ord)
    WHERE base.v = base.actual{guard}
    RETURNING global_position, sequence
), ob AS (
    INSERT INTO outbox (first_position, last_position, events)
    SELECT min(global_position), max(global_position), count(*) FROM ins HAVING count(*) > 0
)"""

# The common case, one event, as plain parameters: cheaper to plan and run than unnest.
_APPEND_ONE = """base AS (
    SELECT coalesce(max(sequence), 0) AS actual FROM events WHERE stream_id = $1
), ins AS (
    INSERT INTO events (stream_id, sequence, event_id, event_type, schema_version,
                        occurred_at, recorded_at, producer, correlation_id, causation_id,
                        actor, key, trace_context, payload)
    SELECT $1, base.actual + 1, $4, $5, $6, $7, $3, $10, $11, $12, $13, $8, $14, $9::text::json
    FROM base WHERE ($2::int < 0 OR base.actual = $2::int){guard}
    -- a concurrent writer took that sequence: nothing is written, and no error aborts the
    -- caller's transaction (the append reports the conflict; see ConcurrencyConflict.aborted)
    ON CONFLICT (stream_id, sequence) DO NOTHING
    RETURNING global_position, sequence
), ob AS (
    INSERT INTO outbox (first_position, last_position, events)
    SELECT global_position, global_position, 1 FROM ins
)"""


@functools.lru_cache(maxsize=64)
def _append_sql(
    one: bool, before: str = "", guard: str = "", select: str = "", strict: bool = False
) -> str:
    """The append statement, optionally after a caller's own CTEs (`before`, parameters
    numbered from $1 and shifted past the append's) and guarded by one of them (`guard`: the
    events are written only if that CTE returned a row), with extra output columns.

    Guarded, a version conflict fails the whole statement (`stream_conflict`, core migration
    4): the caller's writes in `before` happen whether or not the events are appended, and
    must not outlive a refused append. `strict`: any append not made (a stale version, a
    guard that returned nothing) fails the statement, so that its caller need not read the
    result (`EventStore.append_prepared`)."""
    ctes = (_APPEND_ONE if one else _APPEND_MANY).format(
        guard=f" AND EXISTS (SELECT FROM {guard})" if guard else ""
    )
    if before:
        ctes = f"{shift_params(before, _APPEND_PARAMS)},\n{ctes}"
    first = "(SELECT sequence FROM ins)" if one else "(SELECT min(sequence) FROM ins)"
    extra = f", {shift_params(select, _APPEND_PARAMS)}" if select else ""
    if guard or strict:
        when = "" if strict else f"EXISTS (SELECT FROM {guard}) AND "
        extra += (
            f", CASE WHEN {when}NOT EXISTS (SELECT FROM ins) "
            "THEN stream_conflict($1, (SELECT actual FROM base)) END AS conflict"
        )
    return (
        f"WITH {ctes}\nSELECT (SELECT actual FROM base) AS actual, {first} AS first_sequence{extra}"
    )


def read_columns(alias: str = "") -> str:
    """The event columns `decode_row` and `wire_message` read, optionally table-qualified.

    Envelope metadata are typed columns, and the payload is stored as `json` (text, kept as
    written) and read as text: pydantic parses it directly, the relay forwards it untouched."""
    p = f"{alias}." if alias else ""
    return (
        f"{p}tx_id::text::bigint AS tx, {p}global_position, {p}stream_id, {p}sequence, "
        f"{p}event_id, {p}event_type, {p}schema_version, {p}occurred_at, {p}recorded_at, "
        f"{p}producer, {p}correlation_id, {p}causation_id, {p}actor, {p}key, "
        f"{p}trace_context, {p}payload::text AS payload"
    )


_READ_COLUMNS = read_columns()
_ENVELOPE_FIELDS = frozenset(Envelope.model_fields)


def _trusted_envelope(values: dict[str, Any]) -> Envelope:
    """Build an Envelope from values our own database holds, skipping re-validation.

    Equivalent to `Envelope.model_construct` with every field given, at a fraction of the
    cost (it is on the hot path of every read and rebuild)."""
    env = Envelope.__new__(Envelope)
    object.__setattr__(env, "__dict__", values)
    object.__setattr__(env, "__pydantic_fields_set__", set(_ENVELOPE_FIELDS))
    object.__setattr__(env, "__pydantic_extra__", None)
    object.__setattr__(env, "__pydantic_private__", None)
    return env


def decode_payload_text(event_type: str, version: int, text: str) -> Event:
    """A stored payload (JSON text) as its typed event, upcast when its version is older."""
    cls = REGISTRY.get(event_type)
    if version == cls.schema_version:
        return cls.model_validate_json(text)
    return REGISTRY.decode_payload(event_type, version, json.loads(text))


def decode_row(
    row: asyncpg.Record, unknown: Callable[[asyncpg.Record], Event] | None = None
) -> Envelope:
    """A stored row as a typed envelope; the payload is validated by its model and upcast.

    `unknown`, when given, turns an event type this code does not know into a payload
    (analytics keeps such events in history); without it UnknownEvent is raised."""
    try:
        payload = decode_payload_text(row["event_type"], row["schema_version"], row["payload"])
    except UnknownEvent:
        if unknown is None:
            raise
        payload = unknown(row)
    return _trusted_envelope(
        {
            "event_id": row["event_id"],
            "event_type": row["event_type"],
            "schema_version": payload.schema_version,
            "stream_id": row["stream_id"],
            "sequence": row["sequence"],
            "occurred_at": row["occurred_at"],
            "recorded_at": row["recorded_at"],
            "producer": row["producer"],
            "correlation_id": row["correlation_id"],
            "causation_id": row["causation_id"],
            "actor": row["actor"],
            "key": row["key"],
            "trace_context": row["trace_context"] or {},
            "payload": payload,
        }
    )


def wire_message(row: asyncpg.Record) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) for Kafka, built from a stored row without decoding the payload.

    The value is the envelope JSON with the payload as stored (its own schema version):
    consumers upcast on read, as they do for any older message."""
    trace = row["trace_context"] or {}
    causation = row["causation_id"]
    head = {
        "event_id": str(row["event_id"]),
        "event_type": row["event_type"],
        "schema_version": row["schema_version"],
        "stream_id": row["stream_id"],
        "sequence": row["sequence"],
        "occurred_at": row["occurred_at"].isoformat(),
        "recorded_at": row["recorded_at"].isoformat(),
        "producer": row["producer"],
        "correlation_id": str(row["correlation_id"]),
        "causation_id": str(causation) if causation else None,
        "actor": row["actor"],
        "key": row["key"],
        "trace_context": trace,
    }
    value = orjson.dumps(head)[:-1] + b',"payload":' + row["payload"].encode() + b"}"
    headers = [
        ("event_type", row["event_type"].encode()),
        ("event_id", head["event_id"].encode()),
        ("schema_version", str(row["schema_version"]).encode()),
        ("producer", row["producer"].encode()),
        *((k, v.encode()) for k, v in trace.items()),
    ]
    return row["key"].encode(), value, headers


@contextlib.contextmanager
def _conflicts(stream_id: str, expected: int) -> Iterator[None]:
    """An append statement that failed on the stream's key or on `stream_conflict` raises
    ConcurrencyConflict (the enclosing transaction is aborted)."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise ConcurrencyConflict(stream_id, expected) from exc
    except asyncpg.SerializationError as exc:
        if "stream version conflict" not in str(exc):
            raise
        raise ConcurrencyConflict(stream_id, expected) from exc


_Statement = tuple[str, tuple[Any, ...], Callable[[int], list[Envelope]]]
"""An append statement, its parameters, and how to build its envelopes from the first sequence."""


@dataclass(frozen=True)
class PreparedAppend:
    """An append made ready in its caller's context (cause, trace) and run later, with others,
    by `EventStore.append_prepared`; `envelopes` are what it appends."""

    sql: str
    args: tuple[Any, ...]
    envelopes: list[Envelope]


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
        statement = self._statement(stream_id, events, expected_version, occurred_at=occurred_at)
        _, envelopes = await self._run(conn, stream_id, expected_version, statement)
        return envelopes

    async def append_with(
        self,
        conn: asyncpg.Connection,
        stream_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        before: str,
        args: Sequence[Any],
        guard: str,
        select: str = "",
        recorded_at: datetime | None = None,
    ) -> tuple[asyncpg.Record, list[Envelope]]:
        """Append in one statement with the caller's own writes, without a transaction block.

        `before` holds the caller's CTEs (`name AS (...)`, data-modifying ones included; their
        parameters numbered from $1, bound to `args`); `guard` names one of them: the events
        are written only if it returned a row, else nothing is appended and the envelope list
        is empty (the caller decides what that means, typically: take the slow path). `select`
        adds output columns to the returned row (e.g. `(SELECT id FROM mine) AS id`). A stale
        `expected_version` raises ConcurrencyConflict and fails the whole statement, the
        caller's writes with it. One round trip instead of BEGIN, the caller's statements, the
        append and COMMIT; all CTEs see one snapshot, so `before` must not read what it writes.
        `recorded_at` (default: the store's clock now) lets `args` carry the same instant.
        """
        assert events
        statement = self._statement(
            stream_id,
            events,
            expected_version,
            spliced=(before, guard, select),
            extra_args=args,
            recorded_at=recorded_at,
        )
        return await self._run(conn, stream_id, expected_version, statement, guarded=bool(guard))

    def prepare_with(
        self,
        stream_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        before: str,
        args: Sequence[Any],
        guard: str,
        recorded_at: datetime | None = None,
    ) -> PreparedAppend:
        """`append_with`'s statement, to run later with others in one round trip
        (`append_prepared`). The version must be exact (a new stream: 0), and the append must
        happen: a stale version or a guard that returned nothing fails the statement."""
        if expected_version < 0 or not events:
            raise ValueError("a prepared append needs events and an exact expected version")
        sql, params, build = self._statement(
            stream_id,
            events,
            expected_version,
            spliced=(before, guard, ""),
            extra_args=args,
            recorded_at=recorded_at,
            strict=True,
        )
        return PreparedAppend(sql, params, build(expected_version + 1))

    async def append_prepared(
        self, conn: asyncpg.Connection, batch: Sequence[PreparedAppend]
    ) -> None:
        """Run prepared appends, one round trip per statement text (asyncpg's executemany
        sends every execution before it waits), all or none: a conflict in any raises
        ConcurrencyConflict and aborts the caller's transaction."""
        groups: dict[str, list[tuple[Any, ...]]] = {}
        for p in batch:
            groups.setdefault(p.sql, []).append(p.args)
        with _conflicts("(batch)", 0):
            for sql, rows in groups.items():
                await conn.executemany(sql, rows)
        EVENTS_APPENDED.labels(self.producer).inc(sum(len(p.envelopes) for p in batch))

    async def _run(
        self,
        conn: asyncpg.Connection,
        stream_id: str,
        expected_version: int,
        statement: _Statement,
        *,
        guarded: bool = False,
    ) -> tuple[asyncpg.Record, list[Envelope]]:
        """Run one append statement (`_statement`) and return its row and envelopes."""
        sql, params, build = statement
        with _conflicts(stream_id, expected_version):
            row = await conn.fetchrow(sql, *params)
        assert row is not None
        first = row["first_sequence"]
        if first is None:
            if guarded:  # held back by the caller's guard (a conflict raised above)
                return row, []
            raise ConcurrencyConflict(stream_id, expected_version, row["actual"], aborted=False)
        envelopes = build(first)
        EVENTS_APPENDED.labels(self.producer).inc(len(envelopes))
        return row, envelopes

    def _statement(
        self,
        stream_id: str,
        events: Sequence[Event],
        expected_version: int,
        *,
        occurred_at: datetime | None = None,
        spliced: tuple[str, str, str] = ("", "", ""),
        extra_args: Sequence[Any] = (),
        recorded_at: datetime | None = None,
        strict: bool = False,
    ) -> _Statement:
        """The append statement, its parameters (cause and trace read now, from the caller's
        context), and how to build the envelopes once the first sequence is known."""
        now = recorded_at or self.clock.now()
        cause = current_cause()
        trace = current_trace_context()
        ids = [new_event_id() for _ in events]
        occurred = occurred_at or now
        keys = [e.partition_key() or stream_id for e in events]
        common = (
            self.producer,
            cause.correlation_id,
            cause.causation_id,
            cause.actor,
            trace or None,
        )
        one = len(events) == 1
        sql = _append_sql(one, *spliced, strict)
        if one:
            e = events[0]
            params: tuple[Any, ...] = (
                stream_id, expected_version, now, ids[0], e.event_type, e.schema_version,
                occurred, keys[0], e.model_dump_json(), *common, *extra_args,
            )  # fmt: skip
        else:
            params = (
                stream_id, expected_version, now, ids, [e.event_type for e in events],
                [e.schema_version for e in events], [occurred] * len(events), keys,
                [e.model_dump_json() for e in events], *common, *extra_args,
            )  # fmt: skip

        def build(first: int) -> list[Envelope]:
            return [  # built from values typed here: no re-validation
                _trusted_envelope(
                    {
                        "event_id": ids[i],
                        "event_type": e.event_type,
                        "schema_version": e.schema_version,
                        "stream_id": stream_id,
                        "sequence": first + i,
                        "occurred_at": occurred,
                        "recorded_at": now,
                        "producer": self.producer,
                        "correlation_id": cause.correlation_id,
                        "causation_id": cause.causation_id,
                        "actor": cause.actor,
                        "key": keys[i],
                        "trace_context": trace,
                        "payload": e,
                    }
                )
                for i, e in enumerate(events)
            ]

        return sql, params, build

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
        rows = await self.read_all_rows(conn, after, limit)
        return [StoredEvent(Position(r["tx"], r["global_position"]), decode_row(r)) for r in rows]

    async def read_all_rows(
        self, conn: asyncpg.Connection, after: Position = START, limit: int = 1000
    ) -> list[asyncpg.Record]:
        """Like `read_all`, undecoded (for republishing): rows with `tx` and `global_position`."""
        return list(
            await conn.fetch(
                f"""SELECT {_READ_COLUMNS} FROM events
                    WHERE (tx_id, global_position) > ($1::text::xid8, $2::bigint)
                      AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
                    ORDER BY tx_id, global_position LIMIT $3""",
                str(after.tx_id),
                after.global_position,
                limit,
            )
        )

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
