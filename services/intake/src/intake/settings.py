"""Intake's own settings (CLAIMDESK_INTAKE_*), validated at start-up."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IntakeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLAIMDESK_INTAKE_", extra="ignore", frozen=True)

    demo_case_interval_s: float = Field(
        20.0, ge=0, description="demo mode: one generated case every N seconds (0: off)"
    )
    duplicate_window_s: int = Field(
        1800, ge=0, description="same plate, loss times this close: linked as a duplicate"
    )
    loss_time_skew_s: int = Field(
        60, ge=0, description="tolerated clock skew when rejecting a loss_time in the future"
    )
    webhook_max_attempts: int = Field(8, ge=1)
    webhook_backoff_s: float = Field(2.0, gt=0, description="first retry delay, doubled each time")
    webhook_backoff_max_s: float = Field(600.0, gt=0)
    webhook_timeout_s: float = Field(5.0, gt=0)
    webhook_poll_s: float = Field(0.2, gt=0)
    webhook_concurrency: int = Field(16, ge=1)
    page_size_max: int = Field(200, ge=1)
    webhook_allow_private: bool | None = Field(
        None,
        description="allow webhook URLs on loopback/private addresses (unset: all but in prod)",
    )
