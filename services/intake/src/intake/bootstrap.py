"""Composition root of the intake service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from claimdesk.consumer import ConsumerSpec
from claimdesk.service import Runtime, ServiceDefinition

from intake import demo, webhooks
from intake.api import ROUTERS
from intake.migrations import MIGRATIONS
from intake.settings import IntakeSettings


async def on_start(rt: Runtime) -> None:
    rt.extras.setdefault("intake_settings", IntakeSettings())
    if rt.settings.demo:
        await demo.seed(rt)


def consumers(rt: Runtime) -> Sequence[ConsumerSpec]:
    async def handler(conn, env):  # type: ignore[no-untyped-def]
        await webhooks.on_dispatch_event(rt, conn, env)

    return [
        ConsumerSpec(
            name="intake-case-status",
            topics=[rt.topic("dispatch")],
            handler=handler,
            event_types=webhooks.CONSUMED,
            background=True,
        )
    ]


def background(rt: Runtime) -> Sequence[Callable[[], Awaitable[None]]]:
    jobs: list[Callable[[], Awaitable[None]]] = [lambda: webhooks.run_worker(rt)]
    if rt.settings.demo:
        jobs.append(lambda: demo.case_stream(rt))
    return jobs


DEFINITION = ServiceDefinition(
    name="intake",
    learns_revocations=False,  # it checks its own staff_tokens table on every request
    title="ClaimDesk Intake / 案件受理",
    description=(
        "Insurers entrust cases over HTTP (API key), agents register phone reports and "
        "consultations (first-contact ownership, 首问责任制), duplicates and discrepancies are "
        "recorded, required documents (单证) tracked, insurers notified by signed webhooks. "
        "Identity (insurer keys, staff tokens) is administered here."
    ),
    migrations=MIGRATIONS,
    routers=ROUTERS,
    consumers=consumers,
    background=background,
    on_start=on_start,
    openapi_tags=[
        {"name": "cases", "description": "Insurer cases / 委托案件"},
        {"name": "phone channel", "description": "Phone reports, consultations / 电话报案与咨询"},
        {"name": "discrepancies and documents", "description": "差错登记与单证"},
        {"name": "webhooks", "description": "Insurer notifications / 回调通知"},
        {"name": "identity", "description": "Insurer keys and staff tokens (admin) / 身份管理"},
    ],
)
