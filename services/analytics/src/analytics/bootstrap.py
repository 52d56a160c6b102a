"""Composition root of the analytics service."""

from __future__ import annotations

from datetime import timedelta

from claimdesk.auth import issue_token
from claimdesk.service import Runtime, ServiceDefinition

from analytics.api import router as api_router
from analytics.consumers import consumer_specs
from analytics.dashboard import background_jobs
from analytics.dashboard import router as dashboard_router
from analytics.rebuild import rebuild_if_version_changed
from analytics.reports import router as reports_router
from analytics.settings import AnalyticsSettings
from analytics.tables import MIGRATIONS


async def write_demo_credentials(runtime: Runtime) -> None:
    """Demo: a manager token that opens the dashboard and the reports, for the launcher."""
    s = runtime.settings
    if s.token_secret is None:
        return
    token, _ = issue_token(
        s.secret(),
        subject="M001",
        role="manager",
        now=runtime.clock.now(),
        ttl=timedelta(days=30),
        name="经理 M001",
        number="M001",
    )
    base = s.url("analytics")
    lines = [
        "# analytics: ops dashboard, statistics and the manager's reports",
        f"dashboard: {base}/?token={token}",
        f"daily report (printable): {base}/v1/reports/daily?format=html&token={token}",
        f"manager M001: {token}",
    ]
    s.data_dir.mkdir(parents=True, exist_ok=True)
    (s.data_dir / "credentials-analytics.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


async def on_start(runtime: Runtime) -> None:
    runtime.extras.setdefault("analytics_settings", AnalyticsSettings())
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
