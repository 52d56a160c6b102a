"""Decoding that never fails on an event type this code does not know.

Other services extend their vocabularies while analytics runs. An unknown type (or a newer
schema version) decodes into `OpaquePayload`, keeping every field, so it is stored in the case
history and otherwise ignored instead of being dead-lettered.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

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
    """A published envelope; the payload is validated by its model (upcast if older), the
    envelope's own fields are parsed directly (the hot path of the fold and the rebuild)."""
    raw: dict[str, Any] = json.loads(data) if isinstance(data, bytes | str) else dict(data)
    try:
        payload: Event = REGISTRY.decode_payload(
            raw["event_type"], int(raw["schema_version"]), raw["payload"]
        )
        version = payload.schema_version
    except UnknownEvent:
        payload = OpaquePayload(**(raw.get("payload") or {}))
        version = int(raw["schema_version"])
    try:
        causation = raw.get("causation_id")
        return Envelope.model_construct(
            event_id=UUID(raw["event_id"]),
            event_type=raw["event_type"],
            schema_version=version,
            stream_id=raw["stream_id"],
            sequence=int(raw["sequence"]),
            occurred_at=_dt(raw["occurred_at"]),
            recorded_at=_dt(raw["recorded_at"]),
            producer=raw["producer"],
            correlation_id=UUID(raw["correlation_id"]),
            causation_id=UUID(causation) if causation else None,
            actor=raw.get("actor"),
            key=raw["key"],
            trace_context=raw.get("trace_context") or {},
            payload=payload,
        )
    except (KeyError, TypeError, ValueError):
        raw["payload"] = payload  # let pydantic say precisely what is wrong
        raw["schema_version"] = version
        return Envelope.model_validate(raw)


def _dt(value: str | datetime) -> datetime:
    out = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if out.tzinfo is None:
        raise ValueError("timestamps must carry a time zone")
    return out


class RawPayload:
    """A payload kept as its JSON dict, upcast to the current version but not validated into
    its model: the rebuild's and the fold's fast path. The events come from our own services'
    stores and topics, which validated them when they were recorded."""

    __slots__ = ("context", "data", "known", "payload_json")

    def __init__(self, data: dict[str, Any], context: str, known: bool, payload_json: str) -> None:
        self.data = data
        self.context = context
        self.known = known
        self.payload_json = payload_json  # as stored or published

    def partition_key(self) -> str | None:
        value = self.data.get("case_id")
        return str(value) if value else None


class FastEnvelope:
    """The envelope fields as plain attributes, read by the fold, the history and the
    consumer (which only reads attributes): several times cheaper to build than a pydantic
    Envelope, on the path every event takes."""

    __slots__ = (
        "actor",
        "causation_id",
        "correlation_id",
        "event_id",
        "event_type",
        "key",
        "occurred_at",
        "payload",
        "producer",
        "recorded_at",
        "schema_version",
        "sequence",
        "stream_id",
        "trace_context",
    )

    def __init__(self, **values: Any) -> None:
        for k, v in values.items():
            setattr(self, k, v)


def _trusted(values: dict[str, Any]) -> Envelope:
    return FastEnvelope(**values)  # type: ignore[return-value]


def _raw_payload(event_type: str, version: int, data: dict[str, Any], text: str) -> RawPayload:
    try:
        cls = REGISTRY.get(event_type)
    except UnknownEvent:
        return RawPayload(data, "unknown", False, text)
    if version > cls.schema_version:
        return RawPayload(data, "unknown", False, text)
    if version < cls.schema_version:
        data = REGISTRY.upcast(event_type, version, data)
    return RawPayload(data, cls.context, True, text)


def decode_fast(data: bytes | str) -> Envelope:
    """A published envelope with a RawPayload (no model validation): the consumer's and the
    Kafka rebuild's decoder. The stored history keeps the message text as it came."""
    raw: dict[str, Any] = json.loads(data)
    if not isinstance(raw.get("payload"), dict):
        raise ValueError("envelope without a payload object")
    text = json.dumps(raw["payload"], ensure_ascii=False, separators=(",", ":"))
    payload = _raw_payload(raw["event_type"], int(raw["schema_version"]), raw["payload"], text)
    causation = raw.get("causation_id")
    return _trusted(
        {
            "event_id": UUID(raw["event_id"]),
            "event_type": raw["event_type"],
            "schema_version": int(raw["schema_version"]),
            "stream_id": raw["stream_id"],
            "sequence": int(raw["sequence"]),
            "occurred_at": _dt(raw["occurred_at"]),
            "recorded_at": _dt(raw["recorded_at"]),
            "producer": raw["producer"],
            "correlation_id": UUID(raw["correlation_id"]),
            "causation_id": UUID(causation) if causation else None,
            "actor": raw.get("actor"),
            "key": raw["key"],
            "trace_context": raw.get("trace_context") or {},
            "payload": payload,
        }
    )


STORE_COLUMNS = (
    "tx_id::text::bigint AS tx, global_position, event_id, event_type, schema_version, "
    "stream_id, sequence, occurred_at, recorded_at, producer, correlation_id, causation_id, "
    "actor, key, payload::text AS payload"
)
"""The event columns `decode_store_row_fast` reads (no trace context: history needs none)."""


def decode_store_row_fast(row: asyncpg.Record) -> Envelope:
    """A stored row (STORE_COLUMNS, or the history's own columns) with a RawPayload."""
    text = row["payload"]
    payload = _raw_payload(row["event_type"], row["schema_version"], json.loads(text), text)
    return _trusted(
        {
            "event_id": row["event_id"],
            "event_type": row["event_type"],
            "schema_version": row["schema_version"],
            "stream_id": row["stream_id"],
            "sequence": row["sequence"],
            "occurred_at": row["occurred_at"],
            "recorded_at": row["recorded_at"],
            "producer": row["producer"],
            "correlation_id": row["correlation_id"],
            "causation_id": row["causation_id"],
            "actor": row["actor"],
            "key": row["key"],
            "trace_context": {},
            "payload": payload,
        }
    )


def is_known(env: Envelope) -> bool:
    p = env.payload
    if isinstance(p, RawPayload):
        return p.known
    return not isinstance(p, OpaquePayload)


def payload_json(env: Envelope) -> str:
    p = env.payload
    return p.payload_json if isinstance(p, RawPayload) else p.model_dump_json()


def decode_store_row(row: asyncpg.Record) -> Envelope:
    """claimdesk.eventstore.decode_row, with unknown types as OpaquePayload."""
    return decode_row(row, unknown=lambda r: OpaquePayload(**json.loads(r["payload"])))


def payload_dict(env: Envelope) -> dict[str, Any]:
    return env.payload.model_dump(mode="json")


def case_id_of(env: Envelope) -> str | None:
    p = env.payload
    if isinstance(p, RawPayload):
        value = p.data.get("case_id")
        return str(value) if value else None
    value = getattr(p, "case_id", None)
    if value is None and isinstance(p, OpaquePayload):
        value = (p.model_extra or {}).get("case_id")
    return str(value) if value else None
