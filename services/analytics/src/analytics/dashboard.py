"""Ops dashboard (placeholder, filled below)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from claimdesk.service import Runtime
from fastapi import APIRouter

router = APIRouter()


def background_jobs(runtime: Runtime) -> Sequence[Callable[[], Awaitable[None]]]:
    return []
