"""Required documents (单证): checklist per insurer and loss type, configured or default."""

from __future__ import annotations

import json
import time
from functools import cache
from importlib import resources
from typing import Any

import asyncpg
from claimdesk.service import Runtime


@cache
def defaults() -> dict[str, dict[str, list[dict[str, str]]]]:
    text = resources.files("intake").joinpath("data/documents.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    data.pop("_comment", None)
    return data


def default_checklist(insurer_code: str, loss_type: str) -> list[dict[str, str]]:
    table = defaults()
    own = table.get(insurer_code, {}).get(loss_type)
    return list(own if own is not None else table["*"].get(loss_type, []))


async def checklist(
    conn: asyncpg.Connection, insurer_code: str, loss_type: str
) -> tuple[list[dict[str, str]], str]:
    """The items and where they came from: `configured` (stored) or `default` (data file)."""
    items = await conn.fetchval(
        "SELECT items FROM document_checklists WHERE insurer_code = $1 AND loss_type = $2",
        insurer_code,
        loss_type,
    )
    if items is not None:
        return list(items), "configured"
    return default_checklist(insurer_code, loss_type), "default"


CACHE_TTL_S = 5.0


async def cached_checklist(
    rt: Runtime, conn: asyncpg.Connection, insurer_code: str, loss_type: str
) -> list[dict[str, str]]:
    """The checklist for new cases, cached briefly: a change made through this process applies
    at once, one made through another process within CACHE_TTL_S seconds."""
    cache: dict[tuple[str, str], tuple[float, list[dict[str, str]]]] = rt.extras.setdefault(
        "checklists", {}
    )
    hit = cache.get((insurer_code, loss_type))
    now = time.monotonic()
    if hit is not None and now - hit[0] < CACHE_TTL_S:
        return hit[1]
    items, _ = await checklist(conn, insurer_code, loss_type)
    cache[(insurer_code, loss_type)] = (now, items)
    return items


def forget(rt: Runtime) -> None:
    rt.extras.pop("checklists", None)
