"""The one consumer of analytics: every topic, folded a batch at a time."""

from __future__ import annotations

import gc
from datetime import timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
from claimdesk import CONTEXTS
from claimdesk.consumer import ConsumerSpec
from claimdesk.events.base import Envelope
from claimdesk.service import Runtime

from analytics.codec import decode_fast
from analytics.folder import NOTIFY_CHANNEL, Folder
from analytics.projections import FoldConfig
from analytics.settings import AnalyticsSettings

CONSUMER_NAME = "analytics-fold"
GC_THRESHOLDS = (500_000, 20, 50)


def tune_gc() -> None:
    """Collect less often. The fold keeps whole fetches alive at once (up to `fold_batch`
    events, about ten tracked objects each, two or three fetches in flight), and a young-object
    collection runs each time the live young objects pass the first threshold, walking them
    all: with CPython's defaults (700, 10, 10) that was about a fifth of the fold's CPU, and
    still 3.4 µs per event at 50,000 (a 36-ms pass every 10,000 events). 500,000 lies above
    that working set, so collections run when garbage cycles pile up (few: the fold makes
    almost none) rather than for every batch. Process-wide: analytics runs in its own process
    (its start calls this; the fold benchmark's members too). Thresholds are only raised."""
    current = gc.get_threshold()
    gc.set_threshold(*(max(a, b) for a, b in zip(current, GC_THRESHOLDS, strict=True)))


def fold_config(s: AnalyticsSettings) -> FoldConfig:
    return FoldConfig(
        tz=ZoneInfo(s.timezone),
        on_time_arrival=timedelta(minutes=s.on_time_arrival_minutes),
        default_answer_time=timedelta(hours=s.complaint_default_answer_hours),
    )


def notify_channel_for(schema: str) -> str:
    return f"{schema}_{NOTIFY_CHANNEL}"[:63]


def notify_channel(runtime: Runtime) -> str:
    return notify_channel_for(runtime.schema)


def live_folder(runtime: Runtime) -> Folder:
    folder = runtime.extras.get("folder")
    if folder is None:
        cfg = fold_config(runtime.extras.get("analytics_settings") or AnalyticsSettings())
        folder = Folder(cfg, notify=notify_channel(runtime))
        runtime.extras["folder"] = folder
    assert isinstance(folder, Folder)
    return folder


def consumer_specs(runtime: Runtime) -> list[ConsumerSpec]:
    folder = live_folder(runtime)
    settings = runtime.extras.get("analytics_settings") or AnalyticsSettings()

    async def one(conn: asyncpg.Connection, env: Envelope) -> None:
        await folder.apply(conn, [env])

    async def batch(conn: asyncpg.Connection, envs: list[Envelope]) -> list[UUID]:
        # The history's event_id key is the dedupe (Folder.insert_history): no marks.
        return [e.event_id for e in await folder.apply(conn, envs)]

    return [
        ConsumerSpec(
            CONSUMER_NAME,
            [runtime.topic(c) for c in CONTEXTS],
            one,
            batch_handler=batch,
            batch_dedupes=True,
            decoder=decode_fast,
            pipelined=True,
            max_records=settings.fold_batch,
        )
    ]
