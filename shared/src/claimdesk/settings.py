"""Typed settings, read from CLAIMDESK_* environment variables and validated at start-up.

A bad value ends the process with one line that names the setting (see `load_settings`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from claimdesk import SERVICES

DEFAULT_PORTS = {"intake": 8001, "dispatch": 8002, "complaints": 8003, "analytics": 8004}
_WEAK_SECRETS = {"", "changeme", "secret", "admin", "password", "dev"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLAIMDESK_", extra="ignore", frozen=True)

    environment: Literal["dev", "test", "prod"] = "dev"
    host: str = "127.0.0.1"
    intake_port: int = Field(DEFAULT_PORTS["intake"], ge=1, le=65535)
    dispatch_port: int = Field(DEFAULT_PORTS["dispatch"], ge=1, le=65535)
    complaints_port: int = Field(DEFAULT_PORTS["complaints"], ge=1, le=65535)
    analytics_port: int = Field(DEFAULT_PORTS["analytics"], ge=1, le=65535)
    kafka_port: int = Field(19092, ge=1, le=65535, description="embedded broker port")
    # Where other services reach a service (containers, Kubernetes); unset: host and port above.
    intake_url: str | None = None
    dispatch_url: str | None = None
    complaints_url: str | None = None
    analytics_url: str | None = None

    database_url: str | None = Field(None, description="external Postgres; unset: embedded")
    kafka_bootstrap: str | None = Field(None, description="external Kafka; unset: embedded Tansu")
    data_dir: Path = Path(".data")
    demo: bool = True

    # Names: tests give every run its own schemas and topics.
    schema_prefix: str = Field("", pattern=r"^[a-z0-9_]*$")
    topic_prefix: str = Field("", pattern=r"^[A-Za-z0-9._-]*$")

    admin_token: SecretStr | None = None
    token_secret: SecretStr | None = None
    token_ttl_s: int = Field(30 * 24 * 3600, gt=0)

    db_pool_min: int = Field(1, ge=0)
    db_pool_max: int = Field(10, ge=1)

    kafka_partitions: int = Field(3, ge=1)
    kafka_replication_factor: int = Field(1, ge=1)
    kafka_enable_idempotence: bool = False  # Tansu cannot; real Kafka should (True in prod)
    kafka_session_timeout_ms: int = Field(2000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(300, ge=100)
    # Tansu answers a fetch only when this wait ends (data arriving meanwhile does not wake it),
    # so aiokafka's 500 ms default added ~120 ms p50 to every produce->consume; Kafka itself
    # returns as soon as data is there, so a larger value costs nothing there.
    kafka_fetch_max_wait_ms: int = Field(20, ge=1, le=5000)
    # The same for consumers whose effects may trail by a fraction of a second (ConsumerSpec
    # `background`: case status and insurer webhooks at intake, complaints). Fewer fetches:
    # the embedded Tansu's cost per fetch grows with the batches its in-memory log holds.
    kafka_background_fetch_max_wait_ms: int = Field(250, ge=1, le=5000)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None

    relay_batch_size: int = Field(500, ge=1)
    relay_poll_s: float = Field(0.02, gt=0)
    consumer_max_attempts: int = Field(5, ge=1)
    consumer_batch_size: int = Field(500, ge=1)
    timer_poll_s: float = Field(0.2, gt=0)
    timer_keep_fired_days: float = Field(
        7.0, gt=0, description="fired timers are deleted this long after they fired"
    )
    # Freeze the start-up heap out of the garbage collector's way (claimdesk.service); off in
    # the test harness, where many services start and stop in one process.
    gc_freeze: bool = True

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _secrets_in_production(self) -> Settings:
        if self.environment == "prod":
            for name in ("admin_token", "token_secret"):
                value = getattr(self, name)
                env = f"CLAIMDESK_{name.upper()}"
                if value is None or value.get_secret_value() in _WEAK_SECRETS:
                    raise ValueError(f"{env} must be set to a strong secret in production")
                if len(value.get_secret_value()) < 24:
                    raise ValueError(f"{env} must be at least 24 characters in production")
        return self

    def port(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    def schema_name(self, service: str) -> str:
        return f"{self.schema_prefix}{service}"

    def topic(self, context: str) -> str:
        return f"{self.topic_prefix}claimdesk.{context}"

    def url(self, service: str) -> str:
        override = getattr(self, f"{service}_url", None)
        if override:
            return str(override).rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port(service)}"

    def secret(self) -> str:
        if self.token_secret is None:
            raise RuntimeError("CLAIMDESK_TOKEN_SECRET is not set")
        return self.token_secret.get_secret_value()


def describe_error(exc: ValidationError) -> str:
    """One line naming the first bad setting, as the environment variable a user sets."""
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if p != "__root__"]
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if not loc:
        return f"invalid settings: {msg}"
    return f"invalid setting CLAIMDESK_{loc[0].upper()}: {msg}"


def load_settings(**overrides: object) -> Settings:
    """Read settings; on a bad value print one clear line and exit with status 2."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        sys.stderr.write(f"claimdesk: {describe_error(exc)}\n")
        raise SystemExit(2) from None


__all__ = ["DEFAULT_PORTS", "SERVICES", "Settings", "describe_error", "load_settings"]
