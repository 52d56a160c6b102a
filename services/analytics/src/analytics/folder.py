"""The batch fold against Postgres: history insert (dedupe), load touched rows, fold, upsert.

One `Folder` writes into one set of tables: the live ones (suffix "") or a rebuild's shadow
copies (suffix "__rebuild"). Used by the live consumer and by the rebuild alike, so both fold
with exactly the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from claimdesk.events.base import Envelope

from analytics.codec import RawPayload, case_id_of, copy_value, is_known, payload_json
from analytics.projections import (
    BatchFold,
    FoldConfig,
    Folding,
    Row,
    fold_batch,
    keys_by_table,
    route,
)
from analytics.tables import (
    ALL_TABLES,
    CASE_COUNTS,
    CASE_EVENTS,
    ESCALATIONS,
    SURVEYOR_STATS,
    Table,
)

NOTIFY_CHANNEL = "analytics_changed"
# The live tables' advisory lock (per schema): every live fold transaction holds it shared from
# its first statement; a rebuild's swap takes it alone before it touches a table. So the swap
# waits for the folds under way, and the folds that come during it wait for the swap: neither
# can hold a table the other needs while waiting for another (a fold locks entity rows first
# and the history second; the swap, the history first and the entity tables when it drops
# them: without the lock the two could deadlock, and Postgres would cancel the swap).
TABLES_LOCK_KEY = "hashtext(current_schema() || '.analytics-tables')"
FOLD_SLICE = 50  # events folded between two turns of the event loop (the history COPY goes on)


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
        """`copy_history` (a rebuild's bulk load): dedupe the history in memory and COPY it."""
        self.cfg = cfg
        self.suffix = suffix
        self.notify = notify
        self.copy_history = copy_history
        self._seen: set[Any] = set()
        # `fresh_keys` (a rebuild writer that alone writes its tables, from empty): the keys it
        # wrote so far; a key never written cannot be in the table, so it is not looked up.
        self._written: dict[str, set[str]] | None = {} if fresh_keys else None
        # Entity tables (one row per key, folded from loaded rows) and counter tables (deltas).
        entities = [
            t for t in ALL_TABLES if len(t.key) == 1 and t is not CASE_EVENTS and not t.counters
        ]
        self._upsert = {
            t.name: t.upsert_sql(self.t(t), from_json=True) for t in ALL_TABLES if t.counters
        }
        self._new_rows = {t.name: t.new_rows_sql(self.t(t)) for t in entities}
        self._update_rows = {t.name: t.update_rows_sql(self.t(t)) for t in entities}
        self._insert_history_sql = (
            CASE_EVENTS.insert_sql(self.t(CASE_EVENTS)).replace(
                "ON CONFLICT DO NOTHING", "ON CONFLICT (event_id) DO NOTHING"
            )
            + " RETURNING event_id"
        )
        self._escalation_sql = ESCALATIONS.insert_sql(self.t(ESCALATIONS), from_json=True)
        self._load = {
            t.name: (
                f"SELECT {', '.join(t.column_names)} FROM {self.t(t)} "
                f"WHERE {t.key[0]} = ANY($1::text[]) ORDER BY {t.key[0]} FOR UPDATE"
            )
            for t in entities
        }
        if copy_history:  # the only writer: no row locks needed
            self._load = {k: v.replace(" FOR UPDATE", "") for k, v in self._load.items()}

    def t(self, table: Table) -> str:
        return table.name + self.suffix

    async def insert_history(
        self, conn: asyncpg.Connection, events: list[Envelope]
    ) -> list[Envelope]:
        """Store every event in case_events; return those not stored before, in order."""
        unique = self._new(events)
        return await self._store_history(conn, unique) if unique else unique

    def _new(self, events: list[Envelope]) -> list[Envelope]:
        """Each event once; for a rebuild's bulk load only those it did not store yet."""
        seen: set[Any] = set()
        unique: list[Envelope] = []
        for env in events:
            if env.event_id not in seen:
                seen.add(env.event_id)
                unique.append(env)
        if self.copy_history:
            unique = [e for e in unique if e.event_id not in self._seen]
            self._seen.update(e.event_id for e in unique)
        return unique

    async def _store_history(
        self, conn: asyncpg.Connection, unique: list[Envelope]
    ) -> list[Envelope]:
        if self.copy_history:  # deduped in memory (`_new`): the only writer of its tables
            await conn.copy_records_to_table(
                self.t(CASE_EVENTS),
                records=[history_record(e) for e in unique],
                columns=CASE_EVENTS.column_names,
            )
            return unique
        # A plain COPY in a savepoint: the history's primary key refuses an event stored
        # before (a redelivery), and waits for a concurrent fold storing the same event (a
        # rebalance) to end. Then, and only then, insert the others one statement at a time,
        # skipping the stored ones: what this transaction stores is what it folds, and an
        # event is stored once, so it is folded once.
        data = copy_data(unique)
        try:
            async with conn.transaction():
                await conn.copy_to_table(  # a buffer (bytes would be taken for a path)
                    self.t(CASE_EVENTS), source=memoryview(data), columns=CASE_EVENTS.column_names
                )
        except asyncpg.UniqueViolationError:
            pass
        else:
            return unique
        records = [history_record(e) for e in unique]
        rows = await conn.fetch(
            self._insert_history_sql, *[list(c) for c in zip(*records, strict=True)]
        )
        fresh_ids = {r[0] for r in rows}
        return [e for e in unique if e.event_id in fresh_ids]

    async def apply(self, conn: asyncpg.Connection, events: list[Envelope]) -> list[Envelope]:
        """Fold a batch inside the caller's transaction. Returns the events new to the history
        (in order, each once): the ones folded.

        The touched rows are loaded (and locked) first; then Postgres stores the history
        while Python folds the batch, a slice at a time. Should the history say some events
        were stored before (a redelivery, or another fold under way in a rebalance), the
        rows are read again and the batch folded again without them."""
        unique = self._new(events)
        if not unique:
            return unique
        if not self.suffix:
            await share_tables(conn)
        known = [e for e in unique if is_known(e)]
        targets = [route(e) for e in known]
        loaded = await self._load_rows(conn, keys_by_table(known, targets))
        store = asyncio.ensure_future(self._store_history(conn, unique))
        try:
            statements = self._statements(await self._fold(known, targets, loaded))
        except BaseException:
            store.cancel()
            with contextlib.suppress(BaseException):
                await store
            raise
        fresh = await store
        if len(fresh) < len(unique):
            if not fresh:
                return fresh
            # Another fold stored some of them: long ago (a redelivery), or just now (in a
            # rebalance the old and the new owner may fold the same stretch at once; the
            # history's key waited for that fold to commit). Fold the rest onto the rows as
            # they stand now: a row read before that commit may lack what it wrote.
            ids = {e.event_id for e in fresh}
            known = [e for e in known if e.event_id in ids]
            loaded = await self._load_rows(conn, keys_by_table(known))
            statements = self._statements(fold_batch(known, loaded, self.cfg))
        for sql, args in statements:
            await conn.execute(sql, *args)
        if self.notify:
            await conn.execute("SELECT pg_notify($1, $2)", self.notify, str(len(fresh)))
        return fresh

    async def _load_rows(
        self, conn: asyncpg.Connection, keys_by_name: dict[str, set[str]]
    ) -> dict[str, dict[str, Row | None]]:
        """The rows of these keys (None: not there), locked in a fixed order."""
        loaded: dict[str, dict[str, Row | None]] = {}
        for name, keys in sorted(keys_by_name.items()):
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
        return loaded

    async def _fold(
        self,
        known: list[Envelope],
        targets: list[tuple[Table, str] | None],
        loaded: dict[str, dict[str, Row | None]],
    ) -> BatchFold:
        """fold_batch, a slice at a time, letting the event loop run between slices."""
        folding = Folding(loaded, self.cfg)
        for i in range(0, len(known), FOLD_SLICE):
            folding.add(known[i : i + FOLD_SLICE], targets[i : i + FOLD_SLICE])
            await asyncio.sleep(0)
        return folding.finish()

    async def write(self, conn: asyncpg.Connection, result: BatchFold) -> None:
        for sql, args in self._statements(result):
            await conn.execute(sql, *args)

    def _statements(self, result: BatchFold) -> list[tuple[str, list[str]]]:
        """The statements that write a fold's result: (sql, arguments), in a fixed order (rows
        by key, so concurrent writers lock them in the same order). Entity rows the fold
        loaded are updated; those it found absent are inserted (see `Table.new_rows_sql`).
        Counter tables take added deltas (upserts)."""
        out: list[tuple[str, list[str]]] = []
        for name, rows in sorted(result.rows.items()):
            before = result.before.get(name, {})
            keys = sorted(rows)
            loaded = [rows[k] for k in keys if before.get(k) is not None]
            absent = [rows[k] for k in keys if before.get(k) is None]
            if loaded:
                out.append((self._update_rows[name], [_json_rows(loaded)]))
            if absent:
                out.append((self._new_rows[name], [_json_rows(absent)]))
        if result.case_counts:
            items = sorted(result.case_counts.items())
            rows = [
                dict(zip(CASE_COUNTS.column_names, (*k, n), strict=True))
                for k, n in items
                if n != 0
            ]
            if rows:
                out.append((self._upsert[CASE_COUNTS.name], [_json_rows(rows)]))
            if any(n < 0 for _, n in items):
                out.append((f"DELETE FROM {self.t(CASE_COUNTS)} WHERE count = 0", []))
        if result.surveyor_stats:
            rows = []
            for (sid, day), stats in sorted(result.surveyor_stats.items()):
                row: Row = dict.fromkeys(SURVEYOR_STATS.counters, 0)
                row.update(stats)
                row["surveyor_id"], row["day"] = sid, day
                rows.append(row)
            out.append((self._upsert[SURVEYOR_STATS.name], [_json_rows(rows)]))
        if result.escalations:
            rows = [result.escalations[k] for k in sorted(result.escalations)]
            out.append((self._escalation_sql, [_json_rows(rows)]))
        return out


async def share_tables(conn: asyncpg.Connection) -> None:
    """A live fold's first statement (see TABLES_LOCK_KEY); held until its transaction ends."""
    await conn.execute(f"SELECT pg_advisory_xact_lock_shared({TABLES_LOCK_KEY})")


async def take_tables(conn: asyncpg.Connection) -> None:
    """A swap's first statement: waits for the live folds under way, holds off new ones."""
    await conn.execute(f"SELECT pg_advisory_xact_lock({TABLES_LOCK_KEY})")


def _json_rows(rows: list[Row]) -> str:
    """Rows as the JSON text the upserts read (json_populate_recordset): datetimes in ISO
    8601 with their offset, dates as YYYY-MM-DD, exactly as Postgres reads them back."""
    return orjson.dumps(rows).decode()


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


def copy_line(env: Envelope) -> bytes:
    """The case_events row of `env` (history_record's values) in COPY's text format: as the
    decoder formatted it from the message, else from the values."""
    p = env.payload
    if type(p) is RawPayload and p.copy_line is not None:
        return p.copy_line
    values = history_record(env)
    return (
        "\t".join(
            ("t" if v else "f")
            if isinstance(v, bool)
            else v.isoformat()
            if isinstance(v, datetime)
            else copy_value(v)
            for v in values
        )
        + "\n"
    ).encode()


def copy_data(events: list[Envelope]) -> bytes:
    """The case_events rows of `events` in COPY's text format."""
    return b"".join([copy_line(e) for e in events])


def copy_text(events: list[Envelope]) -> str:
    return copy_data(events).decode()


def history_row(env: Envelope) -> Row:
    return dict(zip(CASE_EVENTS.column_names, history_record(env), strict=True))
