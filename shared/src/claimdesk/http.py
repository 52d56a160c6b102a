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
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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


class EdgeMiddleware:
    """Pure ASGI middleware (cheap on the hot path): limits, context, span, metrics."""

    def __init__(self, app: ASGIApp, service: str, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.service = service
        self.max_body = max_body
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[tuple[str, str], Any] = {}

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
        try:
            await self.app(scope, receive, send_wrapper)
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
