"""Every metric the Grafana dashboard and the alert rules query is exported by a running
worker's /metrics (not only defined in the registry module)."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from tests.ops.test_metric_references import ALERTS, DASHBOARDS, _dashboard_exprs, _names

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created", "_info")


def family(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_running_worker_exports_every_queried_metric(deployment) -> None:
    worker = deployment()
    worker.start()
    worker.wait_ready()
    with urllib.request.urlopen(worker.url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    exported = set(re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE))
    referenced = set()
    for path in DASHBOARDS:
        referenced |= _names(_dashboard_exprs(json.loads(path.read_text())))
    referenced |= _names([line for line in ALERTS.read_text().splitlines() if "expr:" in line])
    assert len(referenced) >= 20
    missing = {name for name in referenced if family(name) not in exported and name not in exported}
    assert missing == set(), f"queried but not exported by the worker: {sorted(missing)}"
    assert worker.stop() == 0
