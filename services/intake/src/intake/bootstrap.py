"""Composition root of the intake service."""

from __future__ import annotations

from claimdesk.service import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="intake",
    title="ClaimDesk Intake",
    description="The intake service of ClaimDesk (health and readiness only until its issue lands).",
)
