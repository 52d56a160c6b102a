"""Identity over real HTTP: insurer keys (hash only, rotate, revoke), staff tokens, admin guard."""

from __future__ import annotations

from claimdesk.auth import issue_token
from claimdesk.testing.plugin import TEST_SECRET
from intake.bootstrap import DEFINITION
from intake.identity import hash_key

from tests.integration.intake.helpers import ADMIN, add_insurer, add_staff, bearer, case_body


async def test_insurer_keys_are_hashed_rotated_and_revoked(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        c = svc.client
        key = await add_insurer(c, "PICC")
        # the key itself is stored nowhere, only its hash
        async with svc.runtime.pool.acquire() as conn:
            rows = await conn.fetch("SELECT key_hash, key_prefix FROM api_keys")
            dump = str(await conn.fetch("SELECT * FROM api_keys"))
        assert [r["key_hash"] for r in rows] == [hash_key(key)]
        assert key not in dump
        r = await c.post("/v1/cases", json=case_body(), headers=bearer(key))
        assert r.status_code == 201, r.text

        dup = await c.post(
            "/v1/admin/insurers", json={"code": "PICC", "name": "人保重复"}, headers=ADMIN
        )
        assert dup.status_code == 409

        rotated = await c.post("/v1/admin/insurers/PICC/keys/rotate", headers=ADMIN)
        assert rotated.status_code == 200
        new_key = rotated.json()["api_key"]
        assert new_key != key
        assert (await c.get("/v1/cases", headers=bearer(key))).status_code == 401
        assert (await c.get("/v1/cases", headers=bearer(new_key))).status_code == 200

        revoked = await c.post("/v1/admin/insurers/PICC/keys/revoke", headers=ADMIN)
        assert revoked.json() == {"revoked": 1}
        r = await c.get("/v1/cases", headers=bearer(new_key))
        assert r.status_code == 401
        assert "revoked" in r.json()["message"]
        assert (await c.get("/v1/cases", headers=bearer("cdk_madeup"))).status_code == 401
        assert (
            await c.post("/v1/admin/insurers/NOPE/keys/rotate", headers=ADMIN)
        ).status_code == 404


async def test_admin_endpoints_need_the_admin_token(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        c = svc.client
        key = await add_insurer(c, "CPIC")
        manager = await add_staff(c, "M001", "manager")
        body = {"code": "ZZZ", "name": "某保险"}
        assert (await c.post("/v1/admin/insurers", json=body)).status_code == 401
        assert (
            await c.post("/v1/admin/insurers", json=body, headers=bearer(key))
        ).status_code == 403
        assert (
            await c.post("/v1/admin/insurers", json=body, headers=bearer(manager))
        ).status_code == 403
        bad = await c.post("/v1/admin/insurers", json=body, headers=bearer("wrong-admin"))
        assert bad.status_code == 401
        staff = {"number": "A9", "name": "x", "role": "agent"}
        assert (
            await c.post("/v1/admin/staff", json=staff, headers=bearer(manager))
        ).status_code == 403
        listed = await c.get("/v1/admin/insurers", headers=ADMIN)
        assert [i["code"] for i in listed.json()] == ["CPIC"]
        assert listed.json()[0]["active_keys"] == 1


async def test_staff_tokens_rotate_revoke_and_deactivate(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(DEFINITION) as svc:
        c = svc.client
        token = await add_staff(c, "A001", "agent")
        assert (await c.get("/v1/cases", headers=bearer(token))).status_code == 200
        dup = await c.post(
            "/v1/admin/staff", json={"number": "A001", "name": "x", "role": "agent"}, headers=ADMIN
        )
        assert dup.status_code == 409
        bad_role = await c.post(
            "/v1/admin/staff", json={"number": "A002", "name": "x", "role": "boss"}, headers=ADMIN
        )
        assert bad_role.status_code == 422
        assert bad_role.json()["fields"][0]["field"] == "role"

        rotated = await c.post("/v1/admin/staff/A001/tokens/rotate", headers=ADMIN)
        new = rotated.json()
        assert (await c.get("/v1/cases", headers=bearer(token))).status_code == 401
        assert (await c.get("/v1/cases", headers=bearer(new["token"]))).status_code == 200

        one = await c.post(f"/v1/admin/tokens/{new['token_id']}/revoke", headers=ADMIN)
        assert one.json() == {"revoked": 1}
        assert (await c.get("/v1/cases", headers=bearer(new["token"]))).status_code == 401

        third = (await c.post("/v1/admin/staff/A001/tokens/rotate", headers=ADMIN)).json()
        assert (await c.get("/v1/cases", headers=bearer(third["token"]))).status_code == 200
        off = await c.post("/v1/admin/staff/A001/revoke", headers=ADMIN)
        assert off.json() == {"revoked": 1}
        assert (await c.get("/v1/cases", headers=bearer(third["token"]))).status_code == 401
        # a token signed for that number elsewhere is refused too (deactivated staff)
        from datetime import UTC, datetime, timedelta

        forged, _ = issue_token(
            TEST_SECRET,
            subject="x",
            role="agent",
            now=datetime.now(UTC),
            ttl=timedelta(hours=1),
            number="A001",
        )
        assert (await c.get("/v1/cases", headers=bearer(forged))).status_code == 401
        staff = (await c.get("/v1/admin/staff", headers=ADMIN)).json()
        assert staff[0]["active"] is False
        # a token with a bad signature is 401
        wrong, _ = issue_token(
            "another-secret-0123456789abcdefghij",
            subject="x",
            role="manager",
            now=datetime.now(UTC),
            ttl=timedelta(hours=1),
            number="M9",
        )
        assert (await c.get("/v1/cases", headers=bearer(wrong))).status_code == 401


async def test_a_key_revoked_by_another_process_stops_working_within_the_cache_ttl(
    start_service,
) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from intake.identity import KEY_CACHE_TTL_S

    async with start_service(DEFINITION) as svc:
        key = await add_insurer(svc.client, "PICC")
        assert (await svc.client.get("/v1/cases", headers=bearer(key))).status_code == 200
        async with svc.runtime.pool.acquire() as conn:  # as another intake replica would
            await conn.execute("UPDATE api_keys SET revoked_at = now()")
        await asyncio.sleep(KEY_CACHE_TTL_S + 0.1)
        assert (await svc.client.get("/v1/cases", headers=bearer(key))).status_code == 401
