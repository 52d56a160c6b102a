"""Composition root of the complaints service."""

from __future__ import annotations

from claimdesk.service import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="complaints",
    title="ClaimDesk Complaints",
    description="The complaints service of ClaimDesk (health and readiness only until its issue lands).",
)
