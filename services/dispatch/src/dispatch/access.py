"""Which surveyor tokens dispatch still accepts.

A surveyor's token is signed with its generation (`gen`). Rotating it
(`SurveyorTokenRotated`) raises the surveyor's generation, so every token of an earlier one,
however many were printed, is refused; a retired surveyor's tokens are all refused. Each
dispatch process holds the surveyors that have either (few) in memory, `Access`, which the
runtime's `token_check` consults on every request; the process that made the change updates it
at once, the others on their next read, every `REFRESH_S`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import asyncpg
from claimdesk.auth import Principal

if TYPE_CHECKING:
    from claimdesk.service import Runtime

log = logging.getLogger(__name__)

REFRESH_S = 2.0
RETIRED = -1  # in `Access.generations`: no token of this surveyor is accepted


class Access:
    def __init__(self) -> None:
        # surveyor id -> lowest accepted generation, or RETIRED; absent: every generation
        self.generations: dict[str, int] = {}

    def check(self, principal: Principal) -> str | None:
        """`Runtime.token_check`: the reason a surveyor token is refused, or None."""
        if principal.role != "surveyor":
            return None
        need = self.generations.get(principal.subject)
        if need is None:
            return None
        if need == RETIRED:
            return "surveyor retired"
        if principal.token_generation < need:
            return "token revoked (the surveyor's token was rotated)"
        return None

    def note(
        self, surveyor_id: str, *, generation: int | None = None, retired: bool = False
    ) -> None:
        """What this process just committed, effective before the next refresh."""
        if retired:
            self.generations[surveyor_id] = RETIRED
        elif generation is not None and self.generations.get(surveyor_id) != RETIRED:
            self.generations[surveyor_id] = generation

    async def load(self, conn: asyncpg.Connection) -> None:
        """Merge the table into what is held: generations only rise and retirement is final, so
        a read that began before this process's own change committed cannot undo its `note`."""
        rows = await conn.fetch(
            "SELECT surveyor_id, token_generation, retired FROM surveyors "
            "WHERE retired OR token_generation > 0"
        )
        held = self.generations
        merged = dict(held)
        for r in rows:
            sid = r["surveyor_id"]
            if r["retired"] or held.get(sid) == RETIRED:
                merged[sid] = RETIRED
            else:
                merged[sid] = max(r["token_generation"], held.get(sid, 0))
        self.generations = merged


def install(rt: Runtime) -> Access:
    access = rt.extras.get("access")
    if not isinstance(access, Access):
        access = rt.extras["access"] = Access()
    rt.token_check = access.check
    return access


def of(rt: Runtime) -> Access | None:
    access = rt.extras.get("access")
    return access if isinstance(access, Access) else None


async def keep_fresh(rt: Runtime, access: Access) -> None:
    """Re-read the table every REFRESH_S (other replicas' rotations and retirements)."""
    while True:
        await asyncio.sleep(REFRESH_S)
        try:
            async with rt.pool.acquire() as conn:
                await access.load(conn)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("surveyor token generations not refreshed", extra={"cd_error": repr(exc)})
