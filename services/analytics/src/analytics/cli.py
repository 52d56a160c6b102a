"""`claimdesk analytics rebuild [--source kafka|stores]`."""

from __future__ import annotations

import argparse
import asyncio
import time

from claimdesk.settings import load_settings


async def _rebuild(source: str, quiet: bool, workers: int) -> int:
    from claimdesk.db import CORE_MIGRATIONS, create_pool, migrate
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from analytics.consumers import fold_config, notify_channel_for
    from analytics.rebuild import rebuild
    from analytics.settings import AnalyticsSettings
    from analytics.tables import MIGRATIONS

    settings = load_settings()
    if not settings.database_url:
        raise SystemExit("claimdesk: CLAIMDESK_DATABASE_URL is not set")
    schema = settings.schema_name("analytics")
    pool = await create_pool(settings.database_url, schema, min_size=2, max_size=3)
    started = time.perf_counter()
    try:
        async with pool.acquire() as conn:
            await migrate(conn, schema, [*CORE_MIGRATIONS, *MIGRATIONS])
        with Progress(
            TextColumn(f"rebuild from {source}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} events/s"),
            TimeElapsedColumn(),
            disable=quiet,
        ) as bar:
            task = bar.add_task("rebuild", total=None, rate="0")

            def progress(n: int, total: int | None) -> None:
                done = bar.tasks[0].completed + n
                rate = done / max(time.perf_counter() - started, 1e-6)
                bar.update(task, advance=n, total=total, rate=f"{rate:,.0f}")

            result = await rebuild(
                pool,
                settings,
                fold_config(AnalyticsSettings()),
                source=source,
                progress=progress,
                notify=notify_channel_for(schema),
                schema=schema,
                workers=workers,
            )
    finally:
        await pool.close()
    print(  # noqa: T201
        f"rebuilt analytics from {result.source}: {result.events} events read, "
        f"{result.caught_up} caught up at the swap, {result.seconds:.1f} s, "
        f"{result.rate:,.0f} events/s, peak RSS {result.peak_rss_mib:,.0f} MiB "
        f"({workers} worker{'s' if workers > 1 else ''})"
    )
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    return asyncio.run(_rebuild(args.source, args.quiet, args.workers))


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("analytics", help="analytics: rebuild the statistics tables")
    sub = p.add_subparsers(dest="analytics_command", required=True)
    r = sub.add_parser(
        "rebuild",
        help="build every analytics table anew from the start of history, swap in at the end",
    )
    r.add_argument(
        "--source",
        choices=["kafka", "stores"],
        default="kafka",
        help="kafka: the topics from offset 0; stores: each service's event store (broker lost its log)",
    )
    r.add_argument(
        "--workers",
        type=int,
        choices=[1, 2, 3],
        default=2,
        help="processes folding groups of contexts in parallel (default 2)",
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_rebuild)
