"""The Prometheus alert rules, as the chart renders them, checked and unit-tested by promtool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.conftest import MONITORING_API, OpsTools, RenderFn, one

pytestmark = [pytest.mark.ops, pytest.mark.timeout(900)]

RULES_TEST = Path(__file__).with_name("rules_test.yaml")
REQUIRED_ALERTS = {
    "BlotterConsumerLagHigh",
    "BlotterDeadLetters",
    "BlotterProvisionalPositionsPastSla",
    "BlotterPartitionStalled",
    "BlotterWebSocketSlowConsumers",
    "BlotterWorkerNotReady",
}


def _rule_groups(render: RenderFn, *set_values: str) -> list[dict[str, Any]]:
    manifests = render(
        set_values=["metrics.prometheusRule.enabled=true", *set_values],
        api_versions=[MONITORING_API],
        show_only="templates/prometheusrule.yaml",
    )
    return one(manifests, "PrometheusRule", "trade-blotter")["spec"]["groups"]


def _alerts(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


@pytest.fixture(scope="module")
def rules_dir(render: RenderFn, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rendered rule file beside a copy of rules_test.yaml whose expected alerts get the
    rule's static `description` (prose that would only be duplicated in the test file)."""
    groups = _rule_groups(render)
    directory = tmp_path_factory.mktemp("rules")
    (directory / "alerts.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    alerts = _alerts(groups)
    spec = yaml.safe_load(RULES_TEST.read_text())
    for case in spec["tests"]:
        for check in case.get("alert_rule_test", []):
            static = alerts[check["alertname"]]["annotations"]
            for expected in check.get("exp_alerts") or []:
                annotations = expected.setdefault("exp_annotations", {})
                for key, value in static.items():
                    if "{{" not in value:
                        annotations.setdefault(key, value)
    (directory / RULES_TEST.name).write_text(yaml.safe_dump(spec, sort_keys=False))
    return directory


def test_promtool_check_rules(ops_tools: OpsTools, rules_dir: Path) -> None:
    result = ops_tools.run(ops_tools.promtool, "check", "rules", "alerts.yaml", cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass(ops_tools: OpsTools, rules_dir: Path) -> None:
    result = ops_tools.run(ops_tools.promtool, "test", "rules", RULES_TEST.name, cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_required_alert_exists_and_is_unit_tested(render: RenderFn) -> None:
    alerts = _alerts(_rule_groups(render))
    assert set(alerts) >= REQUIRED_ALERTS
    tested = {
        check["alertname"]
        for case in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for check in case.get("alert_rule_test", [])
        if check.get("exp_alerts")
    }
    assert tested == set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"], name


def test_thresholds_and_job_selector_come_from_values(render: RenderFn) -> None:
    alerts = _alerts(
        _rule_groups(
            render,
            "alerts.provisionalPositions.slaSeconds=900",
            "alerts.consumerLag.threshold=250",
            "alerts.workerNotReady.for=30m",
            'alerts.jobSelector=job="blotter"',
        )
    )
    assert alerts["BlotterProvisionalPositionsPastSla"]["expr"].endswith("> 900")
    assert alerts["BlotterConsumerLagHigh"]["expr"].endswith("> 250")
    assert alerts["BlotterWorkerNotReady"]["for"] == "30m"
    assert all('{job="blotter"}' in rule["expr"] for rule in alerts.values())
