"""OpenAPI served over HTTP: every /v1 endpoint has a summary, a description and examples;
contract fields are described in English and Chinese."""

from __future__ import annotations

import re
from typing import Any

from intake.bootstrap import DEFINITION

CJK = re.compile(r"[\u4e00-\u9fff]")


async def test_every_endpoint_is_documented_with_examples(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        spec = (await svc.client.get("/openapi.json")).json()
    schemas: dict[str, Any] = spec["components"]["schemas"]

    def resolved(schema: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in schema:
            return schemas[schema["$ref"].split("/")[-1]]
        if schema.get("type") == "array":
            return resolved(schema["items"])
        return schema

    problems = []
    operations = 0
    for path, ops in spec["paths"].items():
        if not path.startswith("/v1"):
            continue
        for method, op in ops.items():
            operations += 1
            name = f"{method.upper()} {path}"
            if not op.get("summary") or not op.get("description"):
                problems.append(f"{name}: summary/description")
            body = op.get("requestBody")
            if body and not resolved(body["content"]["application/json"]["schema"]).get("examples"):
                problems.append(f"{name}: request example")
            for code, resp in op["responses"].items():
                if not code.startswith("2") or code == "204":
                    continue
                content = resp.get("content", {}).get("application/json", {})
                if not (
                    content.get("example") or resolved(content.get("schema", {})).get("examples")
                ):
                    problems.append(f"{name}: {code} example")
            for code in ("401", "403"):
                if code not in op["responses"]:
                    problems.append(f"{name}: documents no {code}")
    assert operations >= 25
    assert not problems, "\n".join(problems)

    case_in = schemas["CaseIn"]["properties"]
    for field in (
        "report_no",
        "plate",
        "loss_type",
        "loss_time",
        "loss_address",
        "reporter_phone",
        "survey_place",
        "priority",
    ):
        desc = case_in[field].get("description", "")
        assert CJK.search(desc) and re.search(r"[a-z]{3}", desc), (field, desc)
    for model in ("CaseOut", "PhoneReportIn", "ConsultationIn", "WebhookIn", "DeliveryOut"):
        for field, prop in schemas[model]["properties"].items():
            assert CJK.search(prop.get("description", "")), (model, field)
