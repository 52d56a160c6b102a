"""Analytics' own settings (CLAIMDESK_ANALYTICS_*)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AnalyticsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLAIMDESK_ANALYTICS_", extra="ignore")

    timezone: str = Field("Asia/Shanghai", description="days, weeks and months are counted here")
    on_time_arrival_minutes: int = Field(60, gt=0, description="arrival within this of assignment")
    complaint_default_answer_hours: int = Field(
        24, gt=0, description="answer due this long after receipt when no time was promised"
    )
    rebuild_on_version_change: bool = True
    fold_batch: int = Field(
        5000,
        ge=1,
        le=50_000,
        description=(
            "at most this many events per fold transaction. A batch fills only when the fold "
            "has a backlog (a catch-up, a burst); live, each fetch holds what arrived since the "
            "last one, so its size adds no delay. Larger batches cost less per event."
        ),
    )
