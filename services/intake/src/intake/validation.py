"""The region of an address, from intake's district data (plate and phone formats are in
claimdesk.mainland). Pure functions."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from claimdesk.mainland import distance_km


@cache
def districts() -> list[dict[str, Any]]:
    text = resources.files("intake").joinpath("data/districts.json").read_text("utf-8")
    data: list[dict[str, Any]] = json.loads(text)
    return data


def derive_region(address: str, lat: float | None, lon: float | None) -> str | None:
    """The district (区) named in the address, else the nearest district centre within 40 km."""
    for d in districts():
        if any(alias in address for alias in d["aliases"]):
            return str(d["region"])
    if lat is not None and lon is not None:
        best = min(districts(), key=lambda d: distance_km(lat, lon, d["lat"], d["lon"]))
        if distance_km(lat, lon, best["lat"], best["lon"]) <= 40:
            return str(best["region"])
    return None
