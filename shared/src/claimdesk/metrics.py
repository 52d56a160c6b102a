"""Prometheus metrics shared by every service (served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "claimdesk_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "claimdesk_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_APPENDED = Counter("claimdesk_events_appended_total", "Events appended", ["service"])
EVENTS_PUBLISHED = Counter(
    "claimdesk_events_published_total", "Events published to Kafka", ["service"]
)
OUTBOX_BACKLOG = Gauge("claimdesk_outbox_backlog", "Outbox rows not yet published", ["service"])
EVENTS_CONSUMED = Counter(
    "claimdesk_events_consumed_total",
    "Events handled by a consumer",
    ["service", "consumer", "outcome"],
)
CONSUMER_LAG = Gauge(
    "claimdesk_consumer_lag",
    "Messages behind the end of the partition",
    ["service", "consumer", "topic", "partition"],
)
DEAD_LETTERS = Gauge("claimdesk_dead_letters", "Rows in the dead-letter table", ["service"])
OPEN_TIMERS = Gauge("claimdesk_open_timers", "Stored deadlines not yet fired", ["service"])
TIMERS_FIRED = Counter("claimdesk_timers_fired_total", "Deadlines fired", ["service", "kind"])
