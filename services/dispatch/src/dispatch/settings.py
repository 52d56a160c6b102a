"""Dispatch's own settings (CLAIMDESK_DISPATCH_*), validated at start-up."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DispatchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLAIMDESK_DISPATCH_", extra="ignore", frozen=True)

    ack_timeout_s: float = Field(300.0, gt=0, description="default acknowledgement deadline")
    max_attempts: int = Field(3, ge=1, description="assignments tried before 'call the team'")
    heartbeat_s: float = Field(15.0, gt=0, description="SSE heartbeat interval")
    webhook_max_attempts: int = Field(5, ge=1)
    webhook_backoff_s: float = Field(2.0, gt=0, description="first retry delay, doubled each try")
    sms_max_attempts: int = Field(3, ge=1)
    case_batch: int = Field(
        25,
        ge=1,
        le=1000,
        description="CaseReported per consumer transaction at most: a job reaches its surveyor "
        "only when the batch that assigned it commits",
    )
    retention_days: float = Field(
        7.0,
        ge=1,
        description="live-stream feed rows and assignment rows older than this are pruned (the "
        "events keep the whole history; a phone resuming from before the pruned rows gets a "
        "snapshot of its open jobs)",
    )
    prune_interval_s: float = Field(3600.0, gt=0, description="how often the pruning runs")
    consumer_group: str | None = Field(
        None, description="override the Kafka consumer group (default: per service)"
    )
    demo_surveyors: int = Field(60, ge=0, le=2000)
    demo_teams: int = Field(8, ge=1, le=50)
