"""The agent desk (坐席工作台): plain HTML + vanilla JS served from static/, no build, no CDN."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["pages"])
STATIC = Path(__file__).parent / "static"


@router.get(
    "/desk",
    response_class=HTMLResponse,
    summary="Agent desk / 坐席工作台",
    description=(
        "Log in with a staff token; register a phone report (the agent becomes first-contact "
        "owner), log a consultation, see the cases one owns. Uses the same /v1 API."
    ),
)
async def desk_page() -> HTMLResponse:
    return HTMLResponse((STATIC / "desk.html").read_text(encoding="utf-8"))
