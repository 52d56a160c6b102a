"""Analytics benchmarks, each against a baseline measured in the same run:

- fold rate: the live consumer (batch fold into history + statistics tables, the history's
  event_id key as the dedupe) over the three topics, vs a raw group-less aiokafka consumer
  reading the same messages;
- rebuild from the stores (`claimdesk analytics rebuild --source stores`, a child process:
  wall time and its peak RSS) vs a raw asyncpg read of the same rows in commit order;
- lag from an event's commit in intake's store to the dashboard's SSE snapshot showing it,
  at 100 cases/s, vs the lag to a raw Kafka consumer seeing the relayed message.

Events are generated (a plausible case life: report, assignment, acknowledgement, arrival,
survey, closing, callback; some complaints) and bulk-copied into the producing services'
event stores, then republished to Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import TopicPartition
from claimdesk.clock import SystemClock
from claimdesk.db import CORE_MIGRATIONS, create_pool, migrate
from claimdesk.embedded import EmbeddedPostgres, TansuBroker, free_port
from claimdesk.events import complaints as ce
from claimdesk.events import dispatch as de
from claimdesk.events import intake as ie
from claimdesk.events.base import Event
from claimdesk.eventstore import EventStore, new_event_id, read_columns
from claimdesk.kafka import ensure_topics, make_consumer, make_producer
from claimdesk.outbox import OutboxRelay
from claimdesk.service import Runtime
from claimdesk.settings import Settings

ADMIN = "bench-admin-token-0123456789abcdef"
SECRET = "bench-secret-0123456789abcdefghijklmnop"  # noqa: S105 - a throwaway broker
COLUMNS = [
    "stream_id", "sequence", "event_id", "event_type", "schema_version", "occurred_at",
    "recorded_at", "producer", "correlation_id", "causation_id", "actor", "key",
    "trace_context", "payload",
]  # fmt: skip


_INSERT = f"""INSERT INTO events ({", ".join(COLUMNS)})
SELECT stream_id, sequence, event_id, event_type, schema_version, occurred_at, recorded_at,
       producer, correlation_id, causation_id, actor, key, trace_context::jsonb, payload::json
FROM unnest($1::text[], $2::int[], $3::uuid[], $4::text[], $5::int[], $6::timestamptz[],
            $7::timestamptz[], $8::text[], $9::uuid[], $10::uuid[], $11::text[], $12::text[],
            $13::text[], $14::text[]) AS u({", ".join(COLUMNS)})"""


def case_life(
    i: int, rng: random.Random, base: datetime
) -> dict[str, list[tuple[str, Event, datetime]]]:
    cid, job = f"C{i:07d}", f"J{i:07d}"
    sid = f"S{rng.randrange(50):03d}"
    t = base + timedelta(seconds=i * 2)
    out: dict[str, list[tuple[str, Event, datetime]]] = {
        "intake": [],
        "dispatch": [],
        "complaints": [],
    }
    out["intake"].append(
        (
            f"case-{cid}",
            ie.CaseReported(
                case_id=cid,
                insurer_code=rng.choice(["PICC", "PINGAN", "CPIC"]),
                channel=rng.choice(["insurer_api", "phone"]),
                loss_type=rng.choice(
                    ["vehicle_own_damage", "vehicle_third_party", "injury", "property"]
                ),
                loss_time=t,
                loss_address="上海市浦东新区世纪大道 100 号",
                plate="沪A12345",
                region=rng.choice(["浦东", "徐汇", "闵行"]),
                description="追尾, 前保险杠受损",
            ),
            t,
        )
    )
    steps: list[Event] = [
        de.SurveyorAssigned(
            job_id=job,
            case_id=cid,
            surveyor_id=sid,
            policy_version="v1",
            reason="nearest",
            ack_due_at=t + timedelta(minutes=5),
        ),
        de.JobAcknowledged(job_id=job, case_id=cid, surveyor_id=sid),
        de.SurveyorArrived(job_id=job, case_id=cid, surveyor_id=sid),
        de.SurveyCompleted(job_id=job, case_id=cid, surveyor_id=sid, loss_estimate=3200.0),
        de.CaseClosed(job_id=job, case_id=cid, closed_by="dispatcher:D01"),
    ]
    for k, e in enumerate(steps):
        out["dispatch"].append((f"job-{job}", e, t + timedelta(minutes=3 + 20 * k)))
    tc = t + timedelta(hours=3)
    out["complaints"].append(
        (
            f"callback-B{i}",
            ce.CallbackScheduled(
                callback_id=f"B{i}", case_id=cid, surveyor_id=sid, owner="A002", due_at=tc
            ),
            tc,
        )
    )
    out["complaints"].append(
        (
            f"callback-B{i}",
            ce.CallbackCompleted(
                callback_id=f"B{i}",
                case_id=cid,
                surveyor_id=sid,
                satisfaction=rng.randint(1, 5),
                agent="A002",
            ),
            tc + timedelta(minutes=5),
        )
    )
    if rng.random() < 0.1:
        q = f"Q{i}"
        out["complaints"].append(
            (
                f"complaint-{q}",
                ce.ComplaintReceived(
                    complaint_id=q,
                    case_id=cid,
                    category="delay",
                    severity="low",
                    channel="phone",
                    caller_name="张三",
                    caller_phone="13900000000",
                    matter="慢",
                    surveyor_id=sid,
                    owner="A001",
                ),
                tc,
            )
        )
        out["complaints"].append(
            (
                f"complaint-{q}",
                ce.ComplaintTriaged(
                    complaint_id=q, case_id=cid, valid=True, reason="属实", triaged_by="TL1"
                ),
                tc,
            )
        )
    return out  # fmt: skip


async def generate(pools: dict[str, asyncpg.Pool], n_events: int, first_case: int = 0) -> int:
    """Bulk-copy about `n_events` generated events into the stores; returns how many."""
    rng = random.Random(first_case)
    base = datetime.now(UTC) - timedelta(days=30)
    total, i = 0, first_case
    seqs: dict[str, int] = {}
    while total < n_events:
        batch: dict[str, list[tuple[Any, ...]]] = {"intake": [], "dispatch": [], "complaints": []}
        while total < n_events and sum(len(v) for v in batch.values()) < 50_000:
            for ctx, items in case_life(i, rng, base).items():
                for stream, e, at in items:
                    seqs[stream] = seqs.get(stream, 0) + 1
                    key = e.partition_key() or stream
                    batch[ctx].append((
                        stream, seqs[stream], new_event_id(), e.event_type, e.schema_version, at,
                        at, ctx, uuid.uuid4(), None, "system", key, "{}", e.model_dump_json(),
                    ))  # fmt: skip
                    total += 1
            i += 1
        for ctx, rows in batch.items():
            if rows:
                async with pools[ctx].acquire() as conn:
                    await conn.execute(_INSERT, *[list(col) for col in zip(*rows, strict=True)])
    return total


def cpu_by_group(pythons: Collection[int] = ()) -> dict[str, float]:
    """CPU seconds used so far: this process (or the processes `pythons`), every Postgres
    process (with its exited children: backends), the broker, and the whole machine busy
    (from /proc/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"python": 0.0 if pythons else time.process_time(), "postgres": 0.0, "broker": 0.0}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        f = raw.rsplit(")", 1)[1].split()
        if int(entry.name) in pythons:
            out["python"] += (int(f[11]) + int(f[12])) / tick
        elif comm == "postgres":
            out["postgres"] += sum(int(v) for v in f[11:15]) / tick
        elif comm.startswith("tansu"):
            out["broker"] += (int(f[11]) + int(f[12])) / tick
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    out["machine"] = (sum(fields) - fields[3] - fields[4]) / tick  # all but idle and iowait
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    out = {k: after[k] - before[k] for k in before}
    # The rest of the machine: kernel threads (WAL and page writeback), anything else running.
    out["other"] = max(0.0, out["machine"] - out["python"] - out["postgres"] - out["broker"])
    return out


def cpu_note(cpu: dict[str, float], n: float, seconds: float) -> str:
    """Per event: where the CPU went (µs), and how busy the machine was."""

    def us(k: str) -> str:
        return f"{cpu[k] / n * 1e6:.0f}" if n else "-"

    return (
        f"Python {us('python')}, Postgres {us('postgres')}, broker {us('broker')}, "
        f"other (kernel: WAL/page writeback, network) {us('other')} µs of CPU per event; "
        f"machine {cpu['machine'] / seconds / (os.cpu_count() or 1):.0%} busy"
    )


async def raw_kafka_read(settings: Settings, n: int, cpu: dict[str, float] | None = None) -> float:
    consumer = make_consumer(settings, None, max_poll_records=5000, fetch_max_bytes=64 << 20)
    await consumer.start()
    try:
        tps = []
        for ctx in ("intake", "dispatch", "complaints"):
            topic = settings.topic(ctx)
            await consumer._client.force_metadata_update()
            tps += [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        start, got, before = time.perf_counter(), 0, cpu_by_group()
        while got < n and time.perf_counter() - start < 600:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                got += sum(1 for r in records if r.value)
        seconds = time.perf_counter() - start
        if cpu is not None:
            cpu.update(cpu_delta(before, cpu_by_group()), n=got, seconds=seconds)
        return got / seconds
    finally:
        await consumer.stop()


FOLD_MEMBERS = tuple(int(m) for m in os.environ.get("BENCH_ANALYTICS_MEMBERS", "1,2").split(","))
"""Fold runs: members (processes) in the fold's consumer group; 2 = one per core here."""


FOLD_ROUNDS = 3


@dataclass
class FoldRun:
    members: int
    rate: float
    raw_rate: float
    before_window: int
    fold_cpu: dict[str, float]
    raw_cpu: dict[str, float]
    spread: str = ""

    @property
    def ratio(self) -> float:
        return self.rate / self.raw_rate


def median_run(runs: list[FoldRun]) -> FoldRun:
    """The round with the median ratio, noting every round's ratio."""
    ordered = sorted(runs, key=lambda r: r.ratio)
    chosen = ordered[len(ordered) // 2]
    chosen.spread = ", ".join(f"{r.ratio:.2f}" for r in runs)
    return chosen


def _members(m: int) -> str:
    return "1 member" if m == 1 else f"{m} members"


def _fold_member(
    settings: Settings, group: str, *, index: int, counts: Any, assigned: Any, stop: Any
) -> None:
    """A member of the fold's consumer group in its own process (a replica of analytics)."""
    asyncio.run(
        _run_fold_member(settings, group, index=index, counts=counts, assigned=assigned, stop=stop)
    )


async def _run_fold_member(
    settings: Settings, group: str, *, index: int, counts: Any, assigned: Any, stop: Any
) -> None:
    from analytics.bootstrap import DEFINITION
    from analytics.consumers import consumer_specs, tune_gc

    assert settings.database_url
    tune_gc()  # as the service's start does
    runtime = Runtime(DEFINITION, settings, SystemClock())
    pool = await create_pool(settings.database_url, runtime.schema, min_size=1, max_size=3)
    spec = consumer_specs(runtime)[0]
    spec.group_id = group
    consumer = runtime.event_consumer(spec, pool)  # the service's consumer, its options
    task = asyncio.create_task(consumer.run())
    try:
        while not stop.is_set():
            counts[index] = consumer.stats.handled
            assigned[index] = len(consumer.stats.assigned)
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pool.close()


async def fold_rate(
    settings: Settings, n: int, members: int, cpu: dict[str, float] | None = None
) -> tuple[float, int]:
    """(events/s, events folded before the window) of the live fold with `members` processes
    in its consumer group, from the moment each holds partitions until all `n` are folded."""
    import multiprocessing

    from analytics.tables import MIGRATIONS

    assert settings.database_url
    settings = settings.model_copy(update={"schema_prefix": f"benchfold{members}_"})
    schema = settings.schema_name("analytics")
    conn = await asyncpg.connect(settings.database_url)
    try:
        await migrate(conn, schema, [*CORE_MIGRATIONS, *MIGRATIONS])  # creates the schema
        # Each fold starts from the same state: no dirty pages or WAL of what ran before.
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    ctx = multiprocessing.get_context("spawn")
    counts, assigned, stop = ctx.Array("q", members), ctx.Array("q", members), ctx.Event()
    group = f"bench-fold-{uuid.uuid4().hex[:6]}"
    procs = [
        ctx.Process(
            target=_fold_member,
            args=(settings, group),
            kwargs={"index": i, "counts": counts, "assigned": assigned, "stop": stop},
        )
        for i in range(members)
    ]
    for proc in procs:
        proc.start()
    pids = [proc.pid for proc in procs if proc.pid is not None]
    try:
        # The window opens once every member holds partitions and folds (joining the group
        # and its rebalances are not folding), and closes when all `n` events are folded.
        deadline = time.perf_counter() + 120
        while (min(assigned[:]) == 0 or sum(counts[:]) == 0) and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        start, first, before = time.perf_counter(), sum(counts[:]), cpu_by_group(pids)
        while sum(counts[:]) < n and time.perf_counter() - start < 900:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        seconds, done = time.perf_counter() - start, sum(counts[:])
        if cpu is not None:
            cpu.update(cpu_delta(before, cpu_by_group(pids)), n=done - first, seconds=seconds)
        return (done - first) / seconds if done > first else 0.0, first
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
        # Its tables go, so the next fold does not share the machine with their autovacuum.
        conn = await asyncpg.connect(settings.database_url)
        try:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        finally:
            await conn.close()


async def raw_store_read(settings: Settings) -> tuple[int, float]:
    assert settings.database_url
    sql = f"""SELECT {read_columns()} FROM events
              WHERE (tx_id, global_position) > ($1::text::xid8, $2::bigint)
                AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
              ORDER BY tx_id, global_position LIMIT 5000"""
    n, start = 0, time.perf_counter()
    for ctx in ("intake", "dispatch", "complaints"):
        conn = await asyncpg.connect(settings.database_url)
        try:
            await conn.execute(f"SET search_path TO {settings.schema_name(ctx)}")
            pos: tuple[int, int] = (0, 0)
            while rows := await conn.fetch(sql, str(pos[0]), pos[1]):
                n += len(rows)
                pos = (rows[-1]["tx"], rows[-1]["global_position"])
        finally:
            await conn.close()
    return n, n / (time.perf_counter() - start)


def rebuild_child(settings: Settings) -> tuple[float, float]:
    """Run the real CLI in a child process: (seconds, peak RSS MiB, its workers included)."""
    import subprocess

    env = {
        **os.environ,
        "CLAIMDESK_DATABASE_URL": settings.database_url or "",
        "CLAIMDESK_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "CLAIMDESK_SCHEMA_PREFIX": settings.schema_prefix,
        "CLAIMDESK_TOPIC_PREFIX": settings.topic_prefix,
        "CLAIMDESK_LOG_LEVEL": "WARNING",
    }
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "claimdesk.cli", "analytics", "rebuild", "--source", "stores", "--quiet"],
        env=env, capture_output=True, text=True, check=False, timeout=1800,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"rebuild failed: {out.stderr[-2000:]}")
    # The CLI reports the sum of its own and every worker's peak RSS (an upper bound).
    import re

    found = re.search(r"peak RSS ([\d,]+) MiB", out.stdout)
    if not found:
        raise RuntimeError(f"no RSS in the rebuild's output: {out.stdout[-500:]}")
    return seconds, float(found.group(1).replace(",", ""))


async def lag(
    settings: Settings, rate: int, seconds: float
) -> tuple[list[float], list[float], int]:
    """(dashboard lags ms, raw Kafka lags ms, cases sent) at `rate` cases/s."""
    from analytics.bootstrap import DEFINITION
    from claimdesk.testing.plugin import serve

    assert settings.database_url
    await ensure_topics(settings)
    schema = settings.schema_name("intake")
    pool = await create_pool(settings.database_url, schema, min_size=2, max_size=4)
    async with pool.acquire() as conn:
        await migrate(conn, schema, CORE_MIGRATIONS)
    store = EventStore("intake", SystemClock(), settings.topic)
    relay = OutboxRelay(pool, lambda: make_producer(settings, "bench-relay"), topic_for=settings.topic,
                        service="intake", lock_key=f"relay:{schema}", poll_s=0.005)  # fmt: skip
    committed: dict[str, float] = {}
    seen_dash: dict[str, float] = {}
    seen_raw: dict[str, float] = {}
    tasks = [asyncio.create_task(relay.run())]

    async def raw_tail() -> None:
        c = make_consumer(settings, None)
        await c.start()
        try:
            topic = settings.topic("intake")
            await c._client.force_metadata_update()
            tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or ()]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            while True:
                for records in (await c.getmany(timeout_ms=100)).values():
                    now = time.perf_counter()
                    for r in records:
                        seen_raw.setdefault(r.key.decode(), now)
        finally:
            await c.stop()

    async with serve(DEFINITION, settings) as svc:
        ready = asyncio.Event()

        async def sse() -> None:
            async with (
                httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=None)) as client,
                client.stream("GET", f"{svc.url}/v1/dashboard/stream?token={ADMIN}") as resp,
            ):
                async for line in resp.aiter_lines():
                    if line.startswith("data:"):
                        ready.set()
                        now = time.perf_counter()
                        for item in json.loads(line[5:])["feed"]:
                            seen_dash.setdefault(item["subject"], now)

        tasks += [asyncio.create_task(sse()), asyncio.create_task(raw_tail())]
        await asyncio.wait_for(ready.wait(), 20)
        await asyncio.sleep(2.0)  # consumer group joined
        rng = random.Random(1)
        n = int(rate * seconds)
        start = time.perf_counter()
        for i in range(n):
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            cid = f"L{i:06d}"
            e = case_life(i, rng, datetime.now(UTC))["intake"][0][1].model_copy(
                update={"case_id": cid}
            )
            async with pool.acquire() as conn:
                await store.append(conn, f"case-{cid}", [e], 0)
            committed[cid] = time.perf_counter()
        deadline = time.perf_counter() + 15
        while len(seen_dash.keys() & committed.keys()) < n and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
    await pool.close()
    dash = [(seen_dash[c] - t) * 1000 for c, t in committed.items() if c in seen_dash]
    raw = [(seen_raw[c] - t) * 1000 for c, t in committed.items() if c in seen_raw]
    return dash, raw, len(committed)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def main(quick: bool = False) -> str:
    fold_n = 3_000 if quick else int(os.environ.get("BENCH_ANALYTICS_FOLD", "200000"))
    rebuild_n = 5_000 if quick else int(os.environ.get("BENCH_ANALYTICS_REBUILD", "1000000"))
    lag_s = 2.0 if quick else 10.0
    tmp = Path(tempfile.mkdtemp(prefix="claimdesk-bench-analytics-"))
    pg = EmbeddedPostgres(tmp / "pg")
    url = pg.start()
    broker = TansuBroker(free_port())
    bootstrap = broker.start()
    common: dict[str, Any] = {
        "database_url": url, "kafka_bootstrap": bootstrap, "kafka_partitions": 3, "demo": False,
        "token_secret": SECRET, "admin_token": ADMIN, "log_level": "WARNING", "log_json": False,
        "data_dir": tmp / "data", "db_pool_max": 6, "consumer_batch_size": 2000,
    }  # fmt: skip
    settings = Settings(schema_prefix="bench_", topic_prefix="bench.", **common)
    pools: dict[str, asyncpg.Pool] = {}
    try:
        await ensure_topics(settings)
        for ctx in ("intake", "dispatch", "complaints"):
            pools[ctx] = await create_pool(url, settings.schema_name(ctx), min_size=1, max_size=2)
            async with pools[ctx].acquire() as conn:
                await migrate(conn, settings.schema_name(ctx), CORE_MIGRATIONS)
        t0 = time.perf_counter()
        n_fold = await generate(pools, fold_n)
        from claimdesk.cli import republish_all

        await republish_all(settings, ["intake", "dispatch", "complaints"], 0, quiet=True)
        gen_s = time.perf_counter() - t0
        # Both reads with the collector thresholds the analytics service sets at start.
        from analytics.consumers import tune_gc

        thresholds = gc.get_threshold()
        tune_gc()
        # Interleaved rounds; in each, every fold (1 member, then one per core) right after its
        # own raw read. Each row reports the round with the median ratio.
        runs: dict[int, list[FoldRun]] = {m: [] for m in FOLD_MEMBERS}
        try:
            for _ in range(1 if quick else FOLD_ROUNDS):
                for members in FOLD_MEMBERS:
                    raw_cpu: dict[str, float] = {}
                    fold_cpu: dict[str, float] = {}
                    raw_rate = await raw_kafka_read(settings, n_fold, raw_cpu)
                    rate, before_window = await fold_rate(settings, n_fold, members, fold_cpu)
                    runs[members].append(
                        FoldRun(members, rate, raw_rate, before_window, fold_cpu, raw_cpu)
                    )
        finally:
            gc.set_threshold(*thresholds)
        folds = [median_run(r) for r in runs.values()]

        # Top the stores up to the rebuild size.
        n_total = n_fold + await generate(pools, max(0, rebuild_n - n_fold), first_case=10_000_000)
        for p in pools.values():
            await p.close()
        pools.clear()
        read_n, read_rate = await raw_store_read(settings)
        rb_s, rb_rss = rebuild_child(settings)

        lag_settings = Settings(schema_prefix="benchlag_", topic_prefix="benchlag.", **common)
        dash, raw, sent = await lag(lag_settings, 100, lag_s)
    finally:
        for p in pools.values():
            await p.close()
        broker.stop()
        pg.stop()

    rb_rate = n_total / rb_s
    lines = [
        "| measure | analytics | baseline (same run) | ratio | goal |",
        "|---|---|---|---|---|",
        *(
            f"| fold rate, {n_fold:,} events over 3 topics, {_members(f.members)} (events/s) | {f.rate:,.0f} | raw aiokafka read {f.raw_rate:,.0f} | {f.ratio:.2f}x (rounds: {f.spread}) | >= 0.3x |"
            for f in folds
        ),
        f"| rebuild from stores, {n_total:,} events (s) | {rb_s:.1f} s ({rb_rate:,.0f} events/s) | raw asyncpg read of {read_n:,} rows: {read_n / read_rate:.1f} s ({read_rate:,.0f}/s) | {rb_rate / read_rate:.2f}x of raw rate | < 60 s |",
        f"| rebuild peak RSS, CLI + its 2 workers summed (MiB) | {rb_rss:,.0f} | - | - | < 1024 |",
        f"| commit -> dashboard SSE lag at 100 cases/s, p50 / p99 (ms) | {pct(dash, 0.5):.0f} / {pct(dash, 0.99):.0f} ({len(dash)}/{sent} seen) | commit -> raw Kafka consumer {pct(raw, 0.5):.0f} / {pct(raw, 0.99):.0f} | p99 {pct(dash, 0.99) / max(pct(raw, 0.99), 1e-9):.1f}x | - |",
    ]
    notes = (
        "\nWhere the CPU went while each read ran: "
        + "; ".join(
            f"the fold, {_members(f.members)} (Python: the members): "
            f"{cpu_note(f.fold_cpu, f.fold_cpu['n'], f.fold_cpu['seconds'])}, measured after "
            f"{f.before_window:,} events (once every member held partitions); its raw read: "
            f"{cpu_note(f.raw_cpu, f.raw_cpu['n'], f.raw_cpu['seconds'])}"
            for f in folds
        )
        + ".\n"
        f"\nGenerated {n_total:,} events (8-10 per case) by bulk copy into the three stores and "
        f"republished {n_fold:,} to Kafka in {gen_s:.0f} s (not measured above). Each member of "
        "the fold's group is a process running the service's own consumer with its settings "
        "(`Runtime.event_consumer`: batches of up to `fold_batch` events, aiokafka's round-robin "
        "assignor, the service's collector thresholds; batch path, the history's event_id key "
        "as the dedupe (no per-event marks), history + statistics upserts, NOTIFY), as an "
        "analytics replica runs it (the prod overlay runs 2); the raw read is one plain "
        f"aiokafka consumer in the bench process. {FOLD_ROUNDS} interleaved rounds (a raw read, "
        "then the fold, for each member count); each fold row is the round with the median "
        "ratio, every round's ratio beside it. Each fold starts on fresh tables after a "
        "CHECKPOINT, and its schema is dropped after it (so no fold shares the machine with "
        "the autovacuum of another's tables). The rebuild "
        "runs `claimdesk analytics rebuild --source stores` (2 worker processes, the default) as a "
        "child process, including the swap; its RSS is the sum of each process's peak.\n\n"
        "Command: `.venv/bin/python -m bench analytics` (sizes: BENCH_ANALYTICS_FOLD, "
        "BENCH_ANALYTICS_REBUILD; member counts: BENCH_ANALYTICS_MEMBERS, default 1,2)."
    )
    return "\n".join(lines) + "\n" + notes
