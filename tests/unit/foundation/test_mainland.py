"""The shared mainland formats as pydantic types: normalised, or a 422-worthy message."""

from __future__ import annotations

import pytest
from claimdesk.mainland import Phone, Plate, distance_km
from pydantic import BaseModel, ValidationError


class Contact(BaseModel):
    phone: Phone
    plate: Plate | None = None


@pytest.mark.parametrize(
    ("raw", "stored"),
    [("+86 138 0013 8000", "13800138000"), ("021-62345678", "021-62345678"), ("95518", "95518")],
)
def test_phone_is_normalised(raw: str, stored: str) -> None:
    assert Contact(phone=raw).phone == stored


@pytest.mark.parametrize(
    ("raw", "stored"), [("沪 a-12345", "沪A12345"), ("粤BD12345", "粤BD12345")]
)
def test_plate_is_normalised(raw: str, stored: str) -> None:
    assert Contact(phone="13800138000", plate=raw).plate == stored


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("phone", "12345", "电话号码格式错误"),
        ("plate", "XA12345", "province"),
        ("plate", "沪AI2345", "车牌号格式错误"),
    ],
)
def test_bad_values_name_the_expected_form(field: str, value: str, message: str) -> None:
    values = {"phone": "13800138000", field: value}
    with pytest.raises(ValidationError) as info:
        Contact(**values)
    [error] = info.value.errors()
    assert error["loc"] == (field,)
    assert message in error["msg"]


def test_distance_between_people_square_and_pudong_airport() -> None:
    assert distance_km(31.2304, 121.4737, 31.1443, 121.8083) == pytest.approx(33.4, abs=0.5)
