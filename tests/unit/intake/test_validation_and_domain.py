"""Pure rules: plates, phones, regions, status moves, corrections, differences, signatures."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from claimdesk.errors import Conflict, InvalidInput
from claimdesk.events.intake import CaseDetailsCorrected, CaseReported
from claimdesk.mainland import normalise_phone, normalise_plate, phone_error, plate_error
from intake.domain import advance_status, decide_cancel, decide_correction, differences, evolve
from intake.validation import derive_region
from intake.webhooks import sign, verify

T = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "plate",
    ["沪A12345", "沪AD12345", "沪ADA1234", "沪A12345D", "粤B12345F", "京N8P8P8", "沪A1234挂"],
)
def test_mainland_plates_accepted(plate: str) -> None:
    assert plate_error(plate) is None


@pytest.mark.parametrize(
    "plate",
    [
        "AB12345",
        "沪12345",
        "沪AI2345",
        "沪AO2345",
        "沪A1234",
        "沪A1234567",
        "沪AD1234X",
        "港A12345",
    ],
)
def test_bad_plates_rejected(plate: str) -> None:
    assert plate_error(plate) is not None


def test_plate_normalisation() -> None:
    assert normalise_plate(" 沪a·d1 2345 ") == "沪AD12345"


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("13812345678", "13812345678"),
        ("+86 138-1234-5678", "13812345678"),
        ("0086 19912345678", "19912345678"),
        ("021-62345678", "021-62345678"),
        ("0755-8888888", "0755-8888888"),
        ("95518", "95518"),
    ],
)
def test_phones_accepted(raw: str, norm: str) -> None:
    assert normalise_phone(raw) == norm
    assert phone_error(norm) is None


@pytest.mark.parametrize(
    "raw", ["12812345678", "1381234567", "138123456789", "62345678", "021-012345", "abc"]
)
def test_bad_phones_rejected(raw: str) -> None:
    assert phone_error(normalise_phone(raw)) is not None


def test_region_from_address_then_coordinates() -> None:
    assert derive_region("上海市黄浦区人民大道200号", None, None) == "上海市黄浦区"
    assert derive_region("碧波路690号", 31.2036, 121.5908) == "上海市浦东新区"
    assert derive_region("北京市朝阳区", 39.9, 116.4) is None
    assert derive_region("不明地点", None, None) is None


def test_status_only_moves_forward_and_never_out_of_cancelled() -> None:
    assert advance_status("reported", "assigned") == "assigned"
    assert advance_status("survey_completed", "surveyor_arrived") is None
    assert advance_status("assigned", "assigned") is None
    assert advance_status("cancelled", "closed") is None


def _case() -> dict[str, Any]:
    ev = CaseReported(
        case_id="C1",
        insurer_code="PICC",
        channel="insurer_api",
        loss_type="vehicle_own_damage",
        loss_time=T,
        loss_address="上海市浦东新区世纪大道100号",
        plate="沪A12345",
    )
    return evolve(None, ev, T)


def test_correction_records_previous_values_and_skips_no_ops() -> None:
    state = _case()
    events = decide_correction(
        state,
        {"plate": "x", "description": "d"},
        {"plate": "沪A12345", "description": "新"},
        "why",
        "agent:A1",
    )
    assert len(events) == 1
    e = events[0]
    assert isinstance(e, CaseDetailsCorrected)
    assert e.changes == {"description": "新"} and e.previous == {"description": ""}
    assert evolve(state, e, T)["description"] == "新"
    assert decide_correction(state, {"plate": "沪A12345"}, {"plate": "沪A12345"}, "w", "a") == []
    with pytest.raises(InvalidInput):
        decide_correction(state, {"channel": "phone"}, {}, "w", "a")


def test_cancelled_or_closed_cases_refuse_changes() -> None:
    state = evolve(_case(), decide_cancel(_case(), "撤案", "insurer:PICC")[0], T)
    assert state["status"] == "cancelled"
    with pytest.raises(Conflict) as exc:
        decide_correction(state, {"description": "x"}, {"description": "x"}, "w", "a")
    assert exc.value.details["state"] == "cancelled"
    with pytest.raises(Conflict):
        decide_cancel(state, "again", "a")
    with pytest.raises(Conflict):
        decide_cancel({**_case(), "status": "closed"}, "late", "a")


def test_differences_compare_filled_fields_at_minute_precision() -> None:
    phone = {
        "plate": "沪A12345",
        "loss_time": "2026-11-20T08:30:10Z",
        "loss_address": "世纪大道 100号",
        "reporter_name": None,
    }
    insurer = {
        "plate": "沪A12345",
        "loss_time": "2026-11-20T08:30:50+00:00",
        "loss_address": "世纪大道100号",
        "reporter_name": "张三",
    }
    assert differences(phone, insurer) == []
    insurer["plate"] = "沪A54321"
    assert differences(phone, insurer) == [("plate", "沪A12345", "沪A54321")]


def test_signature_recipe() -> None:
    body = b'{"event":"case.closed"}'
    sig = sign("whsec_x", 1700000000, body)
    assert sig.startswith("v1=") and len(sig) == 67
    assert verify("whsec_x", "1700000000", body, sig, now=1700000100)
    assert not verify("whsec_x", "1700000000", body, sig, now=1700001000)  # too old: replay
    assert not verify("whsec_x", "abc", body, sig, now=1700000000)


@pytest.mark.parametrize(
    ("url", "private"),
    [
        ("http://127.0.0.1:9/x", True),
        ("http://localhost/x", True),
        ("http://10.1.2.3/x", True),
        ("http://192.168.0.5/x", True),
        ("http://169.254.169.254/latest", True),
        ("http://[::1]/x", True),
        ("http://svc.internal/x", True),
        ("https://claims.example-insurer.cn/hook", False),
        ("https://8.8.8.8/hook", False),
    ],
)
def test_private_webhook_hosts(url: str, private: bool) -> None:
    from intake.webhooks import private_host

    assert private_host(url) is private
