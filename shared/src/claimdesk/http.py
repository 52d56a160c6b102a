"""The HTTP edge shared by every service: error mapping, limits, request context, metrics, spans.

- Domain errors map to their status with `{"error", "message", "details"}`.
- Validation errors are 422 with one message per field: `{"error": "invalid", "fields": [...]}`.
- A body over the limit is 413; a JSON endpoint sent another content type is 415.
- Each request runs in a server span (W3C traceparent honoured) and under a Cause whose
  correlation id comes from `X-Correlation-ID` when given.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.telemetry._api import _route_selected
from opentelemetry import context as otel_context
from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from claimdesk.context import Cause, enter_cause, leave_cause
from claimdesk.errors import DomainError
from claimdesk.metrics import HTTP_LATENCY, HTTP_REQUESTS
from claimdesk.telemetry import extract_context, spans_observed, tracer, unrecorded_span_context

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
_JSON_METHODS = {b"POST", b"PUT", b"PATCH"}


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "message": message, **extra}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, details=exc.details), status_code=exc.status_code
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {
                "field": _field_name(e.get("loc", ())),
                "message": e.get("msg", "invalid"),
                "type": e.get("type"),
            }
            for e in exc.errors()
        ]
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
        return JSONResponse(error_body("invalid", summary, fields=fields), status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"cd_path": request.url.path})
        return JSONResponse(
            error_body("internal", "internal error; see the service log"), status_code=500
        )


class LeanRoute(APIRoute):
    """A route answered by one plain function, `handler(request) -> Response`, that resolves
    its own arguments (for a hot path: FastAPI's general argument resolution and response
    validation cost a good part of a millisecond per request). Subclasses set `handler`.

    The OpenAPI description stays FastAPI's, from the endpoint's signature and the route's
    settings; `handler` must accept and answer what they say. When its path has no
    parameters and no dependencies come with it, `EdgeMiddleware` also calls it directly,
    past Starlette's router and exception middleware: exceptions go to the app's handlers as
    they would there, anything unhandled on to the server error middleware (a 500)."""

    handler: ClassVar[Callable[[Request], Awaitable[Response]]]

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = type(self).handler

        async def run(request: Request) -> Response:
            return await handler(request)

        return run


def _lean_routes(app: Any) -> dict[tuple[str, str], LeanRoute]:
    """(method, path) -> the `LeanRoute` the edge may call directly."""
    table: dict[tuple[str, str], LeanRoute] = {}
    for ctx in iter_route_contexts(getattr(app, "routes", ())):
        route, path = ctx.original_route, ctx.path
        if isinstance(route, LeanRoute) and path and "{" not in path and not ctx.dependencies:
            for method in ctx.methods or ():
                table[(method, path)] = route
    return table


def _handler_for(app: Any, exc: Exception) -> Any:
    """The app's handler for `exc`, as Starlette's exception middleware looks it up; None for
    what only the server error middleware handles (a 500)."""
    handlers = getattr(app, "exception_handlers", {})
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None


class EdgeMiddleware:
    """Pure ASGI middleware (cheap on the hot path): limits, context, span, metrics."""

    def __init__(self, app: ASGIApp, service: str, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.service = service
        self.max_body = max_body
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[tuple[str, str], Any] = {}
        self._lean: dict[tuple[str, str], LeanRoute] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        method: str = scope["method"]
        if method.encode() in _JSON_METHODS and scope["path"].startswith("/v1/"):
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                await _reply(send, 413, "too_large", f"request body over {self.max_body} bytes")
                return
            ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            has_body = (length not in (None, b"0")) or b"transfer-encoding" in headers
            if has_body and ctype not in (
                b"application/json",
                b"application/x-www-form-urlencoded",
                b"multipart/form-data",
            ):
                await _reply(
                    send, 415, "unsupported_media_type", "send Content-Type: application/json"
                )
                return
            receive = _limited(receive, self.max_body)

        carrier = {
            k.decode(): v.decode()
            for k, v in headers.items()
            if k in (b"traceparent", b"tracestate")
        }
        corr = headers.get(b"x-correlation-id")
        try:
            correlation = uuid.UUID(corr.decode()) if corr else uuid.uuid4()
        except ValueError:
            correlation = uuid.uuid4()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-correlation-id", str(correlation).encode()),
                ]
            await send(message)

        start = time.perf_counter()
        cause = enter_cause(Cause(correlation_id=correlation))
        try:
            if spans_observed():
                await self._traced(
                    scope, receive, send, send_wrapper, carrier=carrier, status=status
                )
            else:  # the request's trace context without building a span nobody receives
                token = otel_context.attach(unrecorded_span_context(carrier))
                try:
                    await self._run(scope, receive, send, send_wrapper, status)
                finally:
                    otel_context.detach(token)
        finally:
            leave_cause(cause)
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self._observe(method, path, status["code"], time.perf_counter() - start)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, send_wrapper: Send, status: dict[str, int]
    ) -> None:
        if self._lean is None:
            self._lean = _lean_routes(scope.get("app"))
        lean = self._lean.get((scope["method"], scope["path"])) if self._lean else None
        try:
            if lean is None or scope.get("root_path"):
                await self.app(scope, receive, send_wrapper)
            else:
                await _call_lean(lean, scope, receive, send_wrapper)
        except _TooLarge:
            await _reply(send, 413, "too_large", f"request body over {self.max_body} bytes")
            status["code"] = 413

    async def _traced(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        send_wrapper: Send,
        *,
        carrier: dict[str, str],
        status: dict[str, int],
    ) -> None:
        method: str = scope["method"]
        # FastAPI's own telemetry (when on) already opened a server span from the headers
        # around this middleware: nest under it, else a request would be two traces.
        active = trace.get_current_span().get_span_context().is_valid
        with tracer().start_as_current_span(
            f"{method} {scope['path']}",
            context=None if active else extract_context(carrier),
            kind=trace.SpanKind.SERVER,
        ) as span:
            try:
                await self._run(scope, receive, send, send_wrapper, status)
            finally:
                route = scope.get("route")
                path = getattr(route, "path", None) or "unmatched"
                span.update_name(f"{method} {path}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", path)
                span.set_attribute("http.response.status_code", status["code"])

    def _observe(self, method: str, path: str, code: int, seconds: float) -> None:
        """Count and time the request (the labelled series looked up once each)."""
        counter = self._requests.get((method, path, code))
        if counter is None:
            counter = HTTP_REQUESTS.labels(self.service, method, path, str(code))
            self._requests[(method, path, code)] = counter
        latency = self._latency.get((method, path))
        if latency is None:
            latency = self._latency[(method, path)] = HTTP_LATENCY.labels(
                self.service, method, path
            )
        counter.inc()
        latency.observe(seconds)


class _TooLarge(Exception):
    pass


async def _call_lean(route: LeanRoute, scope: Scope, receive: Receive, send: Send) -> None:
    scope["route"] = route
    # what FastAPI's router does on a match: its server span (when its telemetry is on) is
    # named after the route, not the bare method
    _route_selected(scope=scope, path=route.path)
    request = Request(scope, receive, send)
    try:
        response = await type(route).handler(request)
    except Exception as exc:
        handler = _handler_for(scope.get("app"), exc)
        if handler is None:
            raise
        response = await handler(request, exc)
    await response(scope, receive, send)


def _limited(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge
        return message

    return wrapped


async def _reply(send: Send, status: int, code: str, message: str) -> None:
    import json

    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
