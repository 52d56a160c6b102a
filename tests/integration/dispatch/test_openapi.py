"""OpenAPI: every dispatch endpoint has a summary, a description and request/response examples."""

from __future__ import annotations

from typing import Any

from claimdesk.settings import Settings
from dispatch.bootstrap import make_definition
from dispatch.settings import DispatchSettings


def _schema(doc: dict[str, Any], ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    ref = ref_or_schema.get("$ref")
    if ref:
        out: dict[str, Any] = doc["components"]["schemas"][ref.split("/")[-1]]
        return out
    if "anyOf" in ref_or_schema:  # an optional body
        for s in ref_or_schema["anyOf"]:
            if "$ref" in s:
                return _schema(doc, s)
    return ref_or_schema


def _has_example(doc: dict[str, Any], content: dict[str, Any]) -> bool:
    for media in content.values():
        if "example" in media or "examples" in media:
            return True
        schema = _schema(doc, media.get("schema", {}))
        if "examples" in schema or "example" in schema:
            return True
    return False


async def test_every_endpoint_is_documented_with_examples(
    settings: Settings, start_service
) -> None:
    async with start_service(make_definition(DispatchSettings())) as svc:
        doc = (await svc.client.get("/openapi.json")).json()
    problems = []
    ops = 0
    for path, item in doc["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in item.items():
            ops += 1
            where = f"{method.upper()} {path}"
            if not op.get("summary") or not op.get("description"):
                problems.append(f"{where}: summary/description")
            body = op.get("requestBody")
            if body and not _has_example(doc, body["content"]):
                problems.append(f"{where}: request example")
            ok = next((op["responses"][c] for c in ("200", "201") if c in op["responses"]), None)
            if ok is None or not _has_example(doc, ok.get("content", {})):
                problems.append(f"{where}: response example")
    assert ops >= 25
    assert problems == []
    surveyor_in = doc["components"]["schemas"]["SurveyorIn"]["properties"]
    assert "查勘组" in surveyor_in["team"]["description"]
