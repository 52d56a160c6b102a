"""Composition root of the analytics service."""

from __future__ import annotations

from claimdesk.service import Runtime, ServiceDefinition

from analytics.api import router as api_router
from analytics.consumers import consumer_specs, tune_gc
from analytics.dashboard import background_jobs
from analytics.dashboard import router as dashboard_router
from analytics.rebuild import rebuild_if_version_changed
from analytics.reports import router as reports_router
from analytics.settings import AnalyticsSettings
from analytics.tables import MIGRATIONS


async def write_demo_credentials(runtime: Runtime) -> None:
    """Demo: where the dashboard and reports are, for the launcher. Staff identities belong to
    intake; its list carries the manager token (M001) these pages take as `?token=`."""
    base = runtime.settings.url("analytics")
    lines = [
        "# analytics: add ?token=<a staff token from intake's list, e.g. manager M001>",
        f"ops dashboard   : {base}/",
        f"daily report    : {base}/v1/reports/daily?format=html",
    ]
    runtime.settings.data_dir.mkdir(parents=True, exist_ok=True)
    (runtime.settings.data_dir / "credentials-analytics.txt").write_text(
        "\n".join(lines) + "\n", encoding="utf-8"
    )


async def on_start(runtime: Runtime) -> None:
    runtime.extras.setdefault("analytics_settings", AnalyticsSettings())
    tune_gc()
    await rebuild_if_version_changed(runtime)
    if runtime.settings.demo:
        await write_demo_credentials(runtime)


DEFINITION = ServiceDefinition(
    name="analytics",
    title="ClaimDesk Analytics",
    description=(
        "Folds every event of intake, dispatch and complaints into statistics (数据统计), "
        "surveyor evaluation (考核监督), case history with as-of state, the ops dashboard and "
        "the manager's reports. Publishes nothing."
    ),
    migrations=MIGRATIONS,
    routers=[api_router, reports_router, dashboard_router],
    consumers=consumer_specs,
    background=background_jobs,
    on_start=on_start,
    openapi_tags=[
        {"name": "statistics", "description": "Statistics tables (数据统计, 考核监督)"},
        {"name": "history", "description": "Every event of a case, and its state as of a time"},
        {"name": "reports", "description": "The manager's daily, weekly and monthly reports"},
        {"name": "dashboard", "description": "The live ops dashboard"},
    ],
)
