"""Manager's reports (placeholder)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
