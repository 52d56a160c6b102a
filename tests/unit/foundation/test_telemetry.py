"""JSON log lines carry the active trace; the W3C context round-trips through an envelope."""

from __future__ import annotations

import json
import logging

from claimdesk.telemetry import JsonFormatter, current_trace_context, extract_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider


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
