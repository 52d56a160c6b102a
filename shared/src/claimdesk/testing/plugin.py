"""pytest plugin (loaded from pyproject's addopts): real infrastructure, unique names.

- `pg_url`: CLAIMDESK_TEST_DATABASE_URL if set, else an embedded PostgreSQL for the session.
- `kafka_bootstrap`: CLAIMDESK_TEST_KAFKA_BOOTSTRAP if set, else a Tansu broker for the session.
- `settings`: Settings with a unique schema prefix and topic prefix for this test.
- `start_service`: runs a service's app under uvicorn on a free loopback port (real HTTP) and
  yields a `RunningService` with its base URL, runtime and an httpx client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from claimdesk.clock import Clock
from claimdesk.embedded import EmbeddedPostgres, TansuBroker, free_port
from claimdesk.service import Runtime, ServiceDefinition, build_app
from claimdesk.settings import Settings

TEST_SECRET = "test-secret-0123456789abcdefghijklmnop"  # noqa: S105 - tests only
TEST_ADMIN = "test-admin-token-0123456789abcdef"


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    external = os.environ.get("CLAIMDESK_TEST_DATABASE_URL")
    if external:
        yield external
        return
    EmbeddedPostgres.sweep_stale()  # servers left by killed runs
    tmp = Path(tempfile.mkdtemp(prefix="claimdesk-pg-"))
    pg = EmbeddedPostgres(tmp / "pg")
    url = pg.start()
    try:
        yield url
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("CLAIMDESK_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    broker = TansuBroker(free_port())
    bootstrap = broker.start()
    try:
        yield bootstrap
    finally:
        broker.stop()


@pytest.fixture
def names() -> dict[str, str]:
    """A unique schema prefix and topic prefix for this test."""
    tag = unique("t")
    return {"schema_prefix": f"{tag}_", "topic_prefix": f"{tag}."}


def make_settings(
    pg_url: str, kafka_bootstrap: str, names: dict[str, str], **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": pg_url,
        "kafka_bootstrap": kafka_bootstrap,
        "demo": False,
        "token_secret": TEST_SECRET,
        "admin_token": TEST_ADMIN,
        "db_pool_min": 1,
        "db_pool_max": 4,
        "log_json": False,
        "log_level": "WARNING",
        "kafka_partitions": 2,
        "gc_freeze": False,
        **names,
        **overrides,
    }
    if "data_dir" not in values:  # a directory of its own (the fixture passes tmp_path's)
        values["data_dir"] = Path(tempfile.mkdtemp(prefix="claimdesk-data-"))
    return Settings(**values)


@pytest.fixture
def settings(pg_url: str, kafka_bootstrap: str, names: dict[str, str], tmp_path: Path) -> Settings:
    """This test's settings; its data dir lies in pytest's tmp_path (pytest keeps the last few
    runs' and removes older ones)."""
    return make_settings(pg_url, kafka_bootstrap, names, data_dir=tmp_path / "claimdesk-data")


@dataclass
class RunningService:
    name: str
    url: str
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TEST_ADMIN}"}


@contextlib.asynccontextmanager
async def serve(
    definition: ServiceDefinition,
    settings: Settings,
    *,
    clock: Clock | None = None,
    span_processor: Any = None,
    wait_ready: bool = True,
) -> AsyncIterator[RunningService]:
    """Run a service over real HTTP on a free loopback port until the block ends."""
    app = build_app(definition, settings, clock=clock, span_processor=span_processor)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        try:
            for _ in range(300):
                if server.started:
                    break
                if task.done():
                    task.result()
                    raise RuntimeError(f"{definition.name} did not start")
                await asyncio.sleep(0.02)
            running = RunningService(definition.name, url, app, client)
            if wait_ready:
                await wait_until_ready(client, definition.name)
            yield running
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=15)


async def wait_until_ready(client: httpx.AsyncClient, name: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        r = await client.get("/readyz")
        if r.status_code == 200:
            return
        last = r.json()
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} not ready within {timeout} s: {last}")


@pytest.fixture
def start_service(
    settings: Settings,
) -> Callable[..., contextlib.AbstractAsyncContextManager[RunningService]]:
    """`async with start_service(DEFINITION) as svc:` with this test's settings by default."""

    def _start(
        definition: ServiceDefinition, settings_override: Settings | None = None, **kwargs: Any
    ) -> contextlib.AbstractAsyncContextManager[RunningService]:
        return serve(definition, settings_override or settings, **kwargs)

    return _start


async def eventually(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Await until `predicate()` (sync or async) returns a truthy value; return it."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if asyncio.get_running_loop().time() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {last!r})")
        await asyncio.sleep(interval)


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("CLAIMDESK_TEST_ARTIFACTS", "test-artifacts"))


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    """A Playwright page in Debian's headless Chromium (/usr/bin/chromium), phone-sized."""
    from playwright.async_api import async_playwright

    executable = os.environ.get("CLAIMDESK_CHROMIUM", "/usr/bin/chromium")
    if shutil.which(executable) is None:
        pytest.fail(f"{executable} is missing: `make browser` installs Debian's chromium")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = await browser.new_context(viewport={"width": 412, "height": 860})
        pg = await context.new_page()
        try:
            yield pg
        finally:
            await context.close()
            await browser.close()


def artifact_path(name: str) -> Path:
    """Where a test keeps a screenshot or report (test-artifacts/ by default)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
