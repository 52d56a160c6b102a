"""The roster the policy reads, kept in memory and brought up to date with one small query.

Every decision needs every surveyor (320 rows in the bench, ~60 in the demo) with their current
load. Reading and converting all of them per case was most of dispatch's CPU per case. Each
surveyor row records the transaction that last wrote it (`changed_tx`, set by a trigger, so
no code path can forget it), and a refresh reads only rows whose writer is not yet known to
be visible, in the same statement as the snapshot's xmin:

- every transaction that commits after our read has an id >= that read's xmin (it was
  running then, or started later), so `changed_tx >= previous xmin` misses nothing; rows
  seen again are simply replaced;
- the transaction that read may roll back (a failed consumer batch) after reading its own
  uncommitted writes: the next refresh asks Postgres whether that transaction committed
  and reloads everything when it did not;
- a new local day reloads everything (`assigned_today` counts from local midnight).

Another dispatch process's writes are seen like any other transaction's, so two processes
side by side stay correct; decisions still serialise on the assignment lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

import asyncpg

from dispatch import policy

_COLUMNS = """surveyor_id, team, skills, regions, lat, lon, capacity, available, retired,
              shift_override, shifts, open_jobs,
              CASE WHEN today_start = $1 THEN assigned_today ELSE 0 END AS today"""

# The head of every row also carries what decisions read besides the roster (the insurers'
# preferences, the acknowledgement deadlines, which of the cases already have a job): one
# round trip for both.
_REFRESH = f"""
WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin,
                  pg_current_xact_id_if_assigned() AS me,
                  CASE WHEN $3::xid8 IS NULL THEN NULL ELSE pg_xact_status($3::xid8) END
                      AS previous_reader,
                  (SELECT array_agg(case_id) FROM jobs WHERE case_id = ANY($5::text[]))
                      AS dups,
                  (SELECT value FROM dispatch_config WHERE key = 'ack_timeouts') AS cfg,
                  (SELECT jsonb_agg(jsonb_build_object(
                              'insurer_code', insurer_code, 'preferred_teams', preferred_teams,
                              'preferred_surveyors', preferred_surveyors,
                              'avoided_surveyors', avoided_surveyors))
                   FROM insurer_prefs WHERE insurer_code = ANY($4::text[])) AS prefs)
SELECT h.xmin, h.me, h.previous_reader, h.dups, h.cfg, h.prefs, s.*
FROM h LEFT JOIN LATERAL (
    SELECT {_COLUMNS} FROM surveyors WHERE $2::xid8 IS NULL OR changed_tx >= $2::xid8
) s ON true
"""


def parse_shifts(raw: list[dict[str, Any]]) -> tuple[policy.Shift, ...]:
    return tuple(
        policy.Shift(
            days=tuple(s.get("days", range(7))),
            start=time.fromisoformat(s["start"]),
            end=time.fromisoformat(s["end"]),
        )
        for s in raw
    )


def local_day_start(now: datetime) -> datetime:
    local = now.astimezone(policy.LOCAL_TZ)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def policy_view(r: asyncpg.Record) -> policy.SurveyorView:
    """What the policy knows of a surveyor row (with its `today` count)."""
    return policy.SurveyorView(
        surveyor_id=r["surveyor_id"],
        team=r["team"],
        skills=frozenset(r["skills"]),
        regions=frozenset(r["regions"]),
        lat=r["lat"],
        lon=r["lon"],
        capacity=r["capacity"],
        open_jobs=r["open_jobs"],
        assigned_today=r["today"],
        available=r["available"],
        shift_override=r["shift_override"],
        shifts=parse_shifts(r["shifts"]) if r["shifts"] else (),
    )


@dataclass
class RosterCache:
    views: dict[str, policy.SurveyorView] = field(default_factory=dict)
    horizon: int | None = None  # xmin of the last read: rows written from here on may be new
    reader: int | None = None  # the transaction of the last read, when it had written
    day: datetime | None = None
    full_reads: int = 0
    rows_read: int = 0

    async def load(self, conn: asyncpg.Connection, now: datetime) -> list[policy.SurveyorView]:
        """The non-retired roster as of `conn`'s transaction."""
        return (await self.load_with(conn, now))[0]

    async def load_with(
        self,
        conn: asyncpg.Connection,
        now: datetime,
        insurers: Sequence[str] = (),
        case_ids: Sequence[str] = (),
    ) -> tuple[list[policy.SurveyorView], asyncpg.Record]:
        """The roster, and in the same round trip a row with the decisions' context:
        `dups` (those of `case_ids` that have a job, or None), `cfg` (the acknowledgement
        deadlines' configuration) and `prefs` (a list of {insurer_code, preferred_teams,
        preferred_surveyors, avoided_surveyors} for those of `insurers` that have any)."""
        day = local_day_start(now)
        incremental = self.horizon is not None and day == self.day
        insurers, case_ids = list(insurers), list(case_ids)
        rows = await conn.fetch(
            _REFRESH, day, self.horizon if incremental else None, self.reader, insurers, case_ids
        )
        head = rows[0]
        me = head["me"]
        if (
            incremental
            and head["previous_reader"] not in (None, "committed")
            and (me is None or int(me) != self.reader)
        ):
            # the last read saw writes of a transaction that did not commit: start over
            incremental = False
            rows = await conn.fetch(_REFRESH, day, None, None, insurers, case_ids)
            head = rows[0]
        if not incremental:
            self.views = {}
            self.full_reads += 1
        for r in rows:
            if r["surveyor_id"] is None:  # no changed rows: the lateral join's empty side
                continue
            self.rows_read += 1
            if r["retired"]:
                self.views.pop(r["surveyor_id"], None)
            else:
                self.views[r["surveyor_id"]] = policy_view(r)
        self.horizon = int(head["xmin"])
        self.reader = int(me) if me is not None else None
        self.day = day
        return list(self.views.values()), head
