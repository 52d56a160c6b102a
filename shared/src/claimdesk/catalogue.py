"""Renders the event catalogue (docs/events.md) from the registered pydantic models."""

from __future__ import annotations

from typing import Any

from claimdesk.events import REGISTRY


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if not hasattr(annotation, "__args__") else None
    text = text or str(annotation)
    for prefix in ("typing.", "datetime.", "claimdesk.events.dispatch.", "uuid."):
        text = text.replace(prefix, "")
    return text.replace("|", "\\|")


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
            "| field | type | required |",
            "|---|---|---|",
        ]
        for name, f in cls.model_fields.items():
            desc = f" — {f.description}" if f.description else ""
            lines.append(
                f"| `{name}` | `{_type_name(f.annotation)}`{desc} | {'yes' if f.is_required() else 'no'} |"
            )
        lines.append("")
    return "\n".join(lines)
