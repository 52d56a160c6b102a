"""The Grafana dashboard: queries only real metric families, covers each of them, lays out."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from claimdesk import metrics
from prometheus_client import Counter, Gauge, Histogram

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "claimdesk.json"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def families() -> dict[str, set[str]]:
    """Family name -> the sample names Prometheus exposes for it."""
    out: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            out[value._name] = {f"{value._name}_total"}
        elif isinstance(value, Histogram):
            out[value._name] = {f"{value._name}_{s}" for s in ("bucket", "sum", "count")}
        elif isinstance(value, Gauge):
            out[value._name] = {value._name}
    return out


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_queries_use_only_metrics_that_exist_and_cover_them_all(dashboard: dict[str, Any]) -> None:
    known = families()
    samples = set().union(*known.values())
    used = {m for e in exprs(dashboard) for m in re.findall(r"\bclaimdesk_[a-z_]+", e)}
    assert used, "no queries"
    assert used <= samples, f"unknown metrics in the dashboard: {used - samples}"
    for family, names in known.items():
        assert names & used, f"no panel shows {family}"


def test_queries_are_well_formed(dashboard: dict[str, Any]) -> None:
    for e in exprs(dashboard):
        for open_, close in ("()", "{}", "[]"):
            depth = 0
            for ch in e:
                depth += (ch == open_) - (ch == close)
                assert depth >= 0, e
            assert depth == 0, e
        assert e.count('"') % 2 == 0, e
        # Counters and histogram buckets are read as rates, never raw.
        for counter in re.findall(r"\bclaimdesk_[a-z_]+(?:_total|_bucket)\b", e):
            assert re.search(rf"rate\({counter}\{{", e), e
        assert 'service=~"$service"' in e, e


def test_panels_have_unique_ids_a_datasource_and_do_not_overlap(
    dashboard: dict[str, Any],
) -> None:
    assert dashboard["uid"] and dashboard["title"] == "ClaimDesk"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["service"]["includeAll"] is True
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, f"panel {p['title']!r} overlaps another"
        cells |= mine
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}"
            assert p["targets"] and p["description"]
            assert all(t["refId"] and t["legendFormat"] for t in p["targets"])
