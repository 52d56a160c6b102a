"""The surveyor page and the dispatcher board: plain HTML + vanilla JS served from static/."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["pages"])
STATIC = Path(__file__).parent / "static"


@router.get(
    "/surveyor",
    response_class=HTMLResponse,
    summary="Surveyor page (mobile)",
    description="Log in with the surveyor token; live jobs; Acknowledge / On my way / Arrived / Completed.",
)
async def surveyor_page() -> HTMLResponse:
    return HTMLResponse((STATIC / "surveyor.html").read_text(encoding="utf-8"))


@router.get(
    "/board",
    response_class=HTMLResponse,
    summary="Dispatcher board",
    description="Queue, overdue acknowledgements, surveyors and their load.",
)
async def board_page() -> HTMLResponse:
    return HTMLResponse((STATIC / "board.html").read_text(encoding="utf-8"))
