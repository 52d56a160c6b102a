"""Analytics' tables: one spec per table, from which the migration, the shadow copies used by a
rebuild and the bulk upserts are generated.

Entity tables (one row per case, job, complaint, ...) are folded by loading the touched rows,
applying the pure fold functions of `projections` and writing them back. Counter tables are
upserted by adding deltas. `case_events` is the full history and the fold's dedupe.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from claimdesk.db import Migration

PROJECTION_VERSION = 2
"""Bump when a fold function changes meaning: the service rebuilds every table at start."""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (column, postgres type [COLLATE ...])
    key: tuple[str, ...]
    counters: tuple[str, ...] = ()  # counter tables: these columns are added on upsert
    extra_sql: str = ""  # indexes ({t} is the table name)

    @property
    def column_names(self) -> list[str]:
        return list(self.names)

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        """The column names (computed once: the fold asks for them for every new row)."""
        return tuple(c for c, _ in self.columns)

    def ddl(self, name: str | None = None, *, indexes: bool = True, unlogged: bool = False) -> str:
        t = name or self.name
        cols = ",\n  ".join(f"{c} {typ}" for c, typ in self.columns)
        kind = "UNLOGGED TABLE" if unlogged else "TABLE"
        sql = f"CREATE {kind} {t} (\n  {cols},\n  PRIMARY KEY ({', '.join(self.key)})\n);\n"
        if indexes:
            sql += self.index_sql(t)
        return sql

    def index_sql(self, name: str | None = None) -> str:
        """Secondary indexes (a rebuild creates them after loading, which is faster)."""
        return self.extra_sql.format(t=name or self.name) if self.extra_sql else ""

    def _select(self) -> str:
        """`SELECT ... FROM unnest(...)` over one array parameter per column (jsonb as text)."""
        arrays = ", ".join(
            f"${i + 1}::{'text' if typ in ('json', 'jsonb') else typ.split()[0]}[]"
            for i, (_, typ) in enumerate(self.columns)
        )
        exprs = ", ".join(
            f"{c}::{typ}" if typ in ("json", "jsonb") else c for c, typ in self.columns
        )
        return f"SELECT {exprs} FROM unnest({arrays}) AS u({', '.join(self.column_names)})"

    def _select_json(self, name: str) -> str:
        """`SELECT ...` over one parameter: the rows as a JSON array of objects (text), keyed
        by column name. One text value costs the client far less to send than an array per
        column, and Postgres reads it in one pass."""
        return (
            f"SELECT {', '.join(self.column_names)} "
            f"FROM json_populate_recordset(NULL::{name}, $1::text::json)"
        )

    def insert_sql(self, name: str | None = None, *, from_json: bool = False) -> str:
        """Insert from column arrays (or a JSON array of rows), skipping rows whose key exists."""
        t = name or self.name
        select = self._select_json(t) if from_json else self._select()
        return f"INSERT INTO {t} ({', '.join(self.column_names)}) {select} ON CONFLICT DO NOTHING"

    def new_rows_sql(self, name: str | None = None) -> str:
        """Insert rows (a JSON array) whose keys the fold found absent, with no ON CONFLICT: a
        row another transaction inserted meanwhile is a unique violation (the consumer then
        folds the batch again, one event at a time, onto that row), never silently replaced.
        Also cheaper: no speculative insertion."""
        t = name or self.name
        return f"INSERT INTO {t} ({', '.join(self.column_names)}) {self._select_json(t)}"

    def update_rows_sql(self, name: str | None = None) -> str:
        """Rewrite rows the fold loaded (and locked): every column but the key, from a JSON
        array of the rows."""
        t = name or self.name
        sets = ", ".join(f"{c} = r.{c}" for c in self.column_names if c not in self.key)
        match = " AND ".join(f"{t}.{k} = r.{k}" for k in self.key)
        return (
            f"UPDATE {t} SET {sets} "
            f"FROM json_populate_recordset(NULL::{t}, $1::text::json) AS r WHERE {match}"
        )

    def upsert_sql(self, name: str | None = None, *, from_json: bool = False) -> str:
        t = name or self.name
        cols = self.column_names
        if self.counters:
            sets = ", ".join(f"{c} = {t}.{c} + excluded.{c}" for c in self.counters)
        else:
            sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in self.key)
        conflict = f"DO UPDATE SET {sets}" if sets else "DO NOTHING"
        select = self._select_json(t) if from_json else self._select()
        return (
            f"INSERT INTO {t} ({', '.join(cols)}) {select} "
            f"ON CONFLICT ({', '.join(self.key)}) {conflict}"
        )


CASE_EVENTS = Table(
    "case_events",
    (
        ("event_id", "uuid"),
        ("case_id", 'text COLLATE "C"'),  # only ever matched for equality: bytewise is cheaper
        ("subject", "text"),
        ("event_type", "text"),
        ("schema_version", "int"),
        ("context", "text"),
        ("producer", "text"),
        ("stream_id", "text"),
        ("sequence", "int"),
        ("occurred_at", "timestamptz"),
        ("recorded_at", "timestamptz"),
        ("actor", "text"),
        ("correlation_id", "uuid"),
        ("causation_id", "uuid"),
        ("key", "text"),
        ("known", "boolean"),
        # JSON text as published (its own schema version). Plain text, not json: nothing
        # queries inside it, and json would have Postgres check the syntax of every row again.
        ("payload", "text"),
    ),
    ("event_id",),
    extra_sql=(
        # A case's few events are sorted after the lookup; the feed reads the newest.
        "CREATE INDEX {t}_case ON {t} (case_id);\nCREATE INDEX {t}_recorded ON {t} (recorded_at);\n"
    ),
)

CASES = Table(
    "cases",
    (
        ("case_id", "text"),
        ("insurer_code", "text"),
        ("channel", "text"),
        ("loss_type", "text"),
        ("region", "text"),
        ("plate", "text"),
        ("priority", "text"),
        ("first_contact_owner", "text"),
        ("reported_at", "timestamptz"),
        ("report_day", "date"),
        ("cancelled_at", "timestamptz"),
        ("duplicate_of", "text"),
        ("corrections", "int"),
    ),
    ("case_id",),
    extra_sql="CREATE INDEX {t}_day ON {t} (report_day, insurer_code);\n",
)

CASE_COUNTS = Table(
    "case_counts",
    (
        ("granularity", "text"),
        ("period", "date"),
        ("insurer_code", "text"),
        ("loss_type", "text"),
        ("channel", "text"),
        ("region", "text"),
        ("count", "int"),
    ),
    ("granularity", "period", "insurer_code", "loss_type", "channel", "region"),
    counters=("count",),
)

JOBS = Table(
    "jobs",
    (
        ("job_id", "text"),
        ("case_id", "text"),
        ("insurer_code", "text"),
        ("surveyor_id", "text"),
        ("opened_at", "timestamptz"),
        ("queued_at", "timestamptz"),
        ("first_assigned_at", "timestamptz"),
        ("assigned_at", "timestamptz"),
        ("ack_due_at", "timestamptz"),
        ("acknowledged_at", "timestamptz"),
        ("current_acked", "boolean"),
        ("arrived_at", "timestamptz"),
        ("completed_at", "timestamptz"),
        ("closed_at", "timestamptz"),
        ("cancelled_at", "timestamptz"),
        ("declines", "int"),
        ("timeouts", "int"),
        ("reassignments", "int"),
        ("loss_estimate", "float8"),
    ),
    ("job_id",),
    extra_sql="CREATE INDEX {t}_case ON {t} (case_id);\n",
)

SURVEYORS = Table(
    "surveyors",
    (
        ("surveyor_id", "text"),
        ("name", "text"),
        ("team", "text"),
        ("retired", "boolean"),
    ),
    ("surveyor_id",),
)

SURVEYOR_STATS = Table(
    "surveyor_stats",
    (
        ("surveyor_id", "text"),
        ("day", "date"),
        ("assigned", "int"),
        ("acknowledged", "int"),
        ("declined", "int"),
        ("timed_out", "int"),
        ("arrived", "int"),
        ("on_time", "int"),
        ("completed", "int"),
        ("survey_ms", "bigint"),
    ),
    ("surveyor_id", "day"),
    counters=(
        "assigned",
        "acknowledged",
        "declined",
        "timed_out",
        "arrived",
        "on_time",
        "completed",
        "survey_ms",
    ),
)

COMPLAINTS = Table(
    "complaints",
    (
        ("complaint_id", "text"),
        ("case_id", "text"),
        ("surveyor_id", "text"),
        ("insurer_code", "text"),
        ("category", "text"),
        ("severity", "text"),
        ("channel", "text"),
        ("owner", "text"),
        ("received_at", "timestamptz"),
        ("received_day", "date"),
        ("answer_due_at", "timestamptz"),
        ("valid", "boolean"),
        ("triaged_at", "timestamptz"),
        ("assignee", "text"),
        ("resolved_at", "timestamptz"),
        ("resolved_on_time", "boolean"),
        ("satisfied", "boolean"),
        ("clocks", "text"),  # running deadline clocks {name: due_at} (JSON)
        ("breaches", "int"),
        ("reopened", "int"),
        ("closed_at", "timestamptz"),
    ),
    ("complaint_id",),
)

ESCALATIONS = Table(
    "complaint_escalations",
    (
        ("complaint_id", "text"),
        ("level", "int"),
        ("clock", "text"),
        ("escalated_to", "text"),
        ("escalated_at", "timestamptz"),
        ("escalated_day", "date"),
    ),
    ("complaint_id", "level", "clock"),
)

CALLBACKS = Table(
    "callbacks",
    (
        ("callback_id", "text"),
        ("case_id", "text"),
        ("surveyor_id", "text"),
        ("insurer_code", "text"),
        ("owner", "text"),
        ("scheduled_at", "timestamptz"),
        ("due_at", "timestamptz"),
        ("completed_at", "timestamptz"),
        ("failed_at", "timestamptz"),
        ("attempts", "int"),
        ("satisfaction", "int"),
        ("surveyor_rating", "int"),
        ("reasons", "text"),
        ("agent", "text"),
        ("day", "date"),
    ),
    ("callback_id",),
)

DISCREPANCIES = Table(
    "discrepancies",
    (
        ("discrepancy_id", "text"),
        ("case_id", "text"),
        ("field", "text"),
        ("agent", "text"),
        ("recorded_at", "timestamptz"),
        ("day", "date"),
        ("resolved_at", "timestamptz"),
        ("resolved_by", "text"),
    ),
    ("discrepancy_id",),
)

ENTITY_TABLES = (CASES, JOBS, SURVEYORS, COMPLAINTS, CALLBACKS, DISCREPANCIES)
ALL_TABLES = (
    CASE_EVENTS,
    CASES,
    CASE_COUNTS,
    JOBS,
    SURVEYORS,
    SURVEYOR_STATS,
    COMPLAINTS,
    ESCALATIONS,
    CALLBACKS,
    DISCREPANCIES,
)
BY_NAME = {t.name: t for t in ALL_TABLES}


def reset_migration(version: int, name: str) -> Migration:
    """Tables changed shape: recreate them all from the specs above. A schema that held data
    is marked for a rebuild from the start of history (projection version 0) at next start."""
    return Migration(
        "analytics",
        version,
        name,
        "INSERT INTO analytics_meta (key, value) SELECT 'projection_version', '0' "
        "WHERE EXISTS (SELECT 1 FROM case_events) "
        "ON CONFLICT (key) DO UPDATE SET value = '0';\n"
        + "".join(f"DROP TABLE IF EXISTS {t.name};\n" for t in ALL_TABLES)
        + "\n".join(t.ddl() for t in ALL_TABLES),
    )


MIGRATIONS = [
    Migration(
        "analytics",
        1,
        "projections",
        "\n".join(t.ddl() for t in ALL_TABLES)
        + """
        CREATE TABLE analytics_meta (key text PRIMARY KEY, value text NOT NULL,
                                     updated_at timestamptz NOT NULL DEFAULT now());
        """,
    ),
    reset_migration(2, "history_columns_reset"),
    reset_migration(3, "complaint_clocks_and_job_lifecycle"),
    Migration(
        "analytics",
        4,
        "history_payload_text_and_narrow_case_index",
        # In place, no rebuild: json -> text keeps every value as it is (binary coercible,
        # no table rewrite); the case index is rebuilt once, narrower and bytewise.
        """
        DROP INDEX IF EXISTS case_events_case;
        ALTER TABLE case_events
            ALTER COLUMN payload TYPE text,
            ALTER COLUMN case_id TYPE text COLLATE "C";
        CREATE INDEX case_events_case ON case_events (case_id);
        """,
    ),
]
