"""Composition root of the complaints service."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg
from claimdesk.consumer import ConsumerSpec
from claimdesk.events.base import Envelope
from claimdesk.service import Runtime, ServiceDefinition
from claimdesk.timers import Timer, TimerHandler

from complaints import api, callbacks, handlers, pages, web
from complaints.handlers import Ctx
from complaints.migrations import MIGRATIONS
from complaints.settings import ComplaintsSettings
from complaints.sla import SlaPolicy


def _consumers(rt: Runtime) -> Sequence[ConsumerSpec]:
    cfg: ComplaintsSettings = rt.extras["complaints_settings"]

    async def dispatch_events(conn: asyncpg.Connection, env: Envelope) -> None:
        await callbacks.on_dispatch_event(Ctx(rt.store, rt.clock.now()), conn, env, cfg)

    async def intake_events(conn: asyncpg.Connection, env: Envelope) -> None:
        await callbacks.on_intake_event(Ctx(rt.store, rt.clock.now()), conn, env)

    return [
        ConsumerSpec(
            "complaints-dispatch",
            [rt.topic("dispatch")],
            dispatch_events,
            event_types=frozenset({"SurveyCompleted", "SurveyorAssigned"}),
            background=True,
        ),
        ConsumerSpec(
            "complaints-intake",
            [rt.topic("intake")],
            intake_events,
            event_types=frozenset(
                {
                    "CaseReported",
                    "CaseDetailsCorrected",
                    "ConsultationLogged",
                    "OwnershipHandedOver",
                }
            ),
            background=True,
        ),
    ]


def _timers(rt: Runtime) -> Mapping[str, TimerHandler]:
    async def clock_timer(conn: asyncpg.Connection, timer: Timer, now: object) -> None:
        await handlers.on_clock_timer(Ctx(rt.store, rt.clock.now()), conn, timer.payload)

    return {handlers.TIMER_KIND: clock_timer}


DEMO_POLICIES = {
    "picc-high": {
        "description": "PICC, high severity: answer within 1 working hour, resolve in 2 days",
        "match": {"insurers": ["PICC"], "severities": ["high"]},
        "calendar": {"holidays": ["2026-10-01", "2026-10-02", "2026-10-05"]},
        "clocks": {
            "first_response": {"duration": "1h", "business_hours": True, "warn_before": "15m"},
            "resolution": {"duration": {"days": 2}, "business_hours": True, "warn_before": "4h"},
        },
        "re_escalate_after": "4h",
    },
    "attitude": {
        "description": "Complaints about attitude: answer within 30 minutes, 24/7",
        "match": {"categories": ["attitude"]},
        "clocks": {
            "first_response": {"duration": "30m", "warn_before": "10m"},
            "resolution": {"duration": {"days": 3}, "business_hours": True},
        },
    },
}


async def seed_demo(ctx: Ctx, conn: asyncpg.Connection) -> None:
    """Demo data, idempotent: two example policies and a 50% callback rate for PINGAN."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('complaints:demo'))")
    for name, body in DEMO_POLICIES.items():
        if not await conn.fetchval("SELECT 1 FROM sla_policies WHERE name = $1", name):
            await handlers.publish_policy(ctx, conn, name, SlaPolicy.model_validate(body), "demo")
    if not await conn.fetchval("SELECT 1 FROM callback_rates WHERE insurer_code = 'PINGAN'"):
        await callbacks.set_rate(ctx, conn, "PINGAN", 0.5, "demo")


def make_definition(cfg: ComplaintsSettings | None = None) -> ServiceDefinition:
    """The service; tests pass their own ComplaintsSettings (else CLAIMDESK_COMPLAINTS_*)."""

    def consumers(rt: Runtime) -> Sequence[ConsumerSpec]:
        rt.extras["complaints_settings"] = (
            cfg or rt.extras.get("complaints_settings") or ComplaintsSettings()
        )
        return _consumers(rt)

    async def on_start(rt: Runtime) -> None:
        rt.extras.setdefault("complaints_settings", cfg or ComplaintsSettings())
        async with rt.pool.acquire() as conn, conn.transaction():
            await handlers.ensure_default_policy(Ctx(rt.store, rt.clock.now()), conn)
        if rt.settings.demo:
            async with rt.pool.acquire() as conn, conn.transaction():
                await seed_demo(Ctx(rt.store, rt.clock.now()), conn)
            await pages.write_demo_credentials(rt)

    return ServiceDefinition(
        name="complaints",
        title="ClaimDesk Complaints",
        description="Complaints (投诉受理) with first-contact ownership (首问责任制), validity "
        "triage, SLA deadline clocks with escalation, improvement tracking, satisfaction "
        "callbacks (客户回访) and every person's worklist.",
        migrations=MIGRATIONS,
        routers=[api.router, web.router, pages.router],
        consumers=consumers,
        timers=_timers,
        on_start=on_start,
        openapi_tags=[
            {"name": "complaints", "description": "Complaints and their lifecycle 投诉"},
            {"name": "sla", "description": "SLA policies 时限策略"},
            {"name": "callbacks", "description": "Satisfaction callbacks 客户回访"},
            {"name": "ownership", "description": "Worklists and handover 首问责任制"},
            {"name": "public", "description": "The customers' complaint form"},
            {"name": "pages", "description": "Agent pages"},
        ],
    )


DEFINITION = make_definition()
