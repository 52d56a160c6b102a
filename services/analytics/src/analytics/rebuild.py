"""Rebuild every analytics table from the start of history, into shadow tables swapped in at the end.

Sources:
- `kafka` (default): a group-less reader (assign + seek_to_beginning) over the three topics,
  up to the end offsets seen at the start.
- `stores`: when the broker has lost its log, each context's own event store, read in commit
  order (the same gap-free query as `EventStore.read_all`) on a pool bound to that service's
  schema, inside read-only transactions. The operator's path; see docs/analytics.md.

The live tables keep serving meanwhile. At the swap, one transaction locks the live history
against writes, folds into the shadow tables whatever the live consumer stored that the
rebuild did not see, and renames the shadow tables into place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from claimdesk import CONTEXTS
from claimdesk.db import create_pool, needs_reset
from claimdesk.events.base import Envelope
from claimdesk.kafka import ensure_topics, make_consumer
from claimdesk.service import Runtime
from claimdesk.settings import Settings

from analytics.codec import STORE_COLUMNS, decode_fast, decode_store_row_fast
from analytics.folder import Folder, take_tables
from analytics.projections import FoldConfig
from analytics.tables import ALL_TABLES, CASE_EVENTS, PROJECTION_VERSION

log = logging.getLogger(__name__)

SHADOW = "__rebuild"
BATCH = 10_000
Progress = Callable[[int, int | None], Any]  # (events done in this step, total or None)


@dataclass
class RebuildResult:
    source: str
    events: int
    caught_up: int
    seconds: float
    peak_rss_mib: float = 0.0  # this process's peak plus every worker's peak (an upper bound)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


async def projection_version(conn: asyncpg.Connection) -> int | None:
    v = await conn.fetchval("SELECT value FROM analytics_meta WHERE key = 'projection_version'")
    return None if v is None else int(v)


async def set_projection_version(conn: asyncpg.Connection, version: int) -> None:
    await conn.execute(
        """INSERT INTO analytics_meta (key, value) VALUES ('projection_version', $1)
           ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()""",
        str(version),
    )


async def prepare_shadow(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        for t in ALL_TABLES:
            await conn.execute(f"DROP TABLE IF EXISTS {t.name}{SHADOW}")
            # Unlogged while loading (no WAL per row); logged again before the swap.
            await conn.execute(t.ddl(f"{t.name}{SHADOW}", indexes=False, unlogged=True))


async def kafka_events(
    settings: Settings, total: list[int], contexts: Sequence[str] = CONTEXTS
) -> AsyncIterator[list[Envelope]]:
    """Every message on the contexts' topics up to their end offsets now, in batches."""
    from aiokafka import TopicPartition

    await ensure_topics(settings)
    consumer = make_consumer(settings, None, max_poll_records=BATCH, fetch_max_bytes=64 << 20)
    await consumer.start()
    try:
        tps: list[TopicPartition] = []
        for ctx in contexts:
            topic = settings.topic(ctx)
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic) or set()
            tps.extend(TopicPartition(topic, p) for p in sorted(parts))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if end[tp] > begin[tp]}
        total.append(sum(end[tp] - begin[tp] for tp in tps))
        while pending:
            got = await consumer.getmany(*pending, timeout_ms=500, max_records=BATCH)
            batch: list[Envelope] = []
            for tp, records in got.items():
                for r in records:
                    if r.offset < end[tp] and r.value is not None:
                        try:
                            batch.append(decode_fast(r.value))
                        except Exception as exc:  # undecodable: the live consumer dead-letters it
                            log.warning("rebuild skipped an undecodable message: %r", exc)
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
            if batch:
                yield batch
    finally:
        await consumer.stop()


async def store_events(
    settings: Settings, total: list[int], contexts: Sequence[str] = CONTEXTS
) -> AsyncIterator[list[Envelope]]:
    """Every event of each context's store, in commit order, read-only."""
    assert settings.database_url
    pools: list[tuple[str, asyncpg.Pool]] = []
    try:
        count = 0
        for ctx in contexts:
            schema = settings.schema_name(ctx)
            pool = await create_pool(settings.database_url, schema, min_size=1, max_size=1)
            pools.append((schema, pool))
            async with pool.acquire() as conn:
                if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f'"{schema}".events'):
                    count += await conn.fetchval(f'SELECT count(*) FROM "{schema}".events')
        total.append(count)
        sql = f"""SELECT {STORE_COLUMNS} FROM events
                  WHERE (tx_id, global_position) > ($1::text::xid8, $2::bigint)
                    AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
                  ORDER BY tx_id, global_position LIMIT $3"""
        for schema, pool in pools:
            async with pool.acquire() as conn:
                if not await conn.fetchval(
                    "SELECT to_regclass($1) IS NOT NULL", f'"{schema}".events'
                ):
                    continue
                pos = (0, 0)
                while True:
                    async with conn.transaction(readonly=True):
                        rows = await conn.fetch(sql, str(pos[0]), pos[1], BATCH)
                    if not rows:
                        break
                    pos = (rows[-1]["tx"], rows[-1]["global_position"])
                    yield [decode_store_row_fast(r) for r in rows]
    finally:
        for _, pool in pools:
            await pool.close()


async def _rename_indexes(conn: asyncpg.Connection, table: str) -> None:
    rows = await conn.fetch(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1",
        table,
    )
    for r in rows:
        name = r["indexname"]
        if SHADOW in name:
            await conn.execute(f"ALTER INDEX {name} RENAME TO {name.replace(SHADOW, '')}")


async def swap_in(conn: asyncpg.Connection, folder: Folder) -> int:
    """Catch up from the live history, then replace the live tables. Returns events caught up."""
    for t in ALL_TABLES:  # secondary indexes after the bulk load, then WAL-logged again
        if t.index_sql():
            await conn.execute(t.index_sql(f"{t.name}{SHADOW}"))
        await conn.execute(f"ALTER TABLE {t.name}{SHADOW} SET LOGGED")
    async with conn.transaction():
        await take_tables(conn)  # no live fold under way from here to the commit
        await conn.execute(f"LOCK TABLE {CASE_EVENTS.name} IN EXCLUSIVE MODE")
        rows = await conn.fetch(
            f"""SELECT l.event_id, l.event_type, l.schema_version, l.stream_id, l.sequence,
                       l.occurred_at, l.recorded_at, l.producer, l.correlation_id,
                       l.causation_id, l.actor, l.key, l.payload::text AS payload
                FROM {CASE_EVENTS.name} l
                WHERE NOT EXISTS (SELECT 1 FROM {CASE_EVENTS.name}{SHADOW} r
                                  WHERE r.event_id = l.event_id)
                ORDER BY l.recorded_at, l.producer, l.stream_id, l.sequence"""
        )
        caught = 0
        for i in range(0, len(rows), BATCH):
            envs = [decode_store_row_fast(r) for r in rows[i : i + BATCH]]
            caught += len(await folder.apply(conn, envs))
        for t in ALL_TABLES:
            await conn.execute(f"DROP TABLE {t.name}")
            await conn.execute(f"ALTER TABLE {t.name}{SHADOW} RENAME TO {t.name}")
            await _rename_indexes(conn, t.name)
        await set_projection_version(conn, PROJECTION_VERSION)
    return caught


async def _load(  # noqa: PLR0917
    conn: asyncpg.Connection,
    shadow: Folder,
    settings: Settings,
    source: str,
    progress: Progress | None,
    contexts: Sequence[str] = CONTEXTS,
) -> int:
    """Fold every event of `contexts` into the shadow tables; returns how many were read."""
    total: list[int] = []
    stream = (
        kafka_events(settings, total, contexts)
        if source == "kafka"
        else store_events(settings, total, contexts)
    )
    n = 0
    # Read and decode the next batch while Postgres folds this one.
    queue: asyncio.Queue[list[Envelope] | None] = asyncio.Queue(maxsize=2)

    async def reader() -> None:
        async for batch in stream:
            await queue.put(batch)
        await queue.put(None)

    read_task = asyncio.create_task(reader())
    try:
        while (batch := await queue.get()) is not None:
            async with conn.transaction():
                # Shadow tables: a crash loses nothing (they are rebuilt), and the
                # swap itself commits durably.
                await conn.execute("SET LOCAL synchronous_commit = off")
                await shadow.apply(conn, batch)
            n += len(batch)
            if progress is not None:
                progress(len(batch), total[0] if total else None)
        await read_task
    finally:
        if not read_task.done():
            read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await read_task
    return n


def _worker_entry(
    settings: Settings, cfg: FoldConfig, source: str, schema: str, contexts: tuple[str, ...]
) -> tuple[int, int]:
    """A rebuild worker process: fold `contexts` into the shadow tables. (events, peak KiB)"""
    import resource

    async def run() -> int:
        assert settings.database_url
        pool = await create_pool(settings.database_url, schema, min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                shadow = Folder(cfg, suffix=SHADOW, copy_history=True, fresh_keys=True)
                return await _load(conn, shadow, settings, source, None, contexts)
        finally:
            await pool.close()

    n = asyncio.run(run())
    return n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def _load_parallel(  # noqa: PLR0917
    conn: asyncpg.Connection,
    cfg: FoldConfig,
    settings: Settings,
    source: str,
    schema: str,
    workers: int,
    progress: Progress | None,
) -> tuple[int, int]:
    """Fold in worker processes, one group of contexts each. Every analytics table is written
    from one context only (case_events by all, with distinct keys), so the groups never touch
    the same rows, and the folds commute across contexts. Returns (events, workers' peak KiB)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    groups = [("dispatch",), ("intake", "complaints")] if workers == 2 else [(c,) for c in CONTEXTS]
    total = await _store_total(settings) if source == "stores" else None
    loop = asyncio.get_running_loop()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(groups), mp_context=ctx) as pool:
        futures = [
            loop.run_in_executor(pool, _worker_entry, settings, cfg, source, schema, g)
            for g in groups
        ]
        done_before = 0
        pending: set[asyncio.Future[tuple[int, int]]] = set(futures)
        while pending:
            _, pending = await asyncio.wait(pending, timeout=1.0)
            if progress is not None:
                now = await conn.fetchval(f"SELECT count(*) FROM {CASE_EVENTS.name}{SHADOW}")
                progress(now - done_before, total)
                done_before = now
        results = [f.result() for f in futures]
    return sum(n for n, _ in results), sum(kib for _, kib in results)


async def _store_total(settings: Settings) -> int:
    assert settings.database_url
    count = 0
    conn = await asyncpg.connect(settings.database_url)
    try:
        for ctx in CONTEXTS:
            table = f'"{settings.schema_name(ctx)}".events'
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
                count += await conn.fetchval(f"SELECT count(*) FROM {table}")
    finally:
        await conn.close()
    return count


async def rebuild(
    pool: asyncpg.Pool,
    settings: Settings,
    cfg: FoldConfig,
    *,
    source: str = "kafka",
    progress: Progress | None = None,
    notify: str | None = None,
    schema: str | None = None,
    workers: int = 1,
) -> RebuildResult:
    """Build every table anew into shadow tables, then swap them in. One rebuild at a time.

    `workers` 2 or 3 folds groups of contexts in that many processes (uses more cores)."""
    import resource

    if source not in ("kafka", "stores"):
        raise ValueError(f"unknown source {source!r}: kafka or stores")
    if workers not in (1, 2, 3):
        raise ValueError("workers must be 1, 2 or 3")
    schema_name = schema or settings.schema_name("analytics")
    worker_kib = 0
    lock_key = f"analytics-rebuild:{schema_name}"
    started = time.perf_counter()
    async with pool.acquire() as lock_conn:
        needs_reset(lock_conn)  # a session lock: never hand it on with the connection
        if not await lock_conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock_key):
            raise RuntimeError("another rebuild is running")
        try:
            async with pool.acquire() as conn:
                await prepare_shadow(conn)
                if workers > 1:
                    n, worker_kib = await _load_parallel(
                        conn, cfg, settings, source, schema_name, workers, progress
                    )
                    # The catch-up looks rows up: this folder did not write them.
                    caught = await swap_in(conn, Folder(cfg, suffix=SHADOW, copy_history=True))
                else:
                    shadow = Folder(cfg, suffix=SHADOW, copy_history=True, fresh_keys=True)
                    n = await _load(conn, shadow, settings, source, progress)
                    caught = await swap_in(conn, shadow)
                if notify:
                    await conn.execute("SELECT pg_notify($1, 'rebuilt')", notify)
        finally:
            await lock_conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock_key)
    own_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return RebuildResult(
        source, n, caught, time.perf_counter() - started, (own_kib + worker_kib) / 1024
    )


async def rebuild_if_version_changed(runtime: Runtime) -> None:
    """At start: a new schema gets the current version; a different stored one rebuilds."""
    from analytics.consumers import fold_config, notify_channel
    from analytics.settings import AnalyticsSettings

    s: AnalyticsSettings = runtime.extras.get("analytics_settings") or AnalyticsSettings()
    async with runtime.pool.acquire() as conn:
        stored = await projection_version(conn)
        empty = not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM case_events)")
        if stored == PROJECTION_VERSION or (stored is None and empty):
            if stored is None:
                await set_projection_version(conn, PROJECTION_VERSION)
            runtime.extras["rebuild"] = {"state": "not needed", "version": PROJECTION_VERSION}
            return
    if not s.rebuild_on_version_change:
        runtime.extras["rebuild"] = {"state": "skipped (disabled)", "stored_version": stored}
        return
    runtime.extras["rebuild"] = {"state": "running", "from_version": stored}

    async def job() -> None:
        while not runtime.kafka_ready:  # noqa: ASYNC110 - a flag set by the runtime
            await asyncio.sleep(0.1)
        try:
            result = await rebuild(
                runtime.pool,
                runtime.settings,
                fold_config(s),
                notify=notify_channel(runtime),
                schema=runtime.schema,
            )
            runtime.extras["rebuild"] = {
                "state": "done",
                "from_version": stored,
                "version": PROJECTION_VERSION,
                "events": result.events,
                "seconds": round(result.seconds, 2),
            }
        except Exception as exc:
            log.exception("rebuild at start failed")
            runtime.extras["rebuild"] = {"state": "failed", "error": repr(exc)}

    runtime.spawn(job(), "rebuild")
