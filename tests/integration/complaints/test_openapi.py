"""Every complaints endpoint is documented: summary, description, examples, field texts."""

from __future__ import annotations

import re
from typing import Any

from complaints.bootstrap import DEFINITION

from tests.integration.complaints.helpers import clock

CJK = re.compile(r"[\u4e00-\u9fff]")


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        out: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
        return out
    return schema


async def test_every_endpoint_has_summary_description_and_examples(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION, clock=clock()) as svc:
        spec = (await svc.client.get("/openapi.json")).json()
    ours = {
        p: ops
        for p, ops in spec["paths"].items()
        if p.startswith(("/v1/", "/complaint-form", "/agent"))
    }
    assert len(ours) >= 20
    for path, ops in ours.items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert op.get("summary"), where
            assert op.get("description"), where
            if path.startswith("/v1/"):
                ok = op["responses"].get("200") or op["responses"].get("201")
                assert ok and "example" in ok["content"]["application/json"], where
            body = op.get("requestBody")
            if body:
                schema = resolve(spec, body["content"]["application/json"]["schema"])
                assert schema.get("examples"), where
                for name, field in schema.get("properties", {}).items():
                    assert field.get("description"), f"{where}: {name}"
    complaint = spec["components"]["schemas"]["ComplaintIn"]["properties"]
    assert all(CJK.search(f["description"]) for f in complaint.values())
