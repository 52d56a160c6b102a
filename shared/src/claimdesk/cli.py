"""`claimdesk`: run everything, serve one service, refill Kafka, generate the event catalogue.

Services add their own sub-commands (for example `claimdesk insurer add`) by exposing
`register(subparsers)` in `<service>.cli`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from functools import partial
from typing import Any

from claimdesk import SERVICES
from claimdesk.settings import Settings, load_settings


def service_definition(name: str) -> Any:
    if name not in SERVICES:
        raise SystemExit(
            f"claimdesk: unknown service {name!r}; choose one of {', '.join(SERVICES)}"
        )
    return importlib.import_module(f"{name}.bootstrap").DEFINITION


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from claimdesk.service import build_app

    settings = load_settings()
    app = build_app(service_definition(args.service), settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port(args.service),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0


def cmd_run(_: argparse.Namespace) -> int:
    from claimdesk.launcher import run

    return run(load_settings())


async def republish_all(
    settings: Settings, services: list[str], from_position: int, quiet: bool = False
) -> int:
    """Publish every stored event of `services` again, from a global position (0: all)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from claimdesk import CONTEXTS
    from claimdesk.clock import SystemClock
    from claimdesk.db import create_pool
    from claimdesk.eventstore import EventStore
    from claimdesk.kafka import ensure_topics, make_producer
    from claimdesk.outbox import republish

    if not settings.database_url:
        raise SystemExit("claimdesk: CLAIMDESK_DATABASE_URL is not set")
    await ensure_topics(settings)
    producer = make_producer(settings, "claimdesk-republish")
    await producer.start()
    total = 0
    try:
        for name in services:
            if name not in CONTEXTS:
                continue
            schema = settings.schema_name(name)
            pool = await create_pool(settings.database_url, schema, min_size=1, max_size=2)
            try:
                async with pool.acquire() as conn:
                    exists = await conn.fetchval(
                        "SELECT to_regclass($1) IS NOT NULL", f'"{schema}".events'
                    )
                    count = (
                        await conn.fetchval(f'SELECT count(*) FROM "{schema}".events')
                        if exists
                        else 0
                    )
                if not count:
                    continue
                store = EventStore(producer=name, clock=SystemClock(), topic_for=settings.topic)
                with Progress(
                    TextColumn(f"republish {name}"),
                    BarColumn(),
                    TextColumn("{task.completed}/{task.total} events"),
                    TimeElapsedColumn(),
                    disable=quiet,
                ) as bar:
                    task = bar.add_task(name, total=count)
                    total += await republish(
                        pool,
                        store,
                        producer,
                        service=name,
                        from_position=from_position,
                        progress=partial(bar.advance, task),
                    )
            finally:
                await pool.close()
    finally:
        await producer.stop()
    return total


def cmd_republish(args: argparse.Namespace) -> int:
    settings = load_settings()
    services = [args.service] if args.service else list(SERVICES)
    n = asyncio.run(republish_all(settings, services, args.from_position))
    print(f"republished {n} events")  # noqa: T201
    return 0


def cmd_events_doc(_: argparse.Namespace) -> int:
    from claimdesk.catalogue import render_markdown

    sys.stdout.write(render_markdown())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="claimdesk", description="ClaimDesk command line")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="start Postgres, the broker and all four services")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("serve", help="run one service (settings from CLAIMDESK_*)")
    p.add_argument("service", choices=SERVICES)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("republish", help="publish stored events to Kafka again (refill the broker)")
    p.add_argument(
        "--from", dest="from_position", type=int, default=0, help="global position (0: all)"
    )
    p.add_argument("--service", choices=SERVICES)
    p.set_defaults(func=cmd_republish)
    p = sub.add_parser("events-doc", help="print the event catalogue as Markdown")
    p.set_defaults(func=cmd_events_doc)
    for name in SERVICES:
        try:
            module = importlib.import_module(f"{name}.cli")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"{name}.cli", name):
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
