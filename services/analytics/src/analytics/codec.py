"""Decoding that never fails on an event type this code does not know.

Other services extend their vocabularies while analytics runs. An unknown type (or a newer
schema version) decodes into `OpaquePayload`, keeping every field, so it is stored in the case
history and otherwise ignored instead of being dead-lettered.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import asyncpg
from claimdesk.events.base import REGISTRY, Envelope, Event, UnknownEvent
from claimdesk.eventstore import decode_row
from pydantic import ConfigDict


class OpaquePayload(Event):
    """The payload of an event type analytics does not know (kept as is)."""

    model_config = ConfigDict(frozen=True, extra="allow")
    context: ClassVar[str] = "unknown"

    def partition_key(self) -> str | None:
        extra = self.model_extra or {}
        value = extra.get("case_id")
        return str(value) if value else None


def decode_envelope(data: bytes | str | dict[str, Any]) -> Envelope:
    raw: dict[str, Any] = json.loads(data) if isinstance(data, bytes | str) else dict(data)
    try:
        return REGISTRY.decode(raw)
    except UnknownEvent:
        raw["payload"] = OpaquePayload(**(raw.get("payload") or {}))
        return Envelope.model_validate(raw)


def decode_store_row(row: asyncpg.Record) -> Envelope:
    """claimdesk.eventstore.decode_row, with unknown types as OpaquePayload."""
    return decode_row(row, unknown=lambda r: OpaquePayload(**json.loads(r["payload"])))


def payload_dict(env: Envelope) -> dict[str, Any]:
    return env.payload.model_dump(mode="json")


def case_id_of(env: Envelope) -> str | None:
    p = env.payload
    value = getattr(p, "case_id", None)
    if value is None and isinstance(p, OpaquePayload):
        value = (p.model_extra or {}).get("case_id")
    return str(value) if value else None
