"""Complaints benchmarks: the deadline scheduler under 10,000 pending clocks, and exactly-once
escalation after a kill -9 and a restart with two processes.

1. Timer latency. N complaints are filed (through the service's own handler) so that their
   first-response clocks fall due spread evenly over W seconds; their resolution and
   regulatory clocks stay pending too (3N pending timers). The complaints service's runtime
   (scheduler, relay, consumers) then runs on an offset clock and each breach appends
   ComplaintClockBreached + ComplaintEscalated. Lateness = recorded time of the escalation -
   the clock's due time. Baseline, same run: the same N due times as in-memory asyncio timers
   (`loop.call_at`, nothing stored, nothing survives a crash).
2. Kill and restart. M complaints are already overdue. One service process (a subprocess)
   starts escalating them and is killed with SIGKILL part-way; then two processes start on
   the same schema. Every complaint must end with exactly one ComplaintEscalated.

Run: `.venv/bin/python -m bench complaints` (`--quick` for a smoke run).
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from claimdesk.clock import SystemClock
from claimdesk.db import CORE_MIGRATIONS, create_pool, migrate
from claimdesk.embedded import EmbeddedPostgres, TansuBroker, free_port
from claimdesk.events.complaints import ComplaintReceived
from claimdesk.eventstore import EventStore
from claimdesk.kafka import ensure_topics
from claimdesk.service import Runtime
from claimdesk.settings import Settings
from complaints import handlers
from complaints.bootstrap import make_definition
from complaints.handlers import Ctx
from complaints.migrations import MIGRATIONS
from complaints.sla import SlaPolicy

VIRTUAL_BASE = datetime(2030, 1, 1, tzinfo=UTC)
FIRST_RESPONSE_S = 3600.0
POLICY = SlaPolicy.model_validate(
    {
        "description": "bench: breach-only first response",
        "clocks": {
            "first_response": {"duration": FIRST_RESPONSE_S},
            "resolution": {"duration": {"days": 2}},
            "regulatory": {"duration": {"days": 15}, "max_extended": {"days": 30}},
        },
    }
)
ROOT = Path(__file__).resolve().parent.parent


class OffsetClock:
    """System time shifted by a settable offset, so stored virtual due times map to now."""

    def __init__(self, virtual_now: datetime) -> None:
        self.offset = virtual_now - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def set(self, virtual_now: datetime) -> None:
        self.offset = virtual_now - datetime.now(UTC)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


async def prepare(url: str, settings: Settings) -> asyncpg.Pool:
    schema = settings.schema_name("complaints")
    pool = await create_pool(url, schema, min_size=4, max_size=8)
    async with pool.acquire() as conn:
        await migrate(conn, schema, [*CORE_MIGRATIONS, *MIGRATIONS])
        store = EventStore("complaints", SystemClock(), settings.topic)
        async with conn.transaction():
            await handlers.publish_policy(Ctx(store, VIRTUAL_BASE), conn, "bench", POLICY, "bench")
    return pool


async def file_complaints(
    pool: asyncpg.Pool, settings: Settings, created_at: list[datetime], tag: str
) -> float:
    """File one complaint per creation time, 4 writers, 50 per transaction; returns seconds."""
    store = EventStore("complaints", SystemClock(), settings.topic)
    chunks = [list(range(i, min(i + 50, len(created_at)))) for i in range(0, len(created_at), 50)]
    queue: asyncio.Queue[list[int]] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)
    start = time.perf_counter()

    async def writer() -> None:
        async with pool.acquire() as conn:
            while not queue.empty():
                chunk = queue.get_nowait()
                async with conn.transaction():
                    for i in chunk:
                        await handlers.receive(
                            Ctx(store, created_at[i]),
                            conn,
                            ComplaintReceived(
                                complaint_id=f"{tag}{i:06d}",
                                case_id=f"C-{tag}{i:06d}",
                                category="delay",
                                severity="high",
                                channel="phone",
                                caller_name="王先生",
                                caller_phone="13800138000",
                                matter="查勘员迟到",
                                owner=f"A{i % 50:03d}",
                            ),
                        )

    await asyncio.gather(*(writer() for _ in range(4)))
    return time.perf_counter() - start


async def escalations(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT stream_id, recorded_at, payload->>'due_at' AS due_at, "
                "(payload->>'level')::int AS level FROM events WHERE event_type = 'ComplaintEscalated'"
            )
        )


async def count_escalations(pool: asyncpg.Pool) -> int:
    """Complaints escalated so far (the small read model, not a scan of the event table)."""
    async with pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM complaints WHERE level > 0"))


# -- 1. latency ---------------------------------------------------------------------------------


async def baseline_latency(n: int, window_s: float) -> list[float]:
    """In-memory asyncio timers for the same schedule: lateness of each callback."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 1.0
    lateness: list[float] = []
    done = asyncio.Event()

    def fire(due: float) -> None:
        lateness.append(loop.time() - due)
        if len(lateness) == n:
            done.set()

    for i in range(n):
        due = start + i * window_s / n
        loop.call_at(due, fire, due)
    await asyncio.wait_for(done.wait(), timeout=window_s + 30)
    return lateness


async def stored_latency(
    url: str, bootstrap: str, n: int, window_s: float
) -> tuple[list[float], float, int]:
    settings = Settings(
        database_url=url,
        kafka_bootstrap=bootstrap,
        schema_prefix="bench_lat_",
        topic_prefix="bench-lat.",
        demo=False,
        db_pool_max=8,
        log_level="WARNING",
        log_json=False,
    )
    await ensure_topics(settings)
    pool = await prepare(url, settings)
    try:
        created = [
            VIRTUAL_BASE + timedelta(seconds=i * window_s / n - FIRST_RESPONSE_S) for i in range(n)
        ]
        setup_s = await file_complaints(pool, settings, created, "L")
        async with pool.acquire() as conn:
            pending = int(await conn.fetchval("SELECT count(*) FROM timers WHERE fired_at IS NULL"))
        clock = OffsetClock(VIRTUAL_BASE - timedelta(hours=2))
        rt = Runtime(make_definition(), settings, clock)
        await rt.start()
        try:
            assert rt.relay is not None
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # let the relay publish the filing events first
                if rt.kafka_ready and await rt.relay.backlog() == 0:
                    break
                await asyncio.sleep(0.2)
            clock.set(VIRTUAL_BASE - timedelta(seconds=1))
            deadline = time.monotonic() + window_s + 60
            while time.monotonic() < deadline and await count_escalations(pool) < n:  # noqa: ASYNC110
                await asyncio.sleep(1.0)
        finally:
            await rt.stop()
        rows = await escalations(pool)
        lateness = [
            (r["recorded_at"] - datetime.fromisoformat(r["due_at"])).total_seconds() for r in rows
        ]
        if os.environ.get("BENCH_DEBUG"):
            buckets: dict[int, list[float]] = {}
            for r, late in zip(rows, lateness, strict=True):
                offset = (datetime.fromisoformat(r["due_at"]) - VIRTUAL_BASE).total_seconds()
                buckets.setdefault(int(offset // 2), []).append(late)
            for b, values in sorted(buckets.items()):
                print(
                    f"due {b * 2:>3}-{b * 2 + 2:<3}s n={len(values):>4} p50={pct(values, 50):.3f} max={max(values):.3f}"
                )
        missing = n - len({r["stream_id"] for r in rows})
        lateness += [float("inf")] * missing
        return lateness, setup_s, pending
    finally:
        await pool.close()


# -- 2. kill and restart ------------------------------------------------------------------------


def worker_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "CLAIMDESK_DATABASE_URL": settings.database_url or "",
            "CLAIMDESK_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
            "CLAIMDESK_SCHEMA_PREFIX": settings.schema_prefix,
            "CLAIMDESK_TOPIC_PREFIX": settings.topic_prefix,
            "CLAIMDESK_DEMO": "false",
            "CLAIMDESK_LOG_LEVEL": "WARNING",
            "CLAIMDESK_LOG_JSON": "false",
            "BENCH_VIRTUAL_NOW": VIRTUAL_BASE.isoformat(),
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def spawn_worker(settings: Settings) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.complaints", "--worker"],
        cwd=ROOT,
        env=worker_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def kill_and_restart(url: str, bootstrap: str, m: int) -> dict[str, Any]:
    settings = Settings(
        database_url=url,
        kafka_bootstrap=bootstrap,
        schema_prefix="bench_kill_",
        topic_prefix="bench-kill.",
        demo=False,
    )
    await ensure_topics(settings)
    pool = await prepare(url, settings)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        created = [
            VIRTUAL_BASE - timedelta(seconds=FIRST_RESPONSE_S + 60 - i * 0.001) for i in range(m)
        ]
        await file_complaints(pool, settings, created, "K")
        first = spawn_worker(settings)
        procs.append(first)
        t0 = time.monotonic()
        at_kill = 0
        while time.monotonic() - t0 < 60:
            at_kill = await count_escalations(pool)
            if at_kill >= max(1, m // 5):
                break
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
        before_rate = at_kill / max(time.monotonic() - t0, 1e-9)
        at_kill = await count_escalations(pool)
        t1 = time.monotonic()
        procs += [spawn_worker(settings), spawn_worker(settings)]
        done_s = float("nan")
        while time.monotonic() - t1 < 120:
            if await count_escalations(pool) >= m:
                done_s = time.monotonic() - t1
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # let any duplicate show itself
        rows = await escalations(pool)
        per_stream: dict[str, int] = {}
        for r in rows:
            per_stream[r["stream_id"]] = per_stream.get(r["stream_id"], 0) + 1
        return {
            "overdue": m,
            "escalated_before_kill": at_kill,
            "escalated_total": len(rows),
            "complaints_escalated": len(per_stream),
            "duplicates": sum(c - 1 for c in per_stream.values() if c > 1),
            "missing": m - len(per_stream),
            "levels": sorted({r["level"] for r in rows}),
            "catch_up_s": done_s,
            "rate_before_kill": before_rate,
            "rate_after_restart": 0.0 if math.isnan(done_s) else (m - at_kill) / done_s,
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        await pool.close()


async def worker() -> None:
    """One complaints service process (runtime without HTTP) on an offset clock."""
    settings = Settings()
    clock = OffsetClock(datetime.fromisoformat(os.environ["BENCH_VIRTUAL_NOW"]))
    rt = Runtime(make_definition(), settings, clock)
    await rt.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await rt.stop()


# -- report -------------------------------------------------------------------------------------


async def main(quick: bool = False) -> str:
    n, window_s, m = (300, 3.0, 300) if quick else (10_000, 60.0, 3_000)
    tmp = Path(tempfile.mkdtemp(prefix="claimdesk-bench-complaints-"))
    external_pg = os.environ.get("CLAIMDESK_TEST_DATABASE_URL")
    pg = None if external_pg else EmbeddedPostgres(tmp / "pg")
    url = external_pg or (pg.start() if pg else "")
    broker = TansuBroker(free_port())
    bootstrap = broker.start()
    load_before = os.getloadavg()[0]
    try:
        base = await baseline_latency(n, window_s)
        ours, setup_s, pending = await stored_latency(url, bootstrap, n, window_s)
        kill = await kill_and_restart(url, bootstrap, m)
    finally:
        broker.stop()
        if pg is not None:
            pg.stop()
    load_after = os.getloadavg()[0]
    p50, p99, worst = pct(ours, 50), pct(ours, 99), max(ours)
    b50, b99 = pct(base, 50), pct(base, 99)
    within = sum(1 for x in ours if x <= 1.0) / len(ours)
    ok_latency = "met" if p99 <= 1.0 else "NOT met"
    ok_once = "met" if kill["duplicates"] == 0 and kill["missing"] == 0 else "NOT met"
    once_ratio = kill["escalated_total"] / kill["overdue"]
    catch_ratio = (
        kill["rate_after_restart"] / kill["rate_before_kill"] if kill["rate_before_kill"] else 0
    )
    mode = " --quick" if quick else ""
    return "\n".join(
        [
            f"Command: `.venv/bin/python -m bench complaints{mode}` (embedded PostgreSQL, Tansu "
            f"broker; {n:,} first-response clocks due evenly over {window_s:g} s with {pending:,} "
            f"timers pending at the start; filing them took {setup_s:.1f} s; 1-min load average "
            f"{load_before:.1f} before, {load_after:.1f} after, on {os.cpu_count()} cores).",
            "",
            "| measurement | ClaimDesk | baseline (same run) | ratio | goal |",
            "|---|---|---|---|---|",
            f"| breach -> ComplaintEscalated lateness, p50 | {p50 * 1000:,.0f} ms | in-memory asyncio "
            f"timers: {b50 * 1000:,.1f} ms | - | - |",
            f"| breach -> ComplaintEscalated lateness, p99 | {p99 * 1000:,.0f} ms | in-memory asyncio "
            f"timers: {b99 * 1000:,.1f} ms | **{p99:.2f}x of the 1 s budget** | p99 ≤ 1 s: {ok_latency} |",
            f"| worst lateness; share within 1 s | {worst * 1000:,.0f} ms; {within:.2%} | - | - | - |",
            f"| escalations per overdue complaint after SIGKILL + restart with 2 processes "
            f"({kill['overdue']:,} overdue, {kill['escalated_before_kill']:,} done before the kill) | "
            f"{kill['escalated_total']:,} events, {kill['duplicates']} duplicates, {kill['missing']} missing | "
            f"expected {kill['overdue']:,} | **{once_ratio:.3f}x** | exactly 1.000x: {ok_once} |",
            f"| catch-up rate after restart (2 processes, including their start-up) | {kill['rate_after_restart']:,.0f}/s "
            f"({kill['catch_up_s']:.1f} s) | one process before the kill (including its start-up): {kill['rate_before_kill']:,.0f}/s | "
            f"**{catch_ratio:.2f}x** | - |",
        ]
    )


if __name__ == "__main__":
    if "--worker" in sys.argv:
        asyncio.run(worker())
    else:
        print(asyncio.run(main(quick="--quick" in sys.argv)))
