"""Decoding that never fails on an event type this code does not know.

Other services extend their vocabularies while analytics runs. An unknown type (or a newer
schema version) decodes into `OpaquePayload`, keeping every field, so it is stored in the case
history and otherwise ignored instead of being dead-lettered.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import asyncpg
import msgspec
from asyncpg.pgproto.pgproto import UUID as PgUUID
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

    __slots__ = ("_text", "context", "copy_line", "data", "known")

    def __init__(
        self,
        data: dict[str, Any],
        context: str,
        known: bool,
        payload_json: str | bytes,
        copy_line: bytes | None = None,
    ) -> None:
        self.data = data
        self.context = context
        self.known = known
        self._text = payload_json  # as stored or published (UTF-8 bytes from a message)
        # The event's case_events row in COPY's text format, when the decoder built it.
        self.copy_line = copy_line

    @property
    def payload_json(self) -> str:
        text = self._text
        return text.decode() if isinstance(text, bytes) else text

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
    actor: str | None
    causation_id: UUID | None
    correlation_id: UUID
    event_id: UUID
    event_type: str
    key: str
    occurred_at: datetime
    payload: Any
    producer: str
    recorded_at: datetime
    schema_version: int
    sequence: int
    stream_id: str
    trace_context: dict[str, str]

    def __init__(self, **values: Any) -> None:
        for k, v in values.items():
            setattr(self, k, v)


def _trusted(values: dict[str, Any]) -> Envelope:
    return FastEnvelope(**values)  # type: ignore[return-value]


_KINDS: dict[tuple[str, int], tuple[str, bool, bool]] = {}
"""(event type, version) -> (context, known, needs an upcast): the registry, asked once."""


def _kind(event_type: str, version: int) -> tuple[str, bool, bool]:
    kind = _KINDS.get((event_type, version))
    if kind is None:
        try:
            cls = REGISTRY.get(event_type)
        except UnknownEvent:
            kind = ("unknown", False, False)
        else:
            if version > cls.schema_version:
                kind = ("unknown", False, False)
            else:
                kind = (cls.context, True, version < cls.schema_version)
        if len(_KINDS) < 10_000:  # types come from our services' vocabularies: few
            _KINDS[(event_type, version)] = kind
    return kind


def _raw_payload(
    event_type: str, version: int, data: dict[str, Any], text: str | bytes
) -> RawPayload:
    context, known, upcast = _kind(event_type, version)
    if upcast:
        data = REGISTRY.upcast(event_type, version, data)
    return RawPayload(data, context, known, text)


class WireEnvelope(msgspec.Struct):
    """An envelope as the relay publishes it (`claimdesk.eventstore.wire_message`), decoded by
    msgspec in C: the fields as their JSON values, the payload as its exact text (`Raw`).
    Unknown members are ignored; numbers written as strings are accepted (`strict=False`)."""

    event_id: str
    event_type: str
    schema_version: int
    stream_id: str
    sequence: int
    occurred_at: str
    recorded_at: str
    producer: str
    correlation_id: str
    payload: msgspec.Raw
    key: str | None = None
    causation_id: str | None = None
    actor: str | None = None
    trace_context: dict[str, str] = {}


_WIRE = msgspec.json.Decoder(WireEnvelope, strict=False)
_OBJECT = msgspec.json.Decoder(dict[str, Any])
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")
_NEEDS_ESCAPE_B = re.compile(rb"[\\\t\n\r]")
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_ESCAPES_B = {b"\\": b"\\\\", b"\t": b"\\t", b"\n": b"\\n", b"\r": b"\\r"}
COPY_NULL = "\\N"


def copy_value(value: Any) -> str:
    """A value in COPY's text format (None is NULL; anything else as its str, escaped)."""
    if value is None:
        return COPY_NULL
    if not isinstance(value, str):
        value = str(value)
    if _NEEDS_ESCAPE.search(value) is None:
        return value
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group()], value)


def _copy_bytes(text: bytes) -> bytes:
    if _NEEDS_ESCAPE_B.search(text) is None:
        return text
    return _NEEDS_ESCAPE_B.sub(lambda m: _ESCAPES_B[m.group()], text)


_fromisoformat = datetime.fromisoformat
_KIND_BY_TYPE: dict[str, tuple[int, str, bool, bool]] = {}
"""event type -> (version, context, known, needs an upcast) for the last version seen."""


def _kind_of(event_type: str, version: int) -> tuple[int, str, bool, bool]:
    kind = _KIND_BY_TYPE.get(event_type)
    if kind is None or kind[0] != version:
        kind = (version, *_kind(event_type, version))
        if len(_KIND_BY_TYPE) < 10_000:
            _KIND_BY_TYPE[event_type] = kind
    return kind


def _canonical_uuid(text: str) -> bool:
    """Written as Postgres writes a uuid (so the COPY text reads back as the parsed value)."""
    return len(text) == 36 and text[8:24:5] == "----"


def _canonical_time(text: str) -> bool:
    """Written as isoformat() writes a datetime with microseconds and an hh:mm offset."""
    return len(text) == 32 and text[10] == "T" and text[19] == "." and text[26] in "+-"


def decode_fast(data: bytes | str) -> Envelope:
    """A published envelope with a RawPayload (no model validation): the consumer's and the
    Kafka rebuild's decoder. msgspec reads the envelope's members and keeps the payload's
    exact text, which the history stores as published; the payload is parsed once, for the
    fold. The event's case_events row is formatted here too (COPY text), while the message's
    own text is at hand. Every event the consumer reads takes this path: it is written for
    speed. Raises ValueError for a message that is not an envelope."""
    if type(data) is not bytes:
        data = data.encode() if isinstance(data, str) else bytes(data)
    try:
        w = _WIRE.decode(data)
        data_ = _OBJECT.decode(w.payload)
    except msgspec.DecodeError as exc:  # a ValidationError is one
        raise ValueError(f"not an envelope: {exc}") from None
    text = bytes(w.payload)
    event_type, version = w.event_type, w.schema_version
    _, context, known, upcast = _kind_of(event_type, version)
    if upcast:
        data_ = REGISTRY.upcast(event_type, version, data_)
    event_id, correlation, causation = w.event_id, w.correlation_id, w.causation_id
    occurred_text, recorded_text = w.occurred_at, w.recorded_at
    stream_id, producer, key, actor = w.stream_id, w.producer, w.key, w.actor
    occurred = _fromisoformat(occurred_text)
    recorded = occurred if recorded_text == occurred_text else _fromisoformat(recorded_text)
    if occurred.tzinfo is None or recorded.tzinfo is None:
        raise ValueError("timestamps must carry a time zone")
    env = FastEnvelope.__new__(FastEnvelope)
    env.event_id = event_uuid = PgUUID(event_id)
    env.event_type = event_type
    env.schema_version = version
    env.stream_id = stream_id
    env.sequence = w.sequence
    env.occurred_at = occurred
    env.recorded_at = recorded
    env.producer = producer
    env.correlation_id = correlation_uuid = PgUUID(correlation)
    env.causation_id = causation_uuid = PgUUID(causation) if causation else None
    env.actor = actor
    env.key = key
    env.trace_context = w.trace_context
    value = data_.get("case_id")
    case_id = str(value) if value else None
    subject = case_id or key or stream_id
    # No backslash anywhere: no JSON string holds an escape, so no value needs one in COPY;
    # and no raw tab, newline or return between the payload's tokens.
    if data.find(b"\\") < 0 and _NEEDS_ESCAPE_B.search(text) is None and not upcast:
        event_type_, context_, producer_, stream_id_ = event_type, context, producer, stream_id
        key_ = COPY_NULL if key is None else key
        actor_ = COPY_NULL if actor is None else actor
        case_text = COPY_NULL if case_id is None else subject
        payload_text = text
    else:  # escape each value (rare)
        event_type_, context_, producer_, stream_id_, subject, key_, actor_ = map(
            copy_value, (event_type, context, producer, stream_id, subject, key, actor)
        )
        case_text = copy_value(case_id)
        payload_text = _copy_bytes(text)
    # Ids and times as published when in the form Postgres reads as the parsed value, else
    # formatted from it.
    if not _canonical_uuid(event_id):
        event_id = str(event_uuid)
    if not _canonical_uuid(correlation):
        correlation = str(correlation_uuid)
    if causation_uuid is None:
        causation = COPY_NULL
    elif not _canonical_uuid(causation):  # type: ignore[arg-type]
        causation = str(causation_uuid)
    if not _canonical_time(occurred_text):
        occurred_text = occurred.isoformat()
    if recorded is occurred:
        recorded_text = occurred_text
    elif not _canonical_time(recorded_text):
        recorded_text = recorded.isoformat()
    line = (
        f"{event_id}\t{case_text}\t{subject}\t{event_type_}\t{version}\t{context_}\t"
        f"{producer_}\t{stream_id_}\t{w.sequence}\t{occurred_text}\t{recorded_text}\t{actor_}\t"
        f"{correlation}\t{causation}\t{key_}\t{'t' if known else 'f'}\t"
    ).encode()
    env.payload = RawPayload(data_, context, known, text, line + payload_text + b"\n")
    return env  # type: ignore[return-value]


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
