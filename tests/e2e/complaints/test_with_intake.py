"""Complaints next to the real intake service: a consultation follow-up logged and handed over
in intake shows in the complaints worklist of its owners (events over the real broker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from claimdesk.testing.plugin import eventually
from complaints.bootstrap import DEFINITION as COMPLAINTS
from intake.bootstrap import DEFINITION as INTAKE


async def staff(intake: Any, number: str, role: str) -> dict[str, str]:
    r = await intake.client.post(
        "/v1/admin/staff",
        json={"number": number, "name": f"员工{number}", "role": role, "team": "坐席一组"},
        headers=intake.admin_headers(),
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def test_consultation_follow_up_from_intake_reaches_the_worklist(start_service) -> None:  # type: ignore[no-untyped-def]
    async with start_service(INTAKE) as intake, start_service(COMPLAINTS) as complaints:
        agent = await staff(intake, "A004", "agent")
        await staff(intake, "S005", "supervisor")
        await staff(intake, "A006", "agent")
        due = (datetime.now(UTC) + timedelta(hours=4)).replace(microsecond=0)
        r = await intake.client.post(
            "/v1/consultations",
            json={
                "caller_name": "刘强",
                "caller_phone": "021-62345678",
                "topic": "三者人伤误工费如何计算",
                "answer": "已记录,由主管核实后回复",
                "resolved": False,
                "follow_up_owner": "S005",
                "follow_up_due": due.isoformat(),
            },
            headers=agent,
        )
        assert r.status_code == 201, r.text
        qid = r.json()["consultation_id"]

        async def worklist(owner: str) -> list[dict[str, Any]]:
            r = await complaints.client.get(
                f"/v1/worklist?owner={owner}", headers=complaints.admin_headers()
            )
            items: list[dict[str, Any]] = r.json()["items"]
            return items

        owned = await eventually(lambda: worklist("A004"), timeout=20)
        assert [(i["item_type"], i["item_id"], i["relation"]) for i in owned] == [
            ("consultation", qid, "owner")
        ]
        assert datetime.fromisoformat(owned[0]["due_at"]) == due
        assert [(i["item_id"], i["relation"]) for i in await worklist("S005")] == [
            (qid, "assignee")
        ]

        r = await intake.client.post(
            f"/v1/consultations/{qid}/handover",
            json={"to_owner": "A006", "reason": "交班：本人下班"},
            headers=agent,
        )
        assert r.status_code == 200, r.text
        await eventually(lambda: worklist("A006"), timeout=20)
        assert await worklist("A004") == []
