"""Renders the event catalogue (docs/events.md) from the registered pydantic models."""

from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import BaseModel

from claimdesk.events import REGISTRY


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if not hasattr(annotation, "__args__") else None
    text = text or str(annotation)
    text = re.sub(r"\b(?:typing|datetime|uuid|claimdesk\.events\.\w+)\.", "", text)
    return text.replace("|", "\\|")


def _nested(annotation: Any) -> list[type[BaseModel]]:
    """Models used inside a field's type (list[ClockDue] -> [ClockDue])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _nested(arg)]


def _field_rows(model: type[BaseModel]) -> list[str]:
    rows = ["| field | type | required |", "|---|---|---|"]
    for name, f in model.model_fields.items():
        desc = f" — {f.description}" if f.description else ""
        rows.append(
            f"| `{name}` | `{_type_name(f.annotation)}`{desc} | {'yes' if f.is_required() else 'no'} |"
        )
    return rows


def render_markdown() -> str:
    lines = [
        "# Event catalogue",
        "",
        "Generated from the pydantic models by `claimdesk events-doc` (`make docs`); a test fails",
        "when this file is stale. Every event travels in the envelope below, on the topic",
        "`claimdesk.<context>`, keyed by its case id (or its own stream when it has no case).",
        "",
        "## Envelope",
        "",
        "| field | meaning |",
        "|---|---|",
    ]
    from claimdesk.events.base import Envelope

    for name, f in Envelope.model_fields.items():
        lines.append(f"| `{name}` | {f.description or name.replace('_', ' ')} |")
    lines.append("")
    context = None
    nested: dict[str, type[BaseModel]] = {}
    for cls in REGISTRY.all():
        if cls.context != context:
            context = cls.context
            lines += [f"## {context} (topic `claimdesk.{context}`)", ""]
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        lines += [
            f"### {cls.event_type} (v{cls.schema_version})",
            "",
            doc,
            "",
        ]
        for version, upcaster in REGISTRY.upcasters(cls.event_type):
            why = (upcaster.__doc__ or "").strip().splitlines()[0] if upcaster.__doc__ else ""
            lines.append(f"Stored or published v{version} is read as v{version + 1}: {why}")
        if REGISTRY.upcasters(cls.event_type):
            lines.append("")
        lines += [*_field_rows(cls), ""]
        for f in cls.model_fields.values():
            for model in _nested(f.annotation):
                nested.setdefault(model.__name__, model)
    lines += ["## Types used inside payloads", ""]
    for name, model in sorted(nested.items()):
        lines += [f"### {name}", "", *_field_rows(model), ""]
    return "\n".join(lines)
