"""Intake benchmark: `POST /v1/cases` throughput and latency under load from a separate process,
against a bare FastAPI + asyncpg endpoint inserting one row, in the same run with the same
server settings (both under uvicorn in their own subprocess, one worker, the same Postgres, the
same pool size, access log off).

- max throughput: a closed loop (N concurrent keep-alive clients) for a bounded time and count.
- latency at 70% of our max: an open loop (requests at a fixed rate, latency measured from the
  scheduled send time, so a stall is not hidden) against both endpoints at that same rate.
The load generator is `python -m bench.intake load ...` (bench.rawhttp keep-alive connections, loopback only, bounded).
Run: `.venv/bin/python -m bench intake` (`--quick` for a smoke run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
POOL_MAX = 10
ADMIN = secrets.token_urlsafe(24)
SECRET = secrets.token_urlsafe(32)

# -- the bare baseline ----------------------------------------------------------------------------


def bare_app() -> Any:
    """FastAPI + asyncpg, one INSERT per POST: the cheapest honest 'accept a case' endpoint."""
    import asyncpg
    from fastapi import FastAPI

    url = os.environ["BENCH_DATABASE_URL"]
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        pool = await asyncpg.create_pool(url, min_size=1, max_size=POOL_MAX)
        assert pool is not None
        await pool.execute(
            "CREATE TABLE IF NOT EXISTS bare_cases (id uuid PRIMARY KEY, report_no text, "
            "body jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
        state["pool"] = pool
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/cases", status_code=201)
    async def post(body: dict[str, Any]) -> dict[str, Any]:
        case_id = uuid.uuid4()
        await state["pool"].execute(
            "INSERT INTO bare_cases (id, report_no, body) VALUES ($1, $2, $3::jsonb)",
            case_id,
            body.get("report_no"),
            json.dumps(body),
        )
        return {"case_id": str(case_id), "status": "reported"}

    return app


# -- the load generator (its own process) ----------------------------------------------------------


def body(run: str, worker: int, n: int) -> dict[str, Any]:
    return {
        "report_no": f"B{run}{worker:03d}{n:07d}",
        "policy_no": "PDAA202631010000012345",
        "plate": f"沪A{(worker * 7919 + n) % 100000:05d}",
        "loss_type": "vehicle_own_damage",
        "loss_time": "2026-11-20T08:30:00+08:00",
        "loss_address": "上海市浦东新区世纪大道100号",
        "loss_lat": 31.2353,
        "loss_lon": 121.5058,
        "description": "两车追尾,前车后保险杠受损,无人员受伤",
        "reporter_name": "张伟",
        "reporter_phone": "13812345678",
        "insured_name": "张伟",
        "insured_phone": "13812345678",
        "survey_place": "scene",
        "injuries": False,
        "priority": "normal",
    }


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def load(args: argparse.Namespace) -> dict[str, Any]:
    from bench.rawhttp import Pool

    assert args.url.startswith("http://127.0.0.1:"), "loopback only"
    headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
    run = secrets.token_hex(3)
    lat: list[float] = []
    codes: dict[str, int] = {}
    deadline = time.perf_counter() + args.duration
    sent = 0
    client = Pool(args.url, args.concurrency)  # keep-alive connections, lean (bench.rawhttp)
    try:

        def encoded(worker: int, n: int) -> bytes:
            return json.dumps(body(run, worker, n), ensure_ascii=False).encode()

        async def one(data: bytes, scheduled: float) -> None:
            try:
                async with asyncio.timeout(10):  # (wait_for would make a task per request)
                    status, _ = await client.request("POST", "/v1/cases", data, headers)
                key = str(status)
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
                key = type(exc).__name__
            codes[key] = codes.get(key, 0) + 1
            if key == "201":
                lat.append(time.perf_counter() - scheduled)

        start = time.perf_counter()
        if args.rate <= 0:  # closed loop

            async def worker(w: int) -> None:
                nonlocal sent
                n = 0
                while time.perf_counter() < deadline and sent < args.max:
                    sent += 1
                    n += 1
                    await one(encoded(w, n), time.perf_counter())

            await asyncio.gather(*(worker(w) for w in range(args.concurrency)))
        else:  # open loop: a request every 1/rate s, whether or not earlier ones returned
            # the bodies are encoded before the clock starts: the generator's own work
            # between two sends is then only the send
            count = min(args.max, int(args.rate * args.duration) + 1)
            bodies = [encoded(999, n) for n in range(1, count + 1)]
            start = time.perf_counter()
            deadline = start + args.duration
            sem = asyncio.Semaphore(args.concurrency * 4)
            tasks: set[asyncio.Task[None]] = set()
            interval = 1.0 / args.rate
            n = 0
            while sent < args.max:
                scheduled = start + n * interval
                if scheduled >= deadline:
                    break
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                n += 1
                sent += 1

                async def guarded(
                    data: bytes = bodies[n - 1], scheduled: float = scheduled
                ) -> None:
                    async with sem:
                        await one(data, scheduled)

                t = asyncio.create_task(guarded())
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks, timeout=15)
        elapsed = time.perf_counter() - start
    finally:
        client.close()
    ok = codes.get("201", 0)
    return {
        "ok": ok,
        "codes": codes,
        "elapsed": elapsed,
        "rps": ok / elapsed if elapsed else 0.0,
        "p50_ms": pct(lat, 0.50) * 1000,
        "p99_ms": pct(lat, 0.99) * 1000,
        "max_ms": max(lat) * 1000 if lat else float("nan"),
    }


async def run_load(
    url: str,
    token: str,
    *,
    concurrency: int,
    duration: float,
    rate: float = 0,
    max_requests: int = 200_000,
) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.intake",
        "load",
        "--url",
        url,
        "--token",
        token,
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--rate",
        str(rate),
        "--max",
        str(max_requests),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=duration + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


# -- orchestration -----------------------------------------------------------------------------


@contextlib.contextmanager
def server(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def wait_http(url: str, path: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=2) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(path)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url}{path} not ready within {timeout} s")


async def cpu_load(
    pid: int, url: str, token: str, concurrency: int, duration: float
) -> dict[str, Any]:
    """A closed-loop run that also reports the server process's CPU per answered request."""
    before = cpu_seconds(pid)
    result = await run_load(url, token, concurrency=concurrency, duration=duration)
    result["cpu_ms"] = 1000 * (cpu_seconds(pid) - before) / max(result["ok"], 1)
    return result


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose p99 is the median of the runs' (one bad or lucky run does not decide)."""
    return sorted(runs, key=lambda r: r["p99_ms"])[len(runs) // 2]


async def settle(url: str, timeout: float = 60) -> None:
    """Wait until intake's outbox is drained: a run must not pay for the previous run's
    backlog (a closed-loop max run leaves the relay some seconds of publishing)."""
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        while time.monotonic() < deadline:
            text = (await client.get("/metrics")).text
            if 'claimdesk_outbox_backlog{service="intake"} 0.0' in text:
                break
            await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)


async def main(quick: bool = False) -> str:
    import httpx
    from claimdesk.embedded import EmbeddedPostgres, TansuBroker, free_port

    load_before = os.getloadavg()[0]
    duration = 1.0 if quick else 8.0
    rounds = 1 if quick else 2
    latency_rounds = 1 if quick else 3
    concurrency = 16
    tmp = Path(tempfile.mkdtemp(prefix="claimdesk-bench-intake-"))
    pg = EmbeddedPostgres(tmp / "pg")
    pg_url = pg.start()
    broker = TansuBroker(free_port())
    bootstrap = broker.start()
    bare_port, our_port = free_port(), free_port()
    env = {
        **os.environ,
        "BENCH_DATABASE_URL": pg_url,
        "CLAIMDESK_DATABASE_URL": pg_url,
        "CLAIMDESK_KAFKA_BOOTSTRAP": bootstrap,
        "CLAIMDESK_HOST": "127.0.0.1",
        "CLAIMDESK_INTAKE_PORT": str(our_port),
        "CLAIMDESK_DEMO": "false",
        "CLAIMDESK_ADMIN_TOKEN": ADMIN,
        "CLAIMDESK_TOKEN_SECRET": SECRET,
        "CLAIMDESK_DB_POOL_MAX": str(POOL_MAX),
        "CLAIMDESK_LOG_LEVEL": "WARNING",
        "CLAIMDESK_SCHEMA_PREFIX": "bench_",
        "CLAIMDESK_TOPIC_PREFIX": f"bench{secrets.token_hex(3)}.",
        "CLAIMDESK_DATA_DIR": str(tmp / "data"),
    }
    uv = ["--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"]
    bare_cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.intake:bare_app",
        "--factory",
        "--port",
        str(bare_port),
        *uv,
    ]
    our_cmd = [sys.executable, "-m", "claimdesk.cli", "serve", "intake"]
    bare_url, our_url = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{our_port}"
    try:
        with (
            server(bare_cmd, env, tmp / "bare.log") as bare_proc,
            server(our_cmd, env, tmp / "intake.log") as our_proc,
        ):
            await wait_http(bare_url, "/healthz")
            await wait_http(our_url, "/readyz")
            async with httpx.AsyncClient(base_url=our_url, timeout=10) as client:
                r = await client.post(
                    "/v1/admin/insurers",
                    json={"code": "BENCH", "name": "基准测试保险"},
                    headers={"Authorization": f"Bearer {ADMIN}"},
                )
                r.raise_for_status()
                key = r.json()["api_key"]
            for url in (bare_url, our_url):  # warm-up
                await run_load(url, key, concurrency=concurrency, duration=min(duration, 2.0))
            bare_max, our_max = [], []
            for _ in range(rounds):
                await settle(our_url)
                bare_max.append(await cpu_load(bare_proc.pid, bare_url, key, concurrency, duration))
                our_max.append(await cpu_load(our_proc.pid, our_url, key, concurrency, duration))
            b_rps = statistics.median(x["rps"] for x in bare_max)
            o_rps = statistics.median(x["rps"] for x in our_max)
            rate = round(0.7 * o_rps, 1)
            our_runs, bare_runs = [], []
            for _ in range(latency_rounds):  # interleaved; the run with the median p99 counts
                await settle(our_url)
                our_runs.append(
                    await run_load(
                        our_url, key, concurrency=concurrency, duration=duration, rate=rate
                    )
                )
                bare_runs.append(
                    await run_load(
                        bare_url, key, concurrency=concurrency, duration=duration, rate=rate
                    )
                )
            our_at = median_run(our_runs)
            bare_at = median_run(bare_runs)
    finally:
        broker.stop()
        pg.stop()
    errors = sum(
        n
        for x in [*bare_max, *our_max, *our_runs, *bare_runs]
        for k, n in x["codes"].items()
        if k != "201"
    )
    ratio = o_rps / b_rps if b_rps else float("nan")
    o_cpu = statistics.median(x["cpu_ms"] for x in our_max)
    b_cpu = statistics.median(x["cpu_ms"] for x in bare_max)
    lines = [
        "Intake `POST /v1/cases` (insurer API key, validation, idempotency and duplicate checks, "
        "CaseReported + one DocumentRequested event with the outbox row, read model, relay to the broker "
        "in the same process) against a bare FastAPI + asyncpg endpoint inserting one row. Both "
        f"under uvicorn (1 worker, pool {POOL_MAX}) on the same embedded Postgres; load from a "
        f"separate process (a lean asyncio HTTP/1.1 client, {concurrency} keep-alive connections, {duration:.0f} s per run, "
        f"median of {rounds}; the latency rows are the run with the median p99 of "
        f"{latency_rounds} interleaved runs). Each run of ours starts once its outbox is drained (the relay "
        "publishes a closed-loop run's backlog for some seconds after it).",
        "",
        "| measure | ours | bare baseline | ratio (ours / bare) | goal |",
        "|---|---|---|---|---|",
        f"| max throughput (closed loop), req/s | {o_rps:.0f} | {b_rps:.0f} | {ratio:.2f}x | >= 0.5x |",
        f"| p50 at {rate:.0f} req/s (70% of our max), ms | {our_at['p50_ms']:.1f} | {bare_at['p50_ms']:.1f} | "
        f"{our_at['p50_ms'] / bare_at['p50_ms']:.2f}x | |",
        f"| p99 at {rate:.0f} req/s (70% of our max), ms | {our_at['p99_ms']:.1f} | {bare_at['p99_ms']:.1f} | "
        f"{our_at['p99_ms'] / bare_at['p99_ms']:.2f}x | < 50 ms |",
        f"| achieved rate in that run, req/s | {our_at['rps']:.0f} | {bare_at['rps']:.0f} | | |",
        f"| server process CPU per request at max throughput, ms | {o_cpu:.2f} | {b_cpu:.2f} | "
        f"{o_cpu / b_cpu:.2f}x | |",
        "",
        "Each server is one Python process, and at max throughput it is the bottleneck (it runs "
        "a core flat out while Postgres, the broker and the load generator share the other), so "
        "the throughput ratio is about the inverse of the CPU-per-request ratio: every "
        "millisecond ours spends beyond the bare endpoint's (validation, authentication, the "
        "duplicate lookup, events, outbox, read model, documents, the relay's publishing) "
        "comes straight off its rate.",
        "",
        f"Non-201 answers across all runs: {errors}. Load average (1 min) before/after the run: "
        f"{load_before:.1f}/{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: Postgres, the "
        "broker, both servers and the load generator share them, so absolute rates and tails "
        "move with whatever else runs; the ratios are measured side by side.",
        "",
        "Command: `.venv/bin/python -m bench intake`.",
    ]
    return "\n".join(lines)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.intake")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("load", help="the load generator (run by main as a subprocess)")
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--rate", type=float, default=0.0, help="open loop at this rate (0: closed)")
    p.add_argument("--max", type=int, default=200_000)
    args = parser.parse_args()
    args.duration = min(args.duration, 120.0)
    print(json.dumps(asyncio.run(load(args))))


if __name__ == "__main__":
    cli()
