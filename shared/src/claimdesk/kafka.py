"""Kafka clients built from settings: the same code for the embedded Tansu broker and Apache Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from claimdesk import CONTEXTS
from claimdesk.settings import Settings

log = logging.getLogger(__name__)


def _security(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        import ssl

        out["ssl_context"] = ssl.create_default_context()
    if settings.kafka_sasl_mechanism:
        out["sasl_mechanism"] = settings.kafka_sasl_mechanism
        out["sasl_plain_username"] = settings.kafka_sasl_username
        out["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value()
            if settings.kafka_sasl_password
            else None
        )
    return out


def bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        raise RuntimeError(
            "CLAIMDESK_KAFKA_BOOTSTRAP is not set (make run sets it for the embedded broker)"
        )
    return settings.kafka_bootstrap


def make_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        linger_ms=2,
        request_timeout_ms=10000,
        **_security(settings),
    )


def make_consumer(
    settings: Settings, group_id: str | None, topics: Iterable[str] = (), **extra: Any
) -> AIOKafkaConsumer:
    opts: dict[str, Any] = {
        "bootstrap_servers": bootstrap(settings),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.kafka_session_timeout_ms,
        "heartbeat_interval_ms": settings.kafka_heartbeat_interval_ms,
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
        "max_poll_records": settings.consumer_batch_size,
        **_security(settings),
    }
    if group_id is not None:
        opts["rebalance_timeout_ms"] = max(settings.kafka_session_timeout_ms * 2, 5000)
    opts.update(extra)
    return AIOKafkaConsumer(*topics, **opts)


def all_topics(settings: Settings) -> list[str]:
    return [settings.topic(c) for c in CONTEXTS]


async def ensure_topics(settings: Settings, topics: Iterable[str] | None = None) -> None:
    """Create the context topics if missing (idempotent; several processes may race)."""
    wanted = list(topics or all_topics(settings))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(settings), **_security(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(t, settings.kafka_partitions, settings.kafka_replication_factor)
                        for t in missing
                    ]
                )
            for _ in range(50):  # metadata settles shortly after creation
                if set(missing) <= set(await admin.list_topics()):
                    break
                await asyncio.sleep(0.1)
    finally:
        await admin.close()
