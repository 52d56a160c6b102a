"""Settings of the complaints service (CLAIMDESK_COMPLAINTS_*)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ComplaintsSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLAIMDESK_COMPLAINTS_", extra="ignore", frozen=True
    )

    web_form_owner: str = Field(
        "A001", description="staff number owning complaints sent through the public web form"
    )
    web_form_per_hour: int = Field(5, ge=1, description="web form submissions per client per hour")
    callback_agents: list[str] = Field(
        ["A001"], min_length=1, description="agents whose queue receives scheduled callbacks"
    )
    callback_rate: float = Field(1.0, ge=0, le=1, description="default share of cases called back")
    callback_delay_s: float = Field(3600, ge=0, description="callback due this long after survey")
    callback_retry_s: float = Field(7200, gt=0, description="next try after an unreachable call")
    callback_max_attempts: int = Field(3, ge=1, description="tries before CallbackFailed")
