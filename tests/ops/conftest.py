"""Fixtures for the offline operations checks: real `helm` and `promtool` binaries, installed by
.ci/install-ops-tools.sh on first use, and the chart rendered once per value set."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "trade-blotter"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
TOOLS_BIN = ROOT / ".tools" / "bin"
INSTALL_SCRIPT = ROOT / ".ci" / "install-ops-tools.sh"
RELEASE = "trade-blotter"
NAMESPACE = "trading"
MONITORING_API = "monitoring.coreos.com/v1"
KEDA_API = "keda.sh/v1alpha1"

Manifest = dict[str, Any]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "ops: offline checks of the Helm chart, dashboards and alert rules"
    )


@dataclass(frozen=True)
class OpsTools:
    helm: Path
    promtool: Path

    def run(self, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run a tool; the caller asserts on the return code so failures show the output."""
        return subprocess.run(
            [str(a) for a in args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture(scope="session")
def ops_tools() -> OpsTools:
    tools = OpsTools(helm=TOOLS_BIN / "helm", promtool=TOOLS_BIN / "promtool")
    if not (os.access(tools.helm, os.X_OK) and os.access(tools.promtool, os.X_OK)):
        result = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(
                f"{INSTALL_SCRIPT.name} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
    return tools


RenderFn = Callable[..., list[Manifest]]


@pytest.fixture(scope="session")
def render(ops_tools: OpsTools) -> RenderFn:
    """`helm template` the chart and return its documents (empty ones dropped)."""

    def _render(
        *,
        values_files: Sequence[Path] = (),
        set_values: Sequence[str] = (),
        api_versions: Sequence[str] = (),
        show_only: str | None = None,
    ) -> list[Manifest]:
        args: list[str | Path] = [
            ops_tools.helm, "template", RELEASE, CHART, "--namespace", NAMESPACE,
        ]  # fmt: skip
        for path in values_files:
            args += ["--values", path]
        for item in set_values:
            args += ["--set", item]
        for api in api_versions:
            args += ["--api-versions", api]
        if show_only:
            args += ["--show-only", show_only]
        result = ops_tools.run(*args)
        assert result.returncode == 0, result.stderr
        import yaml  # dev extra; imported here so that tests not rendering YAML run without it

        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return _render


@pytest.fixture(scope="session")
def default_manifests(render: RenderFn) -> list[Manifest]:
    return render()


@pytest.fixture(scope="session")
def full_manifests(render: RenderFn) -> list[Manifest]:
    return render(values_files=[FULL_VALUES], api_versions=[MONITORING_API, KEDA_API])


def by_kind(manifests: Sequence[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m.get("kind") == kind]


def one(manifests: Sequence[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in by_kind(manifests, kind) if m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]
