"""Event envelope, event base class and the registry of every event type.

An event is a past-tense business fact: a small frozen pydantic model registered under
(event_type, schema_version). The envelope carries identity, position, time, provenance and
trace context. Stored or published events of an older schema version are upcast on read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownEvent(Exception):
    """A message names an event type or version that this code does not know."""


class Event(BaseModel):
    """Base of every event payload. Subclasses set `event_type`, `context`, `schema_version`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    context: ClassVar[str]
    schema_version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "event_type" in cls.__dict__:
            REGISTRY.register(cls)

    def partition_key(self) -> str | None:
        """The case id when the event belongs to a case, so each case keeps its order."""
        case_id = getattr(self, "case_id", None)
        return str(case_id) if case_id is not None else None


class Envelope(BaseModel):
    """Everything known about one recorded event, around its typed payload."""

    model_config = ConfigDict(frozen=True)

    event_id: UUID
    event_type: str
    schema_version: int
    stream_id: str
    sequence: int = Field(description="position of the event in its stream, from 1")
    occurred_at: datetime = Field(description="when it happened (device time for field steps)")
    recorded_at: datetime = Field(description="when the producing service recorded it")
    producer: str
    correlation_id: UUID
    causation_id: UUID | None = None
    actor: str | None = Field(None, description="who caused it: staff number, insurer, system")
    key: str = Field(description="Kafka key: the case id, else the stream id")
    trace_context: dict[str, str] = Field(default_factory=dict)
    payload: SerializeAsAny[Event]

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    def headers(self) -> list[tuple[str, bytes]]:
        out = [
            ("event_type", self.event_type.encode()),
            ("event_id", str(self.event_id).encode()),
            ("schema_version", str(self.schema_version).encode()),
            ("producer", self.producer.encode()),
        ]
        out.extend((k, v.encode()) for k, v in self.trace_context.items())
        return out


class Registry:
    def __init__(self) -> None:
        self._types: dict[str, type[Event]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, cls: type[Event]) -> None:
        existing = self._types.get(cls.event_type)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"event type {cls.event_type} registered twice")
        self._types[cls.event_type] = cls

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function turning a payload of `from_version` into `from_version + 1`."""

        def deco(fn: Upcaster) -> Upcaster:
            self._upcasters[(event_type, from_version)] = fn
            return fn

        return deco

    def get(self, event_type: str) -> type[Event]:
        try:
            return self._types[event_type]
        except KeyError:
            raise UnknownEvent(f"unknown event type {event_type!r}") from None

    def all(self) -> list[type[Event]]:
        return sorted(self._types.values(), key=lambda c: (c.context, c.event_type))

    def upcasters(self, event_type: str) -> list[tuple[int, Upcaster]]:
        """The registered upcasters of a type, oldest version first."""
        return sorted((v, fn) for (t, v), fn in self._upcasters.items() if t == event_type)

    def upcast(self, event_type: str, version: int, payload: dict[str, Any]) -> dict[str, Any]:
        cls = self.get(event_type)
        if version > cls.schema_version:
            raise UnknownEvent(
                f"{event_type} v{version} is newer than this code (v{cls.schema_version})"
            )
        while version < cls.schema_version:
            try:
                payload = self._upcasters[(event_type, version)](payload)
            except KeyError:
                raise UnknownEvent(f"no upcaster for {event_type} v{version}") from None
            version += 1
        return payload

    def decode_payload(self, event_type: str, version: int, payload: dict[str, Any]) -> Event:
        cls = self.get(event_type)
        return cls.model_validate(self.upcast(event_type, version, payload))

    def decode(self, data: dict[str, Any] | bytes | str) -> Envelope:
        """Decode a stored or published envelope, upcasting its payload to the current version."""
        raw: dict[str, Any] = json.loads(data) if isinstance(data, bytes | str) else dict(data)
        event_type, version = raw["event_type"], int(raw["schema_version"])
        payload = self.decode_payload(event_type, version, raw["payload"])
        raw["payload"] = payload
        raw["schema_version"] = payload.schema_version
        return Envelope.model_validate(raw)


REGISTRY = Registry()
