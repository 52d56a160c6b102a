"""Agent pages: the worklist and a complaint's page (plain HTML + small vanilla JS, no CDN).

The pages are static files; their script calls the JSON API with the agent's bearer token,
kept in the browser's localStorage after the agent pastes it once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from claimdesk.service import Runtime
from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from complaints.models import CASE_ID

router = APIRouter(tags=["pages"])
STATIC = Path(__file__).parent / "static"


@router.get(
    "/agent",
    response_class=FileResponse,
    summary="Agent worklist page",
    description="Everything the agent owns, most urgent first, with live due times.",
)
async def worklist_page() -> FileResponse:
    return FileResponse(STATIC / "worklist.html", media_type="text/html")


@router.get(
    "/agent/complaints/{complaint_id}",
    response_class=FileResponse,
    summary="Complaint page",
    description="A complaint's clocks (live countdowns), owner, escalation level and history.",
)
async def complaint_page(
    complaint_id: Annotated[str, PathParam(pattern=CASE_ID)],
) -> FileResponse:
    return FileResponse(STATIC / "complaint.html", media_type="text/html")


@router.get(
    "/agent/callbacks/{callback_id}",
    response_class=FileResponse,
    summary="Callback page (回访)",
    description="Record a callback try: not reached, or the answers, optionally opening a "
    "linked complaint in the same step.",
)
async def callback_page(
    callback_id: Annotated[str, PathParam(pattern=CASE_ID)],
) -> FileResponse:
    return FileResponse(STATIC / "callback.html", media_type="text/html")


@router.get("/agent/app.js", include_in_schema=False)
async def app_js() -> FileResponse:
    return FileResponse(STATIC / "app.js", media_type="text/javascript")


async def write_demo_credentials(rt: Runtime) -> None:
    """Demo: where the pages are, for the launcher. Staff identities belong to intake, whose
    credentials list carries the tokens (every service verifies them with the shared secret)."""
    base = rt.settings.url("complaints")
    lines = [
        "# complaints: sign in with an agent or supervisor token from intake's list",
        f"agent worklist  : {base}/agent",
        f"customer form   : {base}/complaint-form",
    ]
    rt.settings.data_dir.mkdir(parents=True, exist_ok=True)
    (rt.settings.data_dir / "credentials-complaints.txt").write_text("\n".join(lines) + "\n")
