"""Composition root of the dispatch service."""

from __future__ import annotations

from claimdesk.service import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="dispatch",
    title="ClaimDesk Dispatch",
    description="The dispatch service of ClaimDesk (health and readiness only until its issue lands).",
)
