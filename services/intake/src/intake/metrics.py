"""Intake's own Prometheus metrics (served with the shared ones at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

CASES = Counter(
    "claimdesk_intake_cases_total",
    "Case registrations by channel and outcome (created, repeat)",
    ["channel", "outcome"],
)
WEBHOOK_ATTEMPTS = Counter(
    "claimdesk_intake_webhook_attempts_total",
    "Webhook delivery attempts by outcome (delivered, retry, failed)",
    ["outcome"],
)
WEBHOOK_LATENCY = Histogram(
    "claimdesk_intake_webhook_attempt_seconds",
    "Duration of one webhook delivery attempt",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
