"""The composition root shared by every service: `build_app(definition, settings)`.

A service describes itself with a `ServiceDefinition` (name, migrations, routers, consumers,
timers, start hook). `Runtime` builds the pool, store, relay, consumers and scheduler from
settings and hands them to routes (`request.app.state.runtime`) and handlers. Nothing connects
at import time; tests pass their own settings and clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry.sdk.trace import SpanProcessor
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from claimdesk import revocations
from claimdesk.auth import Principal
from claimdesk.clock import Clock, SystemClock
from claimdesk.consumer import ConsumerSpec, EventConsumer
from claimdesk.db import CORE_MIGRATIONS, Migration, create_pool, migrate
from claimdesk.eventstore import EventStore
from claimdesk.http import EdgeMiddleware, install_error_handlers
from claimdesk.kafka import bootstrap, ensure_topics, make_consumer, make_producer
from claimdesk.metrics import DEAD_LETTERS
from claimdesk.outbox import OutboxRelay
from claimdesk.settings import Settings
from claimdesk.telemetry import setup_logging, setup_tracing, spans_observed
from claimdesk.timers import Housekeeping, TimerHandler, TimerScheduler

log = logging.getLogger(__name__)


def _none(_: Runtime) -> Sequence[Any]:
    return ()


def _no_timers(_: Runtime) -> Mapping[str, TimerHandler]:
    return {}


@dataclass
class ServiceDefinition:
    name: str
    title: str
    description: str
    migrations: Sequence[Migration] = ()
    routers: Sequence[APIRouter] = ()
    consumers: Callable[[Runtime], Sequence[ConsumerSpec]] = _none
    timers: Callable[[Runtime], Mapping[str, TimerHandler | Housekeeping]] = _no_timers
    background: Callable[[Runtime], Sequence[Callable[[], Awaitable[None]]]] = _none
    on_start: Callable[[Runtime], Awaitable[None]] | None = None
    on_stop: Callable[[Runtime], Awaitable[None]] | None = None
    openapi_tags: list[dict[str, Any]] = field(default_factory=list)
    # Learn staff-token revocations from the intake topic (claimdesk.revocations); intake
    # itself checks its own tables instead.
    learns_revocations: bool = True


class Runtime:
    """Everything a running service holds; built by `start`, torn down by `stop`."""

    def __init__(self, definition: ServiceDefinition, settings: Settings, clock: Clock) -> None:
        self.definition = definition
        self.name = definition.name
        self.settings = settings
        self.clock = clock
        self.schema = settings.schema_name(definition.name)
        self.store = EventStore(producer=definition.name, clock=clock, topic_for=settings.topic)
        self.extras: dict[str, Any] = {}
        self._pool: asyncpg.Pool | None = None
        self._http: httpx.AsyncClient | None = None
        self.relay: OutboxRelay | None = None
        self.consumers: list[EventConsumer] = []
        self.scheduler: TimerScheduler | None = None
        self.kafka_ready = False
        self._tasks: list[asyncio.Task[Any]] = []
        # ids of staff tokens revoked and not expired yet (claimdesk.revocations)
        self.revoked_tokens: frozenset[str] = frozenset()
        # a service's own further refusals of verified tokens: the reason, or None (auth.refusal)
        self.token_check: Callable[[Principal], str | None] | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._pool

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._http

    def topic(self, context: str) -> str:
        return self.settings.topic(context)

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(f"{self.name}:{name}")
        self._tasks.append(task)
        return task

    def event_consumer(self, spec: ConsumerSpec, pool: asyncpg.Pool | None = None) -> EventConsumer:
        """The consumer of `spec` as this service runs it: its group id (by default
        `<topic prefix><service>.<spec name>`) and fetch options. `pool`: the
        service's own unless given (a benchmark or a test runs a consumer without the rest)."""
        s = self.settings
        if spec.group_id is None:
            spec.group_id = f"{s.topic_prefix}{self.name}.{spec.name}"
        options: dict[str, Any] = {
            "fetch_max_wait_ms": spec.fetch_max_wait_ms
            or (
                s.kafka_background_fetch_max_wait_ms
                if spec.background
                else s.kafka_fetch_max_wait_ms
            )
        }
        if spec.fetch_min_bytes is not None:
            options["fetch_min_bytes"] = spec.fetch_min_bytes
        return EventConsumer(
            spec,
            pool or self.pool,
            functools.partial(make_consumer, s, **options),
            service=self.name,
            max_attempts=s.consumer_max_attempts,
        )

    async def start(self) -> None:
        s = self.settings
        if not s.database_url:
            raise RuntimeError(
                "CLAIMDESK_DATABASE_URL is not set (make run sets it for embedded Postgres)"
            )
        self._pool = await create_pool(
            s.database_url, self.schema, min_size=s.db_pool_min, max_size=s.db_pool_max
        )
        async with self._pool.acquire() as conn:
            applied = await migrate(
                conn, self.schema, [*CORE_MIGRATIONS, *self.definition.migrations]
            )
        if applied:
            log.info("migrations applied", extra={"cd_schema": self.schema, "cd_applied": applied})
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(5.0))
        self.relay = OutboxRelay(
            self._pool,
            lambda: make_producer(s, f"{self.name}-relay"),
            topic_for=s.topic,
            service=self.name,
            lock_key=f"relay:{self.schema}",
            batch_size=s.relay_batch_size,
            poll_s=s.relay_poll_s,
        )
        specs = list(self.definition.consumers(self))
        if self.definition.learns_revocations:
            async with self._pool.acquire() as conn:
                await revocations.load(self, conn)
            host = next((x for x in specs if self.topic("intake") in x.topics), None)
            if host is None:
                specs.append(revocations.consumer_spec(self))
            else:
                revocations.ride_along(self, host)
            self.spawn(revocations.keep_fresh(self), "revocations")
        for spec in specs:
            self.consumers.append(self.event_consumer(spec))
        timer_handlers = self.definition.timers(self)
        if timer_handlers:
            self.scheduler = TimerScheduler(
                self._pool,
                self.clock,
                timer_handlers,
                service=self.name,
                poll_s=s.timer_poll_s,
                keep_fired=timedelta(days=s.timer_keep_fired_days),
            )
            self.spawn(self.scheduler.run(), "timers")
        self.spawn(self._start_kafka(), "kafka")
        if self.definition.on_start is not None:
            await self.definition.on_start(self)
        for i, job in enumerate(self.definition.background(self)):
            self.spawn(job(), f"background-{i}")

    async def _start_kafka(self) -> None:
        """Create topics (retrying while the broker is away), then run relay and consumers."""
        delay = 0.2
        while True:
            try:
                await ensure_topics(self.settings)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "broker not reachable yet", extra={"cd_error": repr(exc), "cd_retry_s": delay}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.kafka_ready = True
        assert self.relay is not None
        self.spawn(self.relay.run(), "relay")
        for c in self.consumers:
            self.spawn(c.run(), f"consumer-{c.spec.name}")

    async def stop(self) -> None:
        if self.definition.on_stop is not None:
            with contextlib.suppress(Exception):
                await self.definition.on_stop(self)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if self._http is not None:
            await self._http.aclose()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def readiness(self) -> list[str]:
        """Why the service is not ready; empty when Postgres, the broker and consumers are fine."""
        problems: list[str] = []
        try:
            async with self.pool.acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")
                DEAD_LETTERS.labels(self.name).set(
                    await conn.fetchval("SELECT count(*) FROM dead_letters")
                )
        except Exception as exc:
            problems.append(f"postgres unreachable: {exc!r}")
        if not await _broker_reachable(bootstrap(self.settings)):
            problems.append(f"broker unreachable at {self.settings.kafka_bootstrap}")
        elif not self.kafka_ready:
            problems.append("topics not created yet")
        for c in self.consumers:
            if not c.running:
                problems.append(
                    f"consumer {c.spec.name} not running"
                    + (f": {c.last_error}" if c.last_error else "")
                )
        for t in self._tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                problems.append(f"task {t.get_name()} died: {t.exception()!r}")
        return problems


async def _broker_reachable(bootstrap_servers: str) -> bool:
    for server in bootstrap_servers.split(","):
        parts = urlsplit(f"//{server.strip()}")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 9092),
                timeout=1.0,
            )
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return True
        except (OSError, TimeoutError):
            continue
    return False


def settle_heap() -> None:
    """Move everything built at start-up out of the garbage collector's sight.

    A service holds ~90,000 long-lived objects once started (FastAPI routes, pydantic
    validators, OpenTelemetry, the OpenAPI schema); a full collection walks them all, ~50 ms
    on this machine, every few hundred requests: that pause was the p99 of a request.
    `gc.freeze()` puts them in a permanent generation the collector skips; objects made
    later are collected as usual. (Instagram's fix for the same pauses.)"""
    gc.collect()
    gc.freeze()


def build_app(
    definition: ServiceDefinition,
    settings: Settings,
    *,
    clock: Clock | None = None,
    span_processor: SpanProcessor | None = None,
) -> FastAPI:
    setup_logging(settings.log_level, settings.log_json)
    setup_tracing(definition.name, span_processor)
    runtime = Runtime(definition, settings, clock or SystemClock())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        if settings.gc_freeze:
            app.openapi()  # built now, so it is among what the freeze sets aside
            settle_heap()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        # FastAPI's own request and operation spans only where spans go somewhere: its
        # middleware costs a tenth of a millisecond per request even when they are dropped
        # (the edge middleware's span carries the request's trace either way).
        # OpenTelemetry metrics and logs off: metrics are Prometheus (/metrics), logs JSON
        # lines; left on, FastAPI looks up their (unconfigured) providers on every request.
        telemetry={"tracing": spans_observed(), "metrics": False, "logs": False},
        title=definition.title,
        description=definition.description,
        version="0.1.0",
        lifespan=lifespan,
        openapi_tags=[
            *definition.openapi_tags,
            {"name": "ops", "description": "Health, readiness, metrics"},
        ],
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.add_middleware(EdgeMiddleware, service=definition.name)

    @app.get(
        "/healthz",
        tags=["ops"],
        summary="Alive",
        responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}},
    )
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": definition.name}

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="Ready: Postgres and broker reachable, consumers running",
        responses={
            200: {"content": {"application/json": {"example": {"status": "ready"}}}},
            503: {
                "content": {
                    "application/json": {
                        "example": {
                            "status": "not_ready",
                            "reasons": ["broker unreachable at 127.0.0.1:19092"],
                        }
                    }
                }
            },
        },
    )
    async def readyz(request: Request) -> JSONResponse:
        problems = await request.app.state.runtime.readiness()
        if problems:
            return JSONResponse(
                {"status": "not_ready", "service": definition.name, "reasons": problems},
                status_code=503,
            )
        return JSONResponse({"status": "ready", "service": definition.name})

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in definition.routers:
        app.include_router(router)
    return app
