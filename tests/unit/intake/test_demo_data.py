"""Demo data is valid input: generated cases pass the contract; default checklists are sane."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from intake.demo import demo_data, random_case, random_consultation
from intake.documents import default_checklist, defaults
from intake.schemas import CaseIn, ConsultationIn, InsurerIn, StaffIn
from intake.validation import derive_region


def test_generated_cases_are_valid_and_in_shanghai() -> None:
    rnd = random.Random(7)
    now = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    plates = set()
    for n in range(300):
        case = CaseIn.model_validate(random_case(rnd, now, n))
        assert case.loss_time < now
        assert case.loss_lat is not None and case.loss_lon is not None
        assert 30.6 < case.loss_lat < 31.9 and 120.8 < case.loss_lon < 122.1
        assert derive_region(case.loss_address, case.loss_lat, case.loss_lon)
        if case.survey_place == "repair_shop":
            assert case.repair_shop
        plates.add(case.plate)
    assert len(plates) > 250  # realistic variety, few accidental duplicates


def test_demo_insurers_and_staff_are_valid() -> None:
    data = demo_data()
    assert [i["code"] for i in data["insurers"]] == ["PICC", "PINGAN", "CPIC"]
    for i in data["insurers"]:
        InsurerIn.model_validate(i)
    roles = {StaffIn.model_validate(s).role for s in data["staff"]}
    assert roles == {"agent", "dispatcher", "team_lead", "supervisor", "manager"}


def test_every_insurer_and_loss_type_has_a_checklist() -> None:
    for insurer in ["PICC", "PINGAN", "CPIC", "OTHER"]:
        for loss in ["vehicle_own_damage", "vehicle_third_party", "injury", "property", "other"]:
            items = default_checklist(insurer, loss)
            codes = [i["code"] for i in items]
            assert "claim_form" in codes
            assert len(set(codes)) == len(codes)
    assert default_checklist("PICC", "vehicle_own_damage") != default_checklist(
        "CPIC", "vehicle_own_damage"
    )
    assert set(defaults()) == {"*", "PICC", "PINGAN", "CPIC"}


def test_generated_consultations_are_valid() -> None:
    rnd = random.Random(3)
    now = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    seen = set()
    for _ in range(100):
        q = ConsultationIn.model_validate(random_consultation(rnd, now))
        seen.add(q.resolved)
        if not q.resolved:
            assert q.follow_up_owner == "S001" and q.follow_up_due and q.follow_up_due > now
    assert seen == {True, False}
