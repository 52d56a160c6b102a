"""The fold's consumer group with two members (two analytics replicas, as the prod overlay
runs): aiokafka's assignor (round-robin over all the group's partitions) deals them the
partitions of its three topics evenly, and together they fold the same tables as one pass
over the whole history (`docs/analytics.md`, "Scaling the fold"). Where two folds meet on a
row, see test_concurrent_fold."""

from __future__ import annotations

import asyncio
from typing import Any

from analytics.bootstrap import DEFINITION
from analytics.consumers import consumer_specs
from analytics.settings import AnalyticsSettings
from analytics.tables import MIGRATIONS
from claimdesk.clock import SystemClock
from claimdesk.consumer import EventConsumer
from claimdesk.db import CORE_MIGRATIONS, create_pool, migrate
from claimdesk.kafka import ensure_topics
from claimdesk.service import Runtime
from claimdesk.testing.plugin import eventually, make_settings

from tests.integration.analytics.test_pipelined_fold import rebuilt, snapshot, stop, stored_all
from tests.integration.analytics.workload import producers, random_workload


def _evenly_split(members: list[EventConsumer], partitions: int) -> bool:
    held = [m.stats.assigned for m in members]
    union = set().union(*held)
    return all(held) and len(union) == partitions == sum(len(h) for h in held)


async def test_two_members_share_the_topics_evenly_and_fold_what_one_pass_folds(
    pg_url: str, kafka_bootstrap: str, names: dict[str, str]
) -> None:
    # Three partitions per topic: a range assignor (topic by topic, the Java client's default)
    # would give two members 6 and 3 of the 9.
    settings = make_settings(pg_url, kafka_bootstrap, names, kafka_partitions=3)
    assert settings.database_url
    await ensure_topics(settings)
    runtime = Runtime(DEFINITION, settings, SystemClock())
    pool = await create_pool(settings.database_url, runtime.schema, min_size=1, max_size=4)
    async with pool.acquire() as conn:
        await migrate(conn, runtime.schema, [*CORE_MIGRATIONS, *MIGRATIONS])
    members: list[EventConsumer] = []
    tasks: list[asyncio.Task[Any]] = []
    try:
        for _ in range(2):
            spec = consumer_specs(runtime)[0]
            spec.group_id = f"{settings.topic_prefix}fold-members"
            members.append(runtime.event_consumer(spec, pool))
        tasks = [asyncio.create_task(m.run()) for m in members]
        await eventually(lambda: _evenly_split(members, 9), timeout=60)
        assert sorted(len(m.stats.assigned) for m in members) == [4, 5]

        async with producers(settings) as p:
            await random_workload(p, cases=60)

            await eventually(lambda: stored_all(pool, p.appended), timeout=60)
            assert _evenly_split(members, 9)  # no rebalance moved the work to one member
            assert all(m.stats.handled > 0 for m in members)
            assert sum(m.stats.handled for m in members) == p.appended
            live = await snapshot(pool)
        assert await rebuilt(pool, settings, runtime) == live
    finally:
        await stop(tasks, pool)


def test_the_fold_takes_its_batch_size_from_the_analytics_settings(
    settings: Any, monkeypatch: Any
) -> None:
    runtime = Runtime(DEFINITION, settings, SystemClock())
    assert consumer_specs(runtime)[0].max_records == AnalyticsSettings().fold_batch == 5000
    monkeypatch.setenv("CLAIMDESK_ANALYTICS_FOLD_BATCH", "250")
    assert consumer_specs(Runtime(DEFINITION, settings, SystemClock()))[0].max_records == 250
