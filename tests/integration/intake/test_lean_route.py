"""A `LeanRoute` (intake's `POST /v1/cases`) is called by the edge directly, past Starlette's
router and exception middleware: its errors still get the app's answers, its requests are
still counted under their route, a crash is still a logged 500 with the JSON error body."""

from __future__ import annotations

from collections.abc import AsyncIterator

from claimdesk.errors import Conflict
from claimdesk.http import LeanRoute
from claimdesk.service import ServiceDefinition
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import HTTPException, RequestValidationError


async def _answer(request: Request) -> Response:
    what = request.query_params.get("what")
    if what == "conflict":
        raise Conflict("taken", state="x")
    if what == "invalid":
        raise RequestValidationError([{"loc": ("body", "plate"), "msg": "bad", "type": "x"}])
    if what == "http":
        raise HTTPException(418, "teapot")
    if what == "crash":
        raise RuntimeError("boom")
    return Response(await request.body(), 201, media_type="application/json")


async def _chunks() -> AsyncIterator[bytes]:  # no length: the excess is found while reading
    for _ in range(2):
        yield b"x" * 40_000


class _Lean(LeanRoute):
    handler = _answer


async def _endpoint() -> None:  # the signature FastAPI documents
    raise AssertionError("never called: the route answers with _answer")


router = APIRouter(prefix="/v1")
router.add_api_route("/echo", _endpoint, methods=["POST"], route_class_override=_Lean)
router.add_api_route("/echo/{anything}", _endpoint, methods=["POST"], route_class_override=_Lean)
LEAN = ServiceDefinition(name="intake", title="t", description="t", routers=[router])


async def test_a_lean_route_answers_like_any_other(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(LEAN) as svc:
        for path in ("/v1/echo", "/v1/echo/x"):  # called by the edge, and through the router
            c = svc.client
            r = await c.post(
                path, content=b'{"a": 1}', headers={"content-type": "application/json"}
            )
            assert (r.status_code, r.json()) == (201, {"a": 1})
            assert "x-correlation-id" in r.headers
            r = await c.post(f"{path}?what=conflict")
            assert (r.status_code, r.json()["error"], r.json()["details"]) == (
                409,
                "conflict",
                {"state": "x"},
            )
            r = await c.post(f"{path}?what=invalid")
            assert (r.status_code, r.json()["fields"][0]["field"]) == (422, "plate")
            r = await c.post(f"{path}?what=http")
            assert r.status_code == 418
            r = await c.post(f"{path}?what=crash")
            assert (r.status_code, r.json()["error"]) == (500, "internal")
            r = await c.post(
                path, content=b"x" * 70_000, headers={"content-type": "application/json"}
            )
            assert r.status_code == 413
            r = await c.post(path, content=_chunks(), headers={"content-type": "application/json"})
            assert r.status_code == 413
        metrics = (await svc.client.get("/metrics")).text
        assert 'route="/v1/echo",service="intake",status="409"' in metrics
        assert 'route="/v1/echo/{anything}",service="intake",status="500"' in metrics
