"""Composition root of the dispatch service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg
from claimdesk.consumer import ConsumerSpec
from claimdesk.service import Runtime, ServiceDefinition
from claimdesk.timers import Housekeeping, Timer, TimerHandler

from dispatch import access, demo, handlers
from dispatch.api import router
from dispatch.migrations import MIGRATIONS
from dispatch.notify import FeedHub, LogSmsGateway
from dispatch.pages import router as pages_router
from dispatch.settings import DispatchSettings

INTAKE_TYPES = frozenset({"CaseReported", "CaseCancelled", "CaseDetailsCorrected"})


def make_definition(dispatch_settings: DispatchSettings | None = None) -> ServiceDefinition:
    """The service; tests pass their own DispatchSettings (short deadlines, consumer group)."""

    async def on_start(rt: Runtime) -> None:
        rt.extras["dispatch_settings"] = dispatch_settings or DispatchSettings()
        rt.extras.setdefault("hub", FeedHub())
        rt.extras.setdefault("sms", LogSmsGateway(rt.settings.data_dir / "sms-dispatch.log"))
        async with rt.pool.acquire() as conn:
            await access.install(rt).load(conn)
        if rt.settings.demo:
            roster = await demo.seed(rt)
            await demo.write_credentials(rt, roster)

    async def on_stop(rt: Runtime) -> None:
        sms = rt.extras.get("sms")
        if isinstance(sms, LogSmsGateway):
            sms.close()

    def consumers(rt: Runtime) -> list[ConsumerSpec]:
        ds = dispatch_settings or DispatchSettings()

        async def handle(conn, env):  # type: ignore[no-untyped-def]
            await handlers.on_intake_event(rt, conn, env)

        async def handle_batch(conn, envs):  # type: ignore[no-untyped-def]
            await handlers.on_intake_batch(rt, conn, envs)

        return [
            ConsumerSpec(
                "dispatch-intake",
                [rt.topic("intake")],
                handle,
                event_types=INTAKE_TYPES,
                # a fetch of several cases (a backlog) costs a lock and a roster read in all
                batch_handler=handle_batch,
                group_id=ds.consumer_group,
                max_records=ds.case_batch,
                # the next fetch is decoded, and the last one's offsets committed, while a
                # transaction runs: neither waits in line before a case's assignment
                pipelined=True,
            )
        ]

    def timers(rt: Runtime) -> dict[str, TimerHandler | Housekeeping]:
        def bind(
            fn: Callable[[Runtime, asyncpg.Connection, Timer, datetime], Awaitable[None]],
        ) -> TimerHandler:
            async def h(conn: asyncpg.Connection, timer: Timer, now: datetime) -> None:
                await fn(rt, conn, timer, now)

            return h

        return {
            "ack_timeout": bind(handlers.on_ack_timeout),
            "notify_sms": bind(handlers.on_notify_sms),
            "notify_customer": bind(handlers.on_notify_customer),
            "notify_webhook": bind(handlers.on_notify_webhook),
            # due at each start (a service down for a while prunes when it comes back), then
            # every prune_interval_s (on_prune re-arms it)
            handlers.PRUNE_TIMER: Housekeeping(bind(handlers.on_prune)),
        }

    def background(rt: Runtime):  # type: ignore[no-untyped-def]
        async def listen() -> None:
            assert rt.settings.database_url
            await rt.extras["hub"].listen(rt.settings.database_url, rt.schema)

        async def tokens() -> None:
            await access.keep_fresh(rt, access.install(rt))

        return [listen, tokens]

    return ServiceDefinition(
        name="dispatch",
        title="ClaimDesk Dispatch",
        description="Assigns a surveyor to each reported case, pushes the job (live stream, team "
        "webhook, SMS), requires an acknowledgement and re-dispatches on timeout "
        "(任务调派). See docs/dispatch.md.",
        migrations=MIGRATIONS,
        routers=[router, pages_router],
        consumers=consumers,
        timers=timers,
        background=background,
        on_start=on_start,
        on_stop=on_stop,
        openapi_tags=[
            {"name": "surveyors", "description": "Surveyors (公估师/查勘员) and teams (查勘组)"},
            {"name": "jobs", "description": "Survey jobs and their lifecycle"},
            {"name": "dispatcher", "description": "Queue, manual assignment, deadlines (调度)"},
            {"name": "pages", "description": "Surveyor page and dispatcher board"},
        ],
    )


DEFINITION = make_definition()
