"""Logs as JSON lines carrying trace ids, and OpenTelemetry tracing from the OTEL_* variables.

Tracing is configured from the standard environment: OTEL_SERVICE_NAME (else the service's
name), OTEL_RESOURCE_ATTRIBUTES, and OTLP over HTTP when OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set. Context crosses HTTP (traceparent), the event
envelope (trace_context) and Kafka headers with the W3C propagator.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

_propagator = TraceContextTextMapPropagator()
_configured = False


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            out["trace_id"] = format(span.trace_id, "032x")
            out["span_id"] = format(span.span_id, "016x")
        for key, value in record.__dict__.items():
            if key.startswith("cd_"):
                out[key[3:]] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup_logging(level: str = "INFO", json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "kafka", "httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class SampleWhenObserved(Sampler):
    """Record spans only once something receives them (an exporter or a test's processor).

    Until then every span is dropped at birth: it still gets its trace and span ids, so logs,
    event envelopes and outgoing `traceparent` headers carry the trace as before, but no span
    object with its attributes and processor calls is built only to be thrown away. With FastAPI's
    own request and operation spans that waste was about a sixth of intake's CPU per request.
    Once observed, the standard ParentBased(ALWAYS_ON) decides."""

    def __init__(self) -> None:
        self.observed = False
        self._observed = ParentBased(ALWAYS_ON)

    def should_sample(  # noqa: PLR0917 (the Sampler interface)
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        sampler = self._observed if self.observed else ALWAYS_OFF
        return sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return "SampleWhenObserved"


_sampler = SampleWhenObserved()


def spans_observed() -> bool:
    """Whether anything receives spans (an exporter or a test's processor) in this process."""
    return _sampler.observed


def _add_processor(provider: TracerProvider, processor: SpanProcessor) -> None:
    provider.add_span_processor(processor)
    _sampler.observed = True


def setup_tracing(service_name: str, extra_processor: SpanProcessor | None = None) -> None:
    """Install a tracer provider once per process (tests may add an in-memory processor)."""
    global _configured
    if _configured:
        provider = trace.get_tracer_provider()
        if extra_processor is not None and isinstance(provider, TracerProvider):
            _add_processor(provider, extra_processor)
        return
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource, sampler=_sampler)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        _add_processor(provider, BatchSpanProcessor(OTLPSpanExporter()))
    if extra_processor is not None:
        _add_processor(provider, extra_processor)
    trace.set_tracer_provider(provider)
    _configured = True


@functools.cache
def tracer(name: str = "claimdesk") -> trace.Tracer:
    """The named tracer, looked up once (it proxies to whatever provider is installed)."""
    return trace.get_tracer(name)


def current_trace_context() -> dict[str, str]:
    """The active span's context as W3C headers (traceparent, tracestate), for the envelope."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def extract_context(carrier: Mapping[str, str]) -> otel_context.Context:
    return _propagator.extract(dict(carrier))


_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


def unrecorded_span_context(carrier: Mapping[str, str]) -> otel_context.Context:
    """A context holding a new span that nothing records, child of the W3C `carrier`'s span
    (else the first of a new trace): what the SDK tracer makes while no span is observed
    (`SampleWhenObserved` drops it at birth), without the tracer, sampler and span machinery.
    Logs, event envelopes and outgoing `traceparent` headers carry its trace as they would."""
    ctx = _propagator.extract(carrier) if carrier else None
    parent = trace.get_current_span(ctx).get_span_context() if ctx is not None else None
    if parent is not None and parent.is_valid:
        trace_id, state = parent.trace_id, parent.trace_state
    else:
        trace_id, state = random.getrandbits(128) or 1, None
    span = NonRecordingSpan(
        SpanContext(
            trace_id,
            random.getrandbits(64) or 1,
            is_remote=False,
            trace_flags=_NOT_SAMPLED,
            trace_state=state,
        )
    )
    return trace.set_span_in_context(span, ctx)


def headers_to_carrier(headers: Any) -> dict[str, str]:
    """Kafka headers (list of (key, bytes)) as a str mapping for the propagator."""
    out: dict[str, str] = {}
    for key, value in headers or ():
        if value is not None:
            out[key] = value.decode() if isinstance(value, bytes | bytearray) else str(value)
    return out
