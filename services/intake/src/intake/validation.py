"""Mainland China formats (plates, phones) and the region of an address. Pure functions."""

from __future__ import annotations

import json
import math
import re
from functools import cache
from importlib import resources
from typing import Any

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


@cache
def districts() -> list[dict[str, Any]]:
    text = resources.files("intake").joinpath("data/districts.json").read_text("utf-8")
    data: list[dict[str, Any]] = json.loads(text)
    return data


def _distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(a))


def derive_region(address: str, lat: float | None, lon: float | None) -> str | None:
    """The district (区) named in the address, else the nearest district centre within 40 km."""
    for d in districts():
        if any(alias in address for alias in d["aliases"]):
            return str(d["region"])
    if lat is not None and lon is not None:
        best = min(districts(), key=lambda d: _distance_km(lat, lon, d["lat"], d["lon"]))
        if _distance_km(lat, lon, best["lat"], best["lon"]) <= 40:
            return str(best["region"])
    return None
