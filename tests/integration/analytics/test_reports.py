"""The manager's reports over real folded data: anomaly flag, weekly figures, monthly per team."""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime, timedelta

from analytics.bootstrap import DEFINITION
from claimdesk.auth import issue_token
from claimdesk.events import complaints as ce
from claimdesk.events import dispatch as de
from claimdesk.settings import Settings
from claimdesk.testing.plugin import TEST_ADMIN, TEST_SECRET, eventually

from tests.integration.analytics.workload import case_reported, producers, register_surveyors

DAY = datetime(2026, 10, 28, 2, 0, tzinfo=UTC)  # Wednesday 10:00 in Shanghai


def token(role: str) -> str:
    return issue_token(
        TEST_SECRET, subject=f"u-{role}", role=role, now=datetime.now(UTC), ttl=timedelta(hours=1)
    )[0]  # type: ignore[arg-type]


async def test_reports(settings: Settings, start_service) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(5)
    async with start_service(DEFINITION) as svc, producers(settings) as p:
        n = 0
        # Four earlier Wednesdays with 3..5 PICC cases and 2 CPIC cases; then a burst of 15 PICC.
        for weeks_back, picc in ((4, 3), (3, 5), (2, 4), (1, 4), (0, 15)):
            day = DAY - timedelta(days=7 * weeks_back)
            for i in range(picc + 2):
                cid = f"R{weeks_back}-{i}"
                ins = "PICC" if i < picc else "CPIC"
                await p.append(
                    "intake", f"case-{cid}", [case_reported(cid, rng, insurer_code=ins)],
                    day + timedelta(minutes=i),
                )  # fmt: skip
                n += 1
        await register_surveyors(p, 2)
        n += 2
        for i, (sid, sat) in enumerate((("S000", 5), ("S000", 4), ("S001", 1))):
            cid, job = f"R0-{i}", f"J{i}"
            at = DAY + timedelta(minutes=i)
            steps = [
                de.SurveyorAssigned(job_id=job, case_id=cid, surveyor_id=sid, policy_version="v",
                                    reason="r", ack_due_at=at + timedelta(minutes=5)),
                de.JobAcknowledged(job_id=job, case_id=cid, surveyor_id=sid),
                de.SurveyorArrived(job_id=job, case_id=cid, surveyor_id=sid),
                de.SurveyCompleted(job_id=job, case_id=cid, surveyor_id=sid),
            ]  # fmt: skip
            for k, e in enumerate(steps):
                await p.append("dispatch", f"job-{job}", [e], at + timedelta(minutes=2 + 30 * k))
            await p.append(
                "complaints", f"cb-{i}",
                [ce.CallbackScheduled(callback_id=f"B{i}", case_id=cid, surveyor_id=sid, owner="A2",
                                      due_at=at + timedelta(days=1)),
                 ce.CallbackCompleted(callback_id=f"B{i}", case_id=cid, surveyor_id=sid,
                                      satisfaction=sat, reasons=["慢"] if sat < 3 else [], agent="A2")],
                at + timedelta(hours=3),
            )  # fmt: skip
            n += 6
        await eventually(lambda: _count(svc, n), timeout=30)
        h = svc.admin_headers()

        r = await svc.client.get("/v1/reports/daily?date=2026-10-28", headers=h)
        daily = r.json()
        assert daily["total"] == 17 and daily["anomaly"]["flag"] == "high"
        by_ins = {x["insurer_code"]: x for x in daily["per_insurer"]}
        assert by_ins["PICC"]["anomaly"]["flag"] == "high" and by_ins["PICC"]["anomaly"][
            "range"
        ] == [3, 5]
        assert by_ins["CPIC"]["anomaly"]["flag"] is None and by_ins["CPIC"]["count"] == 2
        assert by_ins["PICC"]["same_weekday_last_week"] == 4
        assert [t["count"] for t in daily["trend"]] == [6, 0, 0, 0, 0, 0, 0, 17]
        normal = (await svc.client.get("/v1/reports/daily?date=2026-10-21", headers=h)).json()
        assert normal["anomaly"]["flag"] is None  # 6 within the earlier 5..7 (3 weeks known)

        r = await svc.client.get("/v1/reports/daily?date=2026-10-28&format=csv", headers=h)
        assert r.headers["content-type"].startswith("text/csv")
        text = r.text.lstrip("\ufeff")
        assert "# per_insurer" in text and "anomaly_flag" in text and "# trend" in text
        r = await svc.client.get(
            f"/v1/reports/daily?date=2026-10-28&format=html&token={TEST_ADMIN}"
        )
        assert r.status_code == 200 and "<table>" in r.text and "print()" in r.text

        weekly = (await svc.client.get("/v1/reports/weekly?week=2026-W44", headers=h)).json()
        assert weekly["from"] == "2026-10-26" and weekly["cases"] == 17
        assert weekly["cases_previous_week"] == 6 and weekly["callbacks"] == 3
        assert weekly["callbacks_reached_share"] == 1.0 and weekly["jobs"] == 3
        assert weekly["callback_avg_satisfaction"] == round(10 / 3, 2)
        same = (await svc.client.get("/v1/reports/weekly?date=2026-10-30", headers=h)).json()
        assert same["week"] == "2026-W44"

        cb = (await svc.client.get("/v1/reports/monthly/callbacks?month=2026-10", headers=h)).json()
        teams = {t["team"]: t for t in cb["per_team"]}
        assert teams["T0"]["reached"] == 2 and teams["T0"]["avg_satisfaction"] == 4.5
        assert teams["T1"]["s1"] == 1
        assert cb["top_dissatisfaction_reasons"] == [{"reason": "慢", "n": 1}]

        q = (await svc.client.get("/v1/reports/monthly/quality?month=2026-10", headers=h)).json()
        teams = {t["team"]: t for t in q["per_team"]}
        assert teams["T0"]["completed"] == 2 and teams["T0"]["on_time_rate"] == 1.0
        assert teams["T0"]["avg_score"] > teams["T1"]["avg_score"]
        r = await svc.client.get("/v1/reports/monthly/quality?month=2026-10&format=csv", headers=h)
        rows = list(csv.reader(io.StringIO(r.text.lstrip("\ufeff"))))
        assert ["# per_team"] in rows

        # Roles and bad input.
        agent = {"Authorization": f"Bearer {token('agent')}"}
        assert (await svc.client.get("/v1/reports/daily", headers=agent)).status_code == 403
        assert (await svc.client.get("/v1/stats/cases", headers=agent)).status_code == 200
        manager = {"Authorization": f"Bearer {token('manager')}"}
        assert (await svc.client.get("/v1/reports/daily", headers=manager)).status_code == 200
        assert (await svc.client.get("/v1/reports/weekly?week=48", headers=h)).status_code == 422
        assert (
            await svc.client.get("/v1/reports/monthly/callbacks?month=2026-13", headers=h)
        ).status_code == 422
        assert (
            await svc.client.get("/v1/reports/daily?date=yesterday", headers=h)
        ).status_code == 422
        assert (await svc.client.get("/v1/reports/daily?token=bad")).status_code == 401


async def _count(svc, n: int) -> bool:  # type: ignore[no-untyped-def]
    async with svc.runtime.pool.acquire() as conn:
        return bool(await conn.fetchval("SELECT count(*) FROM case_events") == n)


def test_openapi_documents_every_endpoint(settings: Settings) -> None:
    from claimdesk.service import build_app

    app = build_app(DEFINITION, settings)
    spec = app.openapi()
    ours = {p: ops for p, ops in spec["paths"].items() if p.startswith("/v1") or p == "/"}
    assert len(ours) >= 14
    for path, ops in ours.items():
        for op in ops.values():
            assert op.get("summary") and op.get("description"), path
    stats = spec["paths"]["/v1/stats/cases"]["get"]
    assert "examples" in str(spec["components"]["schemas"]["StatsResponse"])
    assert "text/csv" in stats["responses"]["200"]["content"]
