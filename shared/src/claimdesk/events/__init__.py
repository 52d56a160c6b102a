"""The event catalogue: importing this package registers every event type."""

from claimdesk.events import complaints, dispatch, intake
from claimdesk.events.base import REGISTRY, Envelope, Event, Registry, UnknownEvent

__all__ = [
    "REGISTRY",
    "Envelope",
    "Event",
    "Registry",
    "UnknownEvent",
    "complaints",
    "dispatch",
    "intake",
]
