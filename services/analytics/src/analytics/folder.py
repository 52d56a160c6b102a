"""The batch fold against Postgres: history insert (dedupe), load touched rows, fold, upsert.

One `Folder` writes into one set of tables: the live ones (suffix "") or a rebuild's shadow
copies (suffix "__rebuild"). Used by the live consumer and by the rebuild alike, so both fold
with exactly the same code.
"""

from __future__ import annotations

import io
import re
from datetime import datetime
from typing import Any

import asyncpg
from claimdesk.events.base import Envelope

from analytics.codec import RawPayload, case_id_of, is_known, payload_json
from analytics.projections import BatchFold, FoldConfig, Row, fold_batch, keys_by_table
from analytics.tables import (
    ALL_TABLES,
    BY_NAME,
    CASE_COUNTS,
    CASE_EVENTS,
    ESCALATIONS,
    SURVEYOR_STATS,
    Table,
)

NOTIFY_CHANNEL = "analytics_changed"


def _columns(table: Table, rows: list[Row]) -> list[list[Any]]:
    return [[r.get(c) for r in rows] for c in table.column_names]


class Folder:
    def __init__(
        self,
        cfg: FoldConfig,
        suffix: str = "",
        notify: str | None = None,
        *,
        copy_history: bool = False,
        fresh_keys: bool = False,
    ) -> None:
        """`copy_history` (a rebuild's bulk load): dedupe the history in memory and COPY it,
        on a connection whose json codec is the built-in one (see rebuild.prepare_connection)."""
        self.cfg = cfg
        self.suffix = suffix
        self.notify = notify
        self.copy_history = copy_history
        self._seen: set[Any] = set()
        # `fresh_keys` (a rebuild writer that alone writes its tables, from empty): the keys it
        # wrote so far; a key never written cannot be in the table, so it is not looked up.
        self._written: dict[str, set[str]] | None = {} if fresh_keys else None
        self._upsert = {t.name: t.upsert_sql(self.t(t)) for t in ALL_TABLES}
        # The live history: the keys already stored are looked up, the others copied in (text
        # COPY, built here: asyncpg's binary COPY has no encoder for the pool's json codec).
        self._stored_sql = (
            f"SELECT event_id FROM {self.t(CASE_EVENTS)} WHERE event_id = ANY($1::uuid[])"
        )
        self._escalation_sql = ESCALATIONS.insert_sql(self.t(ESCALATIONS))
        self._load = {
            t.name: (
                f"SELECT {', '.join(t.column_names)} FROM {self.t(t)} "
                f"WHERE {t.key[0]} = ANY($1::text[]) ORDER BY {t.key[0]} FOR UPDATE"
            )
            for t in ALL_TABLES
            if len(t.key) == 1 and t is not CASE_EVENTS and not t.counters
        }
        if copy_history:  # the only writer: no row locks needed
            self._load = {k: v.replace(" FOR UPDATE", "") for k, v in self._load.items()}

    def t(self, table: Table) -> str:
        return table.name + self.suffix

    async def insert_history(
        self, conn: asyncpg.Connection, events: list[Envelope]
    ) -> list[Envelope]:
        """Store every event in case_events; return those not stored before, in order."""
        seen: set[Any] = set()
        unique: list[Envelope] = []
        for env in events:
            if env.event_id not in seen:
                seen.add(env.event_id)
                unique.append(env)
        if not unique:
            return []
        if self.copy_history:
            fresh_envs = [e for e in unique if e.event_id not in self._seen]
            self._seen.update(e.event_id for e in fresh_envs)
            await conn.copy_records_to_table(
                self.t(CASE_EVENTS),
                records=[history_record(e) for e in fresh_envs],
                columns=CASE_EVENTS.column_names,
            )
            return fresh_envs
        # Only a rebuild's swap writes this table besides the live fold, under an EXCLUSIVE
        # lock, and the consumer's processed_events mark (same transaction) keeps two live
        # folds from taking the same event: what is not stored now is ours to store.
        stored = {r[0] for r in await conn.fetch(self._stored_sql, [e.event_id for e in unique])}
        fresh = [e for e in unique if e.event_id not in stored] if stored else unique
        if fresh:
            await conn.copy_to_table(
                self.t(CASE_EVENTS),
                source=io.BytesIO(copy_text(fresh).encode()),
                columns=CASE_EVENTS.column_names,
            )
        return fresh

    async def apply(self, conn: asyncpg.Connection, events: list[Envelope]) -> int:
        """Fold a batch inside the caller's transaction. Returns how many events were new."""
        fresh = await self.insert_history(conn, events)
        if not fresh:
            return 0
        known = [e for e in fresh if is_known(e)]
        loaded: dict[str, dict[str, Row | None]] = {}
        for name, keys in sorted(keys_by_table(known).items()):
            ordered = sorted(keys)
            wanted = ordered
            if self._written is not None:
                written = self._written.setdefault(name, set())
                wanted = [k for k in ordered if k in written]
                written.update(ordered)
            got: dict[str, Row | None] = {}
            if wanted:
                got = {r[0]: dict(r) for r in await conn.fetch(self._load[name], wanted)}
            loaded[name] = {k: got.get(k) for k in ordered}
        result = fold_batch(known, loaded, self.cfg)
        await self.write(conn, result)
        if self.notify:
            await conn.execute("SELECT pg_notify($1, $2)", self.notify, str(len(fresh)))
        return len(fresh)

    async def write(self, conn: asyncpg.Connection, result: BatchFold) -> None:
        for name, rows in sorted(result.rows.items()):
            table = BY_NAME[name]
            ordered = [rows[k] for k in sorted(rows)]
            await conn.execute(self._upsert[name], *_columns(table, ordered))
        if result.case_counts:
            items = sorted(result.case_counts.items())
            rows = [
                dict(zip(CASE_COUNTS.column_names, (*k, n), strict=True))
                for k, n in items
                if n != 0
            ]
            if rows:
                await conn.execute(self._upsert[CASE_COUNTS.name], *_columns(CASE_COUNTS, rows))
            if any(n < 0 for _, n in items):
                await conn.execute(f"DELETE FROM {self.t(CASE_COUNTS)} WHERE count = 0")
        if result.surveyor_stats:
            rows = []
            for (sid, day), stats in sorted(result.surveyor_stats.items()):
                row: Row = dict.fromkeys(SURVEYOR_STATS.counters, 0)
                row.update(stats)
                row["surveyor_id"], row["day"] = sid, day
                rows.append(row)
            await conn.execute(self._upsert[SURVEYOR_STATS.name], *_columns(SURVEYOR_STATS, rows))
        if result.escalations:
            rows = [result.escalations[k] for k in sorted(result.escalations)]
            await conn.execute(self._escalation_sql, *_columns(ESCALATIONS, rows))


def history_record(env: Envelope) -> tuple[Any, ...]:
    """The case_events row of an event, in CASE_EVENTS column order."""
    p = env.payload
    case_id: str | None
    context: str | None
    if type(p) is RawPayload:  # the fast path: every event the consumer decodes
        value = p.data.get("case_id")
        case_id = str(value) if value else None
        context, known, text = p.context, p.known, p.payload_json
    else:
        case_id = case_id_of(env)
        context, known, text = getattr(p, "context", None), is_known(env), payload_json(env)
    return (
        env.event_id,
        case_id,
        case_id or env.key or env.stream_id,
        env.event_type,
        env.schema_version,
        context or env.producer,
        env.producer,
        env.stream_id,
        env.sequence,
        env.occurred_at,
        env.recorded_at,
        env.actor,
        env.correlation_id,
        env.causation_id,
        env.key,
        known,
        text,
    )


_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_NULL = "\\N"


def _text(value: Any) -> str:
    """A text value in COPY's text format."""
    if value is None:
        return _NULL
    if not isinstance(value, str):
        value = str(value)
    if _NEEDS_ESCAPE.search(value) is None:
        return value
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group()], value)


def copy_text(events: list[Envelope]) -> str:
    """The case_events rows of `events` (history_record's values) in COPY's text format."""
    lines = []
    iso: dict[datetime, str] = {}  # the events of a batch share many timestamps
    for env in events:
        (event_id, case_id, subject, event_type, version, context, producer, stream_id,
         sequence, occurred_at, recorded_at, actor, correlation_id, causation_id, key, known,
         payload) = history_record(env)  # fmt: skip
        texts = (event_type, context, producer, stream_id, subject, key, payload)
        try:
            joined = "\t".join(texts)
            plain = not (
                joined.count("\t") != len(texts) - 1
                or "\\" in joined
                or "\n" in joined
                or "\r" in joined
            )
        except TypeError:  # a value that is not text (a null key, say)
            plain = False
        if not plain:
            joined = "\t".join(map(_text, texts))  # rare: escape each value
        event_type, context, producer, stream_id, subject, key, payload = joined.split("\t")
        occurred = iso.get(occurred_at) or iso.setdefault(occurred_at, occurred_at.isoformat())
        recorded = iso.get(recorded_at) or iso.setdefault(recorded_at, recorded_at.isoformat())
        lines.append(
            # case_id, when set, is the subject
            f"{event_id}\t{_NULL if case_id is None else subject}\t{subject}\t{event_type}\t"
            f"{version}\t{context}\t{producer}\t{stream_id}\t{sequence}\t{occurred}\t"
            f"{recorded}\t{_text(actor)}\t{correlation_id}\t"
            f"{_NULL if causation_id is None else causation_id}\t{key}\t"
            f"{'t' if known else 'f'}\t{payload}\n"
        )
    return "".join(lines)


def history_row(env: Envelope) -> Row:
    return dict(zip(CASE_EVENTS.column_names, history_record(env), strict=True))
