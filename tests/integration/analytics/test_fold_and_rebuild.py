"""The analytics fold over real topics: statistics, history, idempotency, rebuild equality."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from analytics.bootstrap import DEFINITION
from analytics.consumers import fold_config
from analytics.rebuild import rebuild
from analytics.settings import AnalyticsSettings
from analytics.tables import ALL_TABLES
from claimdesk.kafka import make_producer
from claimdesk.outbox import republish
from claimdesk.settings import Settings
from claimdesk.testing.plugin import eventually

from tests.integration.analytics.workload import producers, random_workload, unknown_envelope


async def count_events(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM case_events"))


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    async with pool.acquire() as conn:
        for t in ALL_TABLES:
            cols = ", ".join(t.column_names)
            rows = await conn.fetch(f"SELECT {cols} FROM {t.name}")
            out[t.name] = sorted(tuple(map(repr, r.values())) for r in rows)
    return out


async def publish_unknown(settings: Settings, case_id: str) -> None:
    producer = make_producer(settings, "t-future")
    await producer.start()
    try:
        env = unknown_envelope(case_id)
        await producer.send_and_wait(
            settings.topic("intake"), json.dumps(env).encode(), key=case_id.encode()
        )
    finally:
        await producer.stop()


async def test_fold_stats_history_redelivery_and_rebuild(settings: Settings, start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc, producers(settings) as p:
        pool = svc.runtime.pool
        h = svc.admin_headers()
        case_ids = await random_workload(p, cases=40)
        await publish_unknown(settings, case_ids[0])
        expected = p.appended + 1
        await eventually(lambda: count_events(pool), timeout=30)
        await eventually(lambda: _equals(count_events(pool), expected), timeout=30)

        # Case volume: every case counted once per granularity, whatever corrections did.
        async with p.pools["intake"].acquire() as conn:
            truth = await conn.fetch(
                "SELECT stream_id, event_type, payload FROM events ORDER BY global_position"
            )
        insurer_of: dict[str, str] = {}
        for r in truth:
            pl = r["payload"]
            if r["event_type"] == "CaseReported":
                insurer_of[pl["case_id"]] = pl["insurer_code"]
            elif r["event_type"] == "CaseDetailsCorrected" and "insurer_code" in pl["changes"]:
                insurer_of[pl["case_id"]] = pl["changes"]["insurer_code"]
        for g in ("day", "week", "month"):
            r = await svc.client.get(f"/v1/stats/cases?granularity={g}", headers=h)
            assert r.status_code == 200, r.text
            assert sum(row["count"] for row in r.json()["rows"]) == len(case_ids)
        r = await svc.client.get(
            "/v1/stats/cases?granularity=week&insurer=PICC&by=insurer_code", headers=h
        )
        rows = r.json()["rows"]
        assert sum(x["count"] for x in rows) == sum(1 for v in insurer_of.values() if v == "PICC")
        assert all(
            "-W" in x["period"] and set(x) == {"period", "period_start", "insurer_code", "count"}
            for x in rows
        )

        # Dispatch percentiles are ordered and counted per day and insurer.
        r = await svc.client.get("/v1/stats/dispatch", headers=h)
        rows = r.json()["rows"]
        assert sum(x["jobs"] for x in rows) > 20
        for x in rows:
            vals = [x[f"to_assignment_{q}_s"] for q in ("p50", "p90", "p99")]
            assert vals[0] <= vals[1] <= vals[2]
            assert 60 <= vals[0] <= 600  # assigned 1..10 minutes after the report
        assert sum(x["timeouts"] + x["declines"] for x in rows) == sum(
            x["reassignments"] for x in rows
        )

        r = await svc.client.get("/v1/stats/surveyors", headers=h)
        ranked = r.json()["rows"]
        assert {x["surveyor_id"] for x in ranked} == {"S000", "S001", "S002", "S003"}
        assert [x["rank"] for x in ranked] == [1, 2, 3, 4]
        assert all(x["score"] is None or 0 <= x["score"] <= 100 for x in ranked)
        assert sum(x["assigned"] for x in ranked) == sum(
            x["jobs"] + x["reassignments"] for x in await _rows(svc, "/v1/stats/dispatch")
        )
        for path in ("complaints", "callbacks", "discrepancies"):
            r = await svc.client.get(f"/v1/stats/{path}", headers=h)
            assert r.status_code == 200 and r.json()["rows"], path
        r = await svc.client.get("/v1/stats/callbacks?format=csv", headers=h)
        assert r.headers["content-type"].startswith("text/csv")
        assert "reached_share" in r.text.splitlines()[0]

        # History of a case from every service, in order; the unknown type is kept, not fatal.
        r = await svc.client.get(f"/v1/cases/{case_ids[0]}/history", headers=h)
        hist = r.json()
        types = [e["type"] for e in hist["events"]]
        assert types[0] == "CaseReported" and "SomethingNewHappened" in types
        assert [e["occurred_at"] for e in hist["events"]] == sorted(
            e["occurred_at"] for e in hist["events"]
        )
        unknown = next(e for e in hist["events"] if e["type"] == "SomethingNewHappened")
        assert unknown["known_type"] is False and unknown["actor"] == "agent:A009"
        assert unknown["payload"]["novelty"] == "a field nobody knows"
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0

        # Redelivery of everything (a republish) changes nothing.
        before = await snapshot(pool)
        producer = make_producer(settings, "t-republish")
        await producer.start()
        try:
            for ctx in ("intake", "dispatch", "complaints"):
                await republish(p.pools[ctx], p.stores[ctx], producer, service=ctx)
        finally:
            await producer.stop()
        consumer = svc.runtime.consumers[0]
        await eventually(lambda: consumer.stats.skipped_duplicates >= p.appended, timeout=30)
        assert await snapshot(pool) == before

        # Rebuild from Kafka and from the stores: row for row what the live fold built.
        cfg = fold_config(AnalyticsSettings())
        result = await rebuild(pool, settings, cfg, source="kafka")
        assert result.events >= expected
        assert await snapshot(pool) == before
        result = await rebuild(pool, settings, cfg, source="stores")
        assert result.events == p.appended and result.caught_up == 1  # the unknown one
        assert await snapshot(pool) == before
        # In worker processes, one group of contexts each: the same tables.
        result = await rebuild(pool, settings, cfg, source="stores", workers=3)
        assert result.events == p.appended and result.caught_up == 1
        assert await snapshot(pool) == before
        result = await rebuild(pool, settings, cfg, source="kafka", workers=2)
        assert result.events >= expected and result.caught_up == 0
        assert await snapshot(pool) == before

        # The live consumer keeps folding into the swapped-in tables.
        await random_workload(p, cases=3, seed=11)
        total = p.appended + 1
        await eventually(lambda: _equals(count_events(pool), total), timeout=30)
        r = await svc.client.get("/v1/stats/cases?granularity=month", headers=h)
        assert sum(row["count"] for row in r.json()["rows"]) == len(case_ids) + 3


async def _rows(svc: Any, path: str) -> list[dict[str, Any]]:
    r = await svc.client.get(path, headers=svc.admin_headers())
    return list(r.json()["rows"])


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def test_as_of_returns_the_case_as_it_stood(settings: Settings, start_service) -> None:  # type: ignore[no-untyped-def]
    import random

    from claimdesk.events import complaints as ce
    from claimdesk.events import dispatch as de

    from tests.integration.analytics.workload import case_reported

    async with start_service(DEFINITION) as svc, producers(settings) as p:
        h = svc.admin_headers()
        await p.append("intake", "case-X1", [case_reported("X1", random.Random(1))])
        await p.append(
            "dispatch",
            "job-J1",
            [
                de.SurveyorAssigned(
                    job_id="J1",
                    case_id="X1",
                    surveyor_id="S9",
                    policy_version="v1",
                    reason="nearest",
                    ack_due_at=datetime.now().astimezone() + timedelta(minutes=5),
                )
            ],
        )
        await p.append(
            "complaints",
            "complaint-Q1",
            [
                ce.ComplaintReceived(
                    complaint_id="Q1",
                    case_id="X1",
                    category="attitude",
                    severity="low",
                    channel="phone",
                    caller_name="李四",
                    caller_phone="139",
                    matter="态度差",
                    owner="A001",
                )
            ],
        )
        await eventually(lambda: _equals(count_events(svc.runtime.pool), 3), timeout=20)
        hist = (await svc.client.get("/v1/cases/X1/history", headers=h)).json()
        recorded = [datetime.fromisoformat(e["recorded_at"]) for e in hist["events"]]
        assert hist["state"]["status"] == "assigned" and hist["state"]["surveyor_id"] == "S9"
        assert [c["complaint_id"] for c in hist["state"]["open_complaints"]] == ["Q1"]
        first = min(recorded)
        r = await svc.client.get(
            "/v1/cases/X1/history", params={"as_of": first.isoformat()}, headers=h
        )
        then = r.json()
        assert [e["type"] for e in then["events"]] == ["CaseReported"]
        assert then["state"]["status"] == "reported" and then["state"]["surveyor_id"] is None
        assert then["state"]["open_complaints"] == []
        # Bad input: clear 4xx, never 500.
        assert (await svc.client.get("/v1/cases/nope/history", headers=h)).status_code == 404
        r = await svc.client.get("/v1/cases/X1/history?as_of=2026-11-26T14:05:00", headers=h)
        assert r.status_code == 422 and "offset" in r.json()["message"]
        r = await svc.client.get("/v1/cases/X1/history?as_of=yesterday", headers=h)
        assert r.status_code == 422
        r = await svc.client.get("/v1/stats/cases?granularity=year", headers=h)
        assert r.status_code == 422
        r = await svc.client.get("/v1/stats/cases?from=2026-11-20&to=2026-11-01", headers=h)
        assert r.status_code == 422 and "from" in r.json()["message"]
        r = await svc.client.get("/v1/stats/cases?by=colour", headers=h)
        assert r.status_code == 422
        assert (await svc.client.get("/v1/stats/cases")).status_code == 401


async def test_changed_projection_version_rebuilds_at_start(
    settings: Settings, start_service
) -> None:  # type: ignore[no-untyped-def]
    import random

    from tests.integration.analytics.workload import case_reported

    async with producers(settings) as p:
        async with start_service(DEFINITION) as svc:
            assert svc.runtime.extras["rebuild"]["state"] == "not needed"
            for i in range(5):
                await p.append("intake", f"case-V{i}", [case_reported(f"V{i}", random.Random(i))])
            await eventually(lambda: _equals(count_events(svc.runtime.pool), 5), timeout=20)
            async with svc.runtime.pool.acquire() as conn:
                await conn.execute(
                    "UPDATE analytics_meta SET value = '0' WHERE key = 'projection_version'"
                )
                await conn.execute(
                    "DELETE FROM case_counts"
                )  # as if the old code counted otherwise
        async with start_service(DEFINITION) as svc:
            await eventually(lambda: svc.runtime.extras["rebuild"]["state"] == "done", timeout=30)
            assert svc.runtime.extras["rebuild"]["from_version"] == 0
            r = await svc.client.get("/v1/stats/cases", headers=svc.admin_headers())
            assert sum(x["count"] for x in r.json()["rows"]) == 5


async def test_cli_rebuild_from_stores_and_demo_credentials(
    settings: Settings, start_service
) -> None:  # type: ignore[no-untyped-def]
    """The operator's path: the broker lost its log; `claimdesk analytics rebuild --source stores`."""
    import asyncio
    import os
    import sys

    demo = settings.model_copy(update={"demo": True})
    async with producers(settings, relay=False) as p, start_service(DEFINITION, demo) as svc:
        case_ids = await random_workload(p, cases=8, seed=3)
        creds = (demo.data_dir / "credentials-analytics.txt").read_text()
        assert f"{demo.url('analytics')}/v1/reports/daily?format=html" in creds
        assert "eyJ" not in creds  # no second set of staff identities: intake owns them
        assert await count_events(svc.runtime.pool) == 0  # nothing was relayed to Kafka
        env = {
            **os.environ,
            "CLAIMDESK_DATABASE_URL": settings.database_url or "",
            "CLAIMDESK_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
            "CLAIMDESK_SCHEMA_PREFIX": settings.schema_prefix,
            "CLAIMDESK_TOPIC_PREFIX": settings.topic_prefix,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "claimdesk.cli", "analytics", "rebuild", "--source", "stores",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert f"rebuilt analytics from stores: {p.appended} events read" in out.decode()
        assert await count_events(svc.runtime.pool) == p.appended
        r = await svc.client.get("/v1/stats/cases?granularity=month", headers=svc.admin_headers())
        assert sum(x["count"] for x in r.json()["rows"]) == len(case_ids)
        # The service answers on the swapped-in tables; the dashboard sees them too.
        snap = (await svc.client.get("/v1/dashboard/snapshot", headers=svc.admin_headers())).json()
        assert snap["feed"]
        r = await svc.client.get(
            "/v1/stats/surveyors", headers={**svc.admin_headers(), "Accept": "text/csv"}
        )
        assert r.headers["content-type"].startswith("text/csv") and "score" in r.text
