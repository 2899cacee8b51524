"""Every metric the Grafana dashboard and the alert rules query is one app.metrics defines.

A renamed metric then breaks this test instead of silently emptying a panel or disarming an
alert. Names are read from the registry itself, with the sample suffixes Prometheus exports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from app import metrics
from tests.ops.conftest import CHART

pytestmark = pytest.mark.ops

METRIC_NAME = re.compile(r"\bblotter_[a-z0-9_]+\b")
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
ALERTS = CHART / "files" / "alerts.yaml"


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs: list[str] = []

    def visit(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            exprs.extend(t["expr"] for t in panel.get("targets", []) if "expr" in t)
            visit(panel.get("panels", []))

    visit(dashboard["panels"])
    exprs.extend(_strings(dashboard.get("templating", {})))
    return exprs


def _names(texts: list[str]) -> set[str]:
    return {name for text in texts for name in METRIC_NAME.findall(text)}


def test_exported_names_include_sample_suffixes_and_nothing_invented() -> None:
    names = metrics.exported_metric_names()
    assert "blotter_events_in_total" in names
    assert "blotter_processing_seconds_bucket" in names
    assert "blotter_build_info" in names
    assert "blotter_partition_last_fetch_age_seconds" in names
    assert "blotter_events_in" not in names  # the family name is not a sample name
    assert "blotter_does_not_exist_total" not in names


@pytest.mark.parametrize("dashboard_path", DASHBOARDS, ids=lambda p: p.name)
def test_every_dashboard_metric_is_defined(dashboard_path: Any) -> None:
    dashboard = json.loads(dashboard_path.read_text())
    referenced = _names(_dashboard_exprs(dashboard))
    assert len(referenced) >= 20, "the dashboard should cover the app's metrics"
    assert referenced - metrics.exported_metric_names() == set()


def test_every_alert_rule_metric_is_defined() -> None:
    expressions = [line for line in ALERTS.read_text().splitlines() if "expr:" in line]
    referenced = _names(expressions)
    assert len(expressions) >= 6
    assert referenced - metrics.exported_metric_names() == set()
    assert {
        "blotter_consumer_lag",
        "blotter_events_dead_lettered_total",
        "blotter_positions_provisional_oldest_age_seconds",
        "blotter_partition_last_fetch_age_seconds",
        "blotter_ws_slow_consumer_closes_total",
        "blotter_worker_ready",
    } <= referenced


def test_dashboard_panels_have_unique_ids_and_a_datasource_variable() -> None:
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        ids: list[int] = []

        def collect(panels: list[dict[str, Any]], ids: list[int] = ids) -> None:
            for panel in panels:
                ids.append(panel["id"])
                collect(panel.get("panels", []))

        collect(dashboard["panels"])
        assert len(ids) == len(set(ids)), path.name
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
