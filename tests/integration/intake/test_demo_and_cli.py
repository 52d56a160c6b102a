"""Demo seeding (idempotent, credentials file, case stream) and the admin CLI over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from urllib.parse import urlsplit

import pytest
from claimdesk.settings import Settings
from claimdesk.testing.plugin import TEST_ADMIN, eventually
from intake.bootstrap import DEFINITION

from tests.integration.intake.helpers import ADMIN, bearer


def _creds(settings: Settings) -> dict[str, str]:
    out = {}
    for line in (settings.data_dir / "credentials-intake.txt").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] in ("insurer", "staff"):
            out[parts[1]] = parts[2]
    return out


async def test_demo_seeds_once_writes_credentials_and_streams_cases(
    settings: Settings, start_service, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CLAIMDESK_INTAKE_DEMO_CASE_INTERVAL_S", "0.2")
    demo = settings.model_copy(update={"demo": True})
    async with start_service(DEFINITION, demo) as svc:
        creds = _creds(demo)
        assert {"PICC", "PINGAN", "CPIC", "A001", "D001", "M001"} <= set(creds)
        assert all(v.startswith("cdk_") for k, v in creds.items() if k in ("PICC", "CPIC"))
        r = await svc.client.get("/v1/cases", headers=bearer(creds["PICC"]))
        assert r.status_code == 200
        page = await eventually(lambda: _cases(svc.client, creds["M001"], 2), timeout=15)
        for case in page:
            assert case["region"] and case["region"].startswith("上海市")
            assert 30.6 < case["loss_lat"] < 31.8 and 120.8 < case["loss_lon"] < 122.0

        async def consultations() -> list:  # type: ignore[type-arg]
            r = await svc.client.get("/v1/consultations", headers=bearer(creds["M001"]))
            return list(r.json())

        logged = await eventually(consultations, timeout=15)
        assert logged[0]["agent"] == "A001"
    async with start_service(DEFINITION, demo) as svc:
        again = _creds(demo)
        assert again == creds  # keys and tokens survive a restart; nothing is duplicated
        insurers = (await svc.client.get("/v1/admin/insurers", headers=ADMIN)).json()
        assert sorted(i["code"] for i in insurers) == ["CPIC", "PICC", "PINGAN"]
        assert all(i["active_keys"] == 1 for i in insurers)
        r = await svc.client.get("/v1/cases", headers=bearer(again["PINGAN"]))
        assert r.status_code == 200


async def _cases(client, token: str, at_least: int):  # type: ignore[no-untyped-def]
    items = (await client.get("/v1/cases", headers=bearer(token))).json()["items"]
    return items if len(items) >= at_least else None


async def _cli(url: str, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "CLAIMDESK_INTAKE_PORT": str(urlsplit(url).port),
        "CLAIMDESK_HOST": "127.0.0.1",
        "CLAIMDESK_ADMIN_TOKEN": TEST_ADMIN,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "claimdesk.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_adds_insurers_and_staff_over_http(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        code, out, _ = await _cli(
            svc.url, "insurer", "add", "--code", "TPY", "--name", "太平洋保险"
        )
        assert code == 0
        key = json.loads(out)["api_key"]
        assert (await svc.client.get("/v1/cases", headers=bearer(key))).status_code == 200
        code, _, err = await _cli(svc.url, "insurer", "add", "--code", "TPY", "--name", "重复")
        assert code == 1
        assert "409" in err
        code, out, _ = await _cli(
            svc.url, "staff", "add", "--number", "A007", "--name", "王丽", "--role", "agent"
        )
        assert code == 0
        token = json.loads(out)["token"]
        assert (await svc.client.get("/v1/cases", headers=bearer(token))).status_code == 200
        code, out, _ = await _cli(svc.url, "staff", "revoke", "--number", "A007")
        assert code == 0
        assert (await svc.client.get("/v1/cases", headers=bearer(token))).status_code == 401
