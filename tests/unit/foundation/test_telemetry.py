"""JSON log lines carry the active trace; the W3C context round-trips through an envelope."""

from __future__ import annotations

import json
import logging

from claimdesk.telemetry import (
    JsonFormatter,
    SampleWhenObserved,
    current_trace_context,
    extract_context,
)
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def test_json_log_line_has_trace_and_extra_fields() -> None:
    tracer = TracerProvider().get_tracer("test")
    record = logging.LogRecord(
        "claimdesk.test", logging.INFO, __file__, 1, "relay %s", ("up",), None
    )
    record.cd_consumer = "tally"
    with tracer.start_as_current_span("work") as span:
        line = json.loads(JsonFormatter().format(record))
        ctx = span.get_span_context()
        carrier = current_trace_context()
    assert line["msg"] == "relay up"
    assert line["level"] == "info"
    assert line["consumer"] == "tally"
    assert line["trace_id"] == format(ctx.trace_id, "032x")
    assert line["span_id"] == format(ctx.span_id, "016x")
    assert carrier["traceparent"].split("-")[1] == line["trace_id"]
    restored = trace.get_current_span(extract_context(carrier)).get_span_context()
    assert restored.trace_id == ctx.trace_id


def test_no_trace_fields_outside_a_span() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "plain", (), None)
    line = json.loads(JsonFormatter().format(record))
    assert "trace_id" not in line
    assert current_trace_context() == {}


def test_spans_are_dropped_until_observed_but_keep_their_trace() -> None:
    sampler = SampleWhenObserved()
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("unobserved") as span:
        ctx = span.get_span_context()
        carrier = current_trace_context()
        with tracer.start_as_current_span("child") as child:
            assert child.get_span_context().trace_id == ctx.trace_id
    assert not span.is_recording()
    assert ctx.is_valid  # ids still flow into logs, envelopes and traceparent headers
    assert carrier["traceparent"].split("-")[1] == format(ctx.trace_id, "032x")
    assert exporter.get_finished_spans() == ()

    sampler.observed = True  # what setup_tracing does when it installs a processor
    with tracer.start_as_current_span("observed") as span:
        assert span.is_recording()
    assert [s.name for s in exporter.get_finished_spans()] == ["observed"]
