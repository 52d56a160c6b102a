"""A random but reproducible workload appended into the producing services' own stores."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from claimdesk.clock import SystemClock
from claimdesk.db import CORE_MIGRATIONS, create_pool, migrate
from claimdesk.events import complaints as ce
from claimdesk.events import dispatch as de
from claimdesk.events import intake as ie
from claimdesk.events.base import Event
from claimdesk.eventstore import EventStore
from claimdesk.kafka import ensure_topics, make_producer
from claimdesk.outbox import OutboxRelay
from claimdesk.settings import Settings

INSURERS = ["PICC", "PINGAN", "CPIC"]
LOSS = ["vehicle_own_damage", "vehicle_third_party", "injury", "property"]


class Producers:
    """Stores in the intake, dispatch and complaints schemas, each with a running relay."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pools: dict[str, asyncpg.Pool] = {}
        self.stores: dict[str, EventStore] = {}
        self.relays: dict[str, OutboxRelay] = {}
        self.tasks: list[asyncio.Task[Any]] = []
        self.appended = 0

    async def append(
        self, ctx: str, stream: str, events: list[Event], at: datetime | None = None
    ) -> None:
        async with self.pools[ctx].acquire() as conn:
            await self.stores[ctx].append(conn, stream, events, -1, occurred_at=at)
        self.appended += len(events)

    async def published(self) -> int:
        return sum(r.published for r in self.relays.values())


@contextlib.asynccontextmanager
async def producers(settings: Settings, relay: bool = True) -> AsyncIterator[Producers]:
    assert settings.database_url
    await ensure_topics(settings)
    p = Producers(settings)
    try:
        for ctx in ("intake", "dispatch", "complaints"):
            schema = settings.schema_name(ctx)
            pool = await create_pool(settings.database_url, schema, min_size=1, max_size=4)
            async with pool.acquire() as conn:
                await migrate(conn, schema, CORE_MIGRATIONS)
            p.pools[ctx] = pool
            p.stores[ctx] = EventStore(producer=ctx, clock=SystemClock(), topic_for=settings.topic)
            if relay:
                r = OutboxRelay(
                    pool,
                    lambda c=ctx: make_producer(settings, f"t-{c}-relay"),
                    topic_for=settings.topic,
                    service=ctx,
                    lock_key=f"relay:{schema}",
                    poll_s=0.01,
                )
                p.relays[ctx] = r
                p.tasks.append(asyncio.create_task(r.run()))
        yield p
    finally:
        for t in p.tasks:
            t.cancel()
        for t in p.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for pool in p.pools.values():
            await pool.close()


def case_reported(case_id: str, rng: random.Random, **kw: Any) -> ie.CaseReported:
    values: dict[str, Any] = {
        "case_id": case_id,
        "insurer_code": rng.choice(INSURERS),
        "channel": rng.choice(["insurer_api", "phone"]),
        "loss_type": rng.choice(LOSS),
        "loss_time": datetime(2026, 11, 20, 8, 30, tzinfo=UTC),
        "loss_address": "上海市浦东新区世纪大道 100 号",
        "region": rng.choice(["浦东", "徐汇", None]),
        "plate": "沪A12345",
    }
    values.update(kw)
    return ie.CaseReported(**values)


async def register_surveyors(p: Producers, n: int = 4) -> list[str]:
    ids = [f"S{i:03d}" for i in range(n)]
    for i, sid in enumerate(ids):
        await p.append(
            "dispatch",
            f"surveyor-{sid}",
            [
                de.SurveyorRegistered(
                    surveyor_id=sid,
                    name=f"查勘员{i}",
                    phone="13800000000",
                    team=f"T{i % 2}",
                    skills=["vehicle"],
                    base_lat=31.2,
                    base_lon=121.5,
                )
            ],
        )
    return ids


async def random_workload(p: Producers, cases: int, seed: int = 7) -> list[str]:
    """Cases through intake, dispatch, complaints and callbacks with random outcomes."""
    rng = random.Random(seed)
    surveyors = await register_surveyors(p)
    base = datetime.now(UTC) - timedelta(days=2)
    case_ids: list[str] = []
    for c in range(cases):
        cid = f"C{seed}-{c:04d}-{uuid.uuid4().hex[:4]}"
        case_ids.append(cid)
        t0 = base + timedelta(hours=rng.uniform(0, 40))
        await p.append("intake", f"case-{cid}", [case_reported(cid, rng)], t0)
        if rng.random() < 0.2:
            changes = {"loss_type": rng.choice(LOSS), "insurer_code": rng.choice(INSURERS)}
            await p.append(
                "intake",
                f"case-{cid}",
                [
                    ie.CaseDetailsCorrected(
                        case_id=cid, changes=changes, previous={}, corrected_by="A001", reason="x"
                    )
                ],
                t0 + timedelta(minutes=1),
            )
        if rng.random() < 0.15:
            await p.append(
                "intake",
                f"case-{cid}",
                [
                    ie.DiscrepancyRecorded(
                        case_id=cid,
                        discrepancy_id=f"D-{cid}",
                        field="plate",
                        phone_value="沪A1",
                        insurer_value="沪A2",
                        agent=rng.choice(["A001", "A002"]),
                    )
                ],
                t0 + timedelta(minutes=2),
            )
        if rng.random() < 0.1:
            await p.append(
                "intake",
                f"case-{cid}",
                [ie.CaseCancelled(case_id=cid, reason="withdrawn", cancelled_by="A001")],
                t0 + timedelta(minutes=3),
            )
            continue
        job = f"J-{cid}"
        sid = rng.choice(surveyors)
        t = t0 + timedelta(minutes=rng.uniform(1, 10))
        evs: list[tuple[Event, datetime]] = [
            (
                de.SurveyorAssigned(
                    job_id=job,
                    case_id=cid,
                    surveyor_id=sid,
                    policy_version="v1",
                    reason="nearest",
                    ack_due_at=t + timedelta(minutes=5),
                ),
                t,
            )
        ]
        if rng.random() < 0.25:
            t += timedelta(minutes=5)
            kind = rng.random()
            if kind < 0.5:
                evs.append(
                    (
                        de.AssignmentTimedOut(
                            job_id=job, case_id=cid, surveyor_id=sid, attempt=1, deadline=t
                        ),
                        t,
                    )
                )
            else:
                evs.append(
                    (de.JobDeclined(job_id=job, case_id=cid, surveyor_id=sid, reason="busy"), t)
                )
            new = rng.choice([s for s in surveyors if s != sid])
            evs.append(
                (
                    de.SurveyorReassigned(
                        job_id=job,
                        case_id=cid,
                        from_surveyor_id=sid,
                        to_surveyor_id=new,
                        attempt=2,
                        reason="timeout",
                        ack_due_at=t + timedelta(minutes=5),
                    ),
                    t,
                )
            )
            sid = new
        if rng.random() < 0.9:
            t += timedelta(minutes=rng.uniform(0.5, 4))
            evs.append((de.JobAcknowledged(job_id=job, case_id=cid, surveyor_id=sid), t))
            if rng.random() < 0.85:
                t += timedelta(minutes=rng.uniform(10, 90))
                evs.append((de.SurveyorArrived(job_id=job, case_id=cid, surveyor_id=sid), t))
                t += timedelta(minutes=rng.uniform(15, 80))
                evs.append((de.SurveyCompleted(job_id=job, case_id=cid, surveyor_id=sid), t))
        for e, at in evs:
            await p.append("dispatch", f"job-{job}", [e], at)
        if rng.random() < 0.3:
            comp = f"Q-{cid}"
            received = t + timedelta(hours=1)
            await p.append(
                "complaints",
                f"complaint-{comp}",
                [
                    ce.ComplaintReceived(
                        complaint_id=comp,
                        case_id=cid,
                        category="delay",
                        severity="medium",
                        channel="phone",
                        caller_name="张三",
                        caller_phone="13900000000",
                        matter="来得太慢",
                        surveyor_id=sid,
                        owner="A001",
                        promised_answer_at=received + timedelta(hours=4),
                    )
                ],
                received,
            )
            valid = rng.random() < 0.6
            await p.append(
                "complaints",
                f"complaint-{comp}",
                [
                    ce.ComplaintTriaged(
                        complaint_id=comp, case_id=cid, valid=valid, reason="x", triaged_by="TL1"
                    )
                ],
                received + timedelta(minutes=10),
            )
            if valid and rng.random() < 0.4:
                await p.append(
                    "complaints",
                    f"complaint-{comp}",
                    [
                        ce.ComplaintEscalated(
                            complaint_id=comp,
                            case_id=cid,
                            clock="answer",
                            level=1,
                            escalated_to="team_lead",
                            due_at=received + timedelta(hours=4),
                        )
                    ],
                    received + timedelta(hours=4),
                )
            if rng.random() < 0.7:
                await p.append(
                    "complaints",
                    f"complaint-{comp}",
                    [
                        ce.ComplaintResolved(
                            complaint_id=comp,
                            case_id=cid,
                            outcome="ok",
                            feedback_to_customer="ok",
                            resolved_by="TL1",
                        )
                    ],
                    received + timedelta(hours=rng.uniform(1, 6)),
                )
        if rng.random() < 0.5:
            cb = f"B-{cid}"
            at = t + timedelta(hours=2)
            await p.append(
                "complaints",
                f"callback-{cb}",
                [
                    ce.CallbackScheduled(
                        callback_id=cb,
                        case_id=cid,
                        surveyor_id=sid,
                        owner="A002",
                        due_at=at + timedelta(hours=24),
                    )
                ],
                at,
            )
            if rng.random() < 0.75:
                outcome: Event = ce.CallbackCompleted(
                    callback_id=cb,
                    case_id=cid,
                    surveyor_id=sid,
                    satisfaction=rng.randint(1, 5),
                    surveyor_rating=rng.randint(1, 5),
                    reasons=["慢"] if rng.random() < 0.3 else [],
                    agent="A002",
                )
            else:
                outcome = ce.CallbackFailed(
                    callback_id=cb, case_id=cid, attempts=3, last_reason="no answer"
                )
            await p.append("complaints", f"callback-{cb}", [outcome], at + timedelta(hours=1))
    return case_ids


def unknown_envelope(case_id: str) -> dict[str, Any]:
    """A published event of a type analytics does not know (another service's new event)."""
    now = datetime.now(UTC).isoformat()
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "SomethingNewHappened",
        "schema_version": 1,
        "stream_id": f"case-{case_id}",
        "sequence": 99,
        "occurred_at": now,
        "recorded_at": now,
        "producer": "intake",
        "correlation_id": str(uuid.uuid4()),
        "actor": "agent:A009",
        "key": case_id,
        "payload": {"case_id": case_id, "novelty": "a field nobody knows"},
    }
