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
GC_THRESHOLDS = (50_000, 20, 50)


def tune_gc() -> None:
    """Collect less often: the fold keeps a whole fetch (thousands of events, a few small
    objects each) alive at once, so with CPython's defaults (700, 10, 10) the cyclic collector
    runs every few hundred events and its full passes walk the whole heap; that was about a
    fifth of the fold's CPU. Process-wide: analytics runs in its own process (its start calls
    this; the fold benchmark too). Thresholds are only raised, never lowered."""
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
        )
    ]
