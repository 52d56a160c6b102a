"""Mainland China formats every service checks the same way: licence plates, phone numbers,
and the distance between two coordinates. Pure functions, plus pydantic types for models.

`Plate` and `Phone` normalise what people type (spaces, dots, +86) before checking, and fail
with a message in English and Chinese naming the expected form.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_L = "A-HJ-NP-Z"  # letters used on plates (no I, no O)
PLATE_RE = re.compile(
    rf"^[{PROVINCES}][{_L}]"
    rf"(?:[{_L}0-9]{{5}}"  # ordinary: 沪A12345, 沪AB1C23
    rf"|[DF][{_L}0-9][0-9]{{4}}"  # new-energy small car: 沪AD12345
    rf"|[0-9]{{5}}[DF]"  # new-energy large vehicle: 沪A12345D
    rf"|[{_L}0-9]{{4}}[挂学警港澳])$"  # trailer, learner, police, HK/Macau
)
MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
LANDLINE_RE = re.compile(r"^0\d{2,3}-?[1-9]\d{6,7}(?:-\d{1,6})?$")
SERVICE_RE = re.compile(r"^(?:95\d{3,4}|400-?\d{3}-?\d{4})$")  # 95518, 400 numbers


def normalise_plate(value: str) -> str:
    return re.sub(r"[\s·.\-]", "", value).upper()


def plate_error(plate: str) -> str | None:
    if PLATE_RE.match(plate):
        return None
    if not plate or plate[0] not in PROVINCES:
        return "plate must start with a province abbreviation such as 沪, 京 or 粤 (车牌号格式错误)"
    return (
        "not a mainland plate: expected e.g. 沪A12345, new-energy 沪AD12345 or 沪A12345D "
        "(车牌号格式错误)"
    )


def normalise_phone(value: str) -> str:
    v = re.sub(r"[\s()]", "", value)
    if v.startswith("+86"):
        v = v[3:]
    elif v.startswith("0086"):
        v = v[4:]
    if v.startswith("-"):
        v = v[1:]
    digits = v.replace("-", "")
    if MOBILE_RE.match(digits):
        return digits
    return v


def phone_error(phone: str) -> str | None:
    if MOBILE_RE.match(phone) or LANDLINE_RE.match(phone) or SERVICE_RE.match(phone):
        return None
    return (
        "not a mainland phone number: a mobile 1[3-9]xxxxxxxxx (11 digits) or a landline "
        "with area code such as 021-62345678 (电话号码格式错误)"
    )


def _check(error: Callable[[str], str | None]) -> Callable[[str], str]:
    def check(value: str) -> str:
        message = error(value)
        if message:
            raise ValueError(message)
        return value

    return check


def _normalise(fn: Callable[[str], str]) -> Callable[[object], object]:
    def before(value: object) -> object:
        return fn(value) if isinstance(value, str) else value

    return before


Plate = Annotated[
    str, BeforeValidator(_normalise(normalise_plate)), AfterValidator(_check(plate_error))
]
"""A mainland licence plate (车牌号), normalised: `沪 a-12345` becomes `沪A12345`."""

Phone = Annotated[
    str, BeforeValidator(_normalise(normalise_phone)), AfterValidator(_check(phone_error))
]
"""A mainland mobile, landline or service number, normalised: `+86 138 0013 8000` becomes
`13800138000`."""


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(a))
