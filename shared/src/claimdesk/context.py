"""Who and why: correlation, causation and actor of the work in progress, as context variables.

The HTTP edge sets them from the request; a consumer sets them from the event it handles, so
events appended while handling carry `causation_id` = that event and the same correlation id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True)
class Cause:
    correlation_id: UUID
    causation_id: UUID | None = None
    actor: str | None = None


_current: ContextVar[Cause | None] = ContextVar("claimdesk_cause", default=None)


def current_cause() -> Cause:
    cause = _current.get()
    return cause if cause is not None else Cause(correlation_id=uuid.uuid4())


@contextmanager
def caused_by(
    *,
    correlation_id: UUID | None = None,
    causation_id: UUID | None = None,
    actor: str | None = None,
) -> Iterator[Cause]:
    base = _current.get()
    cause = Cause(
        correlation_id=correlation_id or (base.correlation_id if base else uuid.uuid4()),
        causation_id=causation_id
        if causation_id is not None
        else (base.causation_id if base else None),
        actor=actor if actor is not None else (base.actor if base else None),
    )
    token = enter_cause(cause)
    try:
        yield cause
    finally:
        leave_cause(token)


def enter_cause(cause: Cause) -> Token[Cause | None]:
    """Make `cause` current until `leave_cause(token)`: `caused_by` without a context manager,
    for the HTTP edge, which runs it once per request."""
    return _current.set(cause)


def leave_cause(token: Token[Cause | None]) -> None:
    _current.reset(token)


def set_actor(actor: str) -> None:
    """Name who acts for the rest of the current request or handler."""
    cause = current_cause()
    _current.set(Cause(cause.correlation_id, cause.causation_id, actor))
