"""A request's trace reaches the events it causes, also while no span is observed (the edge
then makes no span object, only the context: a new span id in the caller's trace)."""

from __future__ import annotations

import uuid

import pytest
from claimdesk import telemetry
from intake.bootstrap import DEFINITION

from tests.integration.intake.helpers import add_insurer, bearer, case_body


async def test_events_carry_the_request_trace_while_no_span_is_observed(
    start_service, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(telemetry._sampler, "observed", False)  # no exporter, no test processor
    async with start_service(DEFINITION) as svc:
        key = await add_insurer(svc.client, "PICC")
        trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
        correlation = uuid.uuid4()
        r = await svc.client.post(
            "/v1/cases",
            json=case_body(),
            headers={
                **bearer(key),
                "traceparent": f"00-{trace_id}-{parent}-01",
                "x-correlation-id": str(correlation),
            },
        )
        assert r.status_code == 201, r.text
        assert r.headers["x-correlation-id"] == str(correlation)
        plain = await svc.client.post("/v1/cases", json=case_body(), headers=bearer(key))
        assert plain.status_code == 201, plain.text

        async def events(case_id: str) -> list[tuple[list[str], uuid.UUID]]:
            rows = await svc.runtime.pool.fetch(
                "SELECT trace_context, correlation_id FROM events WHERE stream_id = $1",
                f"case-{case_id}",
            )
            return [
                (row["trace_context"]["traceparent"].split("-"), row["correlation_id"])
                for row in rows
            ]

        traced = await events(r.json()["case_id"])
        assert len(traced) == 2  # CaseReported, DocumentRequested
        for (version, tid, span_id, flags), corr in traced:
            assert (version, tid, corr) == ("00", trace_id, correlation)
            assert span_id not in (parent, "0" * 16)  # the request's own (unrecorded) span
            assert flags == "00"  # not sampled, as the SDK marks a span it drops
        untraced = await events(plain.json()["case_id"])
        (tid,) = {tid for (_, tid, _, _), _ in untraced}  # one new trace of its own
        assert tid not in (trace_id, "0" * 32)
