"""Composition root of the analytics service."""

from __future__ import annotations

from claimdesk.service import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="analytics",
    title="ClaimDesk Analytics",
    description="The analytics service of ClaimDesk (health and readiness only until its issue lands).",
)
