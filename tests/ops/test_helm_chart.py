"""The Helm chart, checked offline with the real helm binary and Kubernetes' own schemas.

Default values must give a deployable minimum; full-featured values (coldpath split,
ServiceMonitor, PrometheusRule, KEDA, existingSecret) must give every optional object. Policy
checks encode what an SRE relies on at 3 a.m.: probes on the health endpoints, a PVC for RocksDB,
non-root with a read-only root filesystem, a PDB, static group membership, Faust's table views off.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.ops.conftest import (
    CHART,
    FULL_VALUES,
    KEDA_API,
    Manifest,
    OpsTools,
    RenderFn,
    by_kind,
    one,
)

pytestmark = [pytest.mark.ops, pytest.mark.timeout(900)]

CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject"}
K8S_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
CONTRACT_VARIABLES = {
    "BROKER_URL",
    "DATA_DIR",
    "WEB_HOST",
    "TOPIC_PARTITIONS",
    "DEFAULT_LOT_METHOD",
    "MAX_FUTURE_DAYS",
    "AUTH_MODE",
}
FAUST_VIEW_SWITCHES = (
    "APP_WEB_TABLES_ENABLED",
    "APP_WEB_ROUTER_ENABLED",
    "APP_WEB_GRAPH_ENABLED",
    "APP_WEB_STATS_ENABLED",
)


def _manifests(request: pytest.FixtureRequest, which: str) -> list[Manifest]:
    return request.getfixturevalue(f"{which}_manifests")


def _container(sts: Manifest) -> dict[str, Any]:
    containers = sts["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def _config_data(manifests: Sequence[Manifest]) -> dict[str, str]:
    return one(manifests, "ConfigMap", "trade-blotter-config")["data"]


# -- helm itself ----------------------------------------------------------------------------------
@pytest.mark.parametrize("values", [None, FULL_VALUES], ids=["default", "full"])
def test_helm_lint_strict_passes(ops_tools: OpsTools, values: Path | None) -> None:
    args: list[str | Path] = [ops_tools.helm, "lint", "--strict", CHART]
    if values is not None:
        args += ["--values", values]
    result = ops_tools.run(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_default_values_render_the_core_objects_only(default_manifests: list[Manifest]) -> None:
    kinds = sorted(m["kind"] for m in default_manifests)
    assert kinds == sorted(
        [
            "ConfigMap",  # environment
            "ConfigMap",  # Grafana dashboards
            "PodDisruptionBudget",
            "Service",  # client
            "Service",  # headless
            "ServiceAccount",
            "StatefulSet",
        ]
    )


def test_full_values_render_every_optional_object(full_manifests: list[Manifest]) -> None:
    names = {(m["kind"], m["metadata"]["name"]) for m in full_manifests}
    assert {
        ("StatefulSet", "trade-blotter"),
        ("StatefulSet", "trade-blotter-coldpath"),
        ("Service", "trade-blotter-coldpath-headless"),
        ("PodDisruptionBudget", "trade-blotter-coldpath"),
        ("ServiceMonitor", "trade-blotter"),
        ("PrometheusRule", "trade-blotter"),
        ("ScaledObject", "trade-blotter"),
    } <= names
    # existingSecret: the chart must not create its own Secret
    assert by_kind(full_manifests, "Secret") == []


def test_monitoring_objects_need_the_operator_api(render: RenderFn) -> None:
    without_api = render(values_files=[FULL_VALUES])
    kinds = {m["kind"] for m in without_api}
    assert "ServiceMonitor" not in kinds
    assert "PrometheusRule" not in kinds


def test_chart_renders_on_its_minimum_kubernetes_version(ops_tools: OpsTools) -> None:
    ok = ops_tools.run(ops_tools.helm, "template", "r", CHART, "--kube-version", "1.27.0")
    assert ok.returncode == 0, ok.stderr
    too_old = ops_tools.run(ops_tools.helm, "template", "r", CHART, "--kube-version", "1.26.0")
    assert too_old.returncode != 0
    assert "kubeVersion" in too_old.stderr or "incompatible" in too_old.stderr


# -- Kubernetes schemas ---------------------------------------------------------------------------
@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("which", ["default", "full"])
def test_rendered_core_objects_are_valid_kubernetes(
    request: pytest.FixtureRequest, which: str, version: str
) -> None:
    validated = 0
    for manifest in _manifests(request, which):
        if manifest["kind"] in CUSTOM_KINDS:
            continue  # no schema for custom resources in kubernetes-validate
        kubernetes_validate.validate(manifest, version, strict=True)
        validated += 1
    assert validated >= 7


def test_the_validator_rejects_a_broken_statefulset(full_manifests: list[Manifest]) -> None:
    broken = copy.deepcopy(one(full_manifests, "StatefulSet", "trade-blotter"))
    _container(broken)["livenessProbe"]["httpGet"]["prot"] = "http"  # typo'd field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


# -- values.schema.json ---------------------------------------------------------------------------
def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def test_values_schema_is_a_valid_schema_and_accepts_shipped_values() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    full = _deep_merge(defaults, yaml.safe_load(FULL_VALUES.read_text()))
    validator = validator_cls(schema)
    assert list(validator.iter_errors(defaults)) == []
    assert list(validator.iter_errors(full)) == []


@pytest.mark.parametrize(
    "bad_value",
    [
        "worker.replicas=-1",
        "config.defaultLotMethod=AVERAGE",
        "auth.mode=none",
        "config.brokerUrl=not a url",
        "config.topicPartitions=0",
        "securityContext.runAsNonRoot=false",
        "keda.trigger.type=cpu",
        "unknownTopLevelKey=1",
    ],
)
def test_helm_rejects_values_the_schema_forbids(ops_tools: OpsTools, bad_value: str) -> None:
    result = ops_tools.run(ops_tools.helm, "template", "r", CHART, "--set", bad_value)
    assert result.returncode != 0
    assert "schema" in result.stderr


# -- policy ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["default", "full"])
def test_every_worker_has_probes_on_the_health_endpoints(
    request: pytest.FixtureRequest, which: str
) -> None:
    manifests = _manifests(request, which)
    for sts in by_kind(manifests, "StatefulSet"):
        container = _container(sts)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": 6066}
        paths = {
            probe: container[probe]["httpGet"]["path"]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe")
        }
        assert paths == {
            "startupProbe": "/health/liveness",
            "readinessProbe": "/health/readiness",
            "livenessProbe": "/health/liveness",
        }
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["port"] in ("http", 6066)
        # a long recovery must not be killed: startup budget covers minutes, not seconds
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


@pytest.mark.parametrize("which", ["default", "full"])
def test_every_worker_runs_non_root_on_a_read_only_root(
    request: pytest.FixtureRequest, which: str
) -> None:
    for sts in by_kind(_manifests(request, which), "StatefulSet"):
        pod = sts["spec"]["template"]["spec"]
        container = _container(sts)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        sec = container["securityContext"]
        assert sec["runAsNonRoot"] is True
        assert sec["readOnlyRootFilesystem"] is True
        assert sec["allowPrivilegeEscalation"] is False
        assert sec["capabilities"]["drop"] == ["ALL"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("which", ["default", "full"])
def test_rocksdb_state_lives_on_a_persistent_volume_at_data_dir(
    request: pytest.FixtureRequest, which: str
) -> None:
    manifests = _manifests(request, which)
    data_dir = _config_data(manifests)["DATA_DIR"]
    for sts in by_kind(manifests, "StatefulSet"):
        claims = {c["metadata"]["name"]: c for c in sts["spec"]["volumeClaimTemplates"]}
        mounts = {m["mountPath"]: m["name"] for m in _container(sts)["volumeMounts"]}
        assert mounts[data_dir] in claims
        claim = claims[mounts[data_dir]]
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert claim["spec"]["resources"]["requests"]["storage"]
        assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"


@pytest.mark.parametrize("which", ["default", "full"])
def test_workers_use_static_membership_and_the_faust_command(
    request: pytest.FixtureRequest, which: str
) -> None:
    for sts in by_kind(_manifests(request, which), "StatefulSet"):
        container = _container(sts)
        env = _env(container)
        member = env["CONSUMER_GROUP_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert member == "metadata.name"
        assert env["WEB_PORT"]["value"] == "6066"
        command = container["command"]
        assert command[:4] == ["faust", "-A", "app.main", "worker"]
        assert command[command.index("--web-port") + 1] == "$(WEB_PORT)"


@pytest.mark.parametrize("which", ["default", "full"])
def test_config_map_carries_the_contract_variables_and_turns_faust_views_off(
    request: pytest.FixtureRequest, which: str
) -> None:
    data = _config_data(_manifests(request, which))
    assert set(data) >= CONTRACT_VARIABLES
    assert data["WEB_HOST"] == "0.0.0.0"
    for switch in FAUST_VIEW_SWITCHES:
        assert data[switch] == "false"
    assert all(isinstance(v, str) for v in data.values())


def test_full_values_reach_the_config_map(full_manifests: list[Manifest]) -> None:
    data = _config_data(full_manifests)
    assert data["BROKER_URL"] == "kafka://kafka-0.kafka:9092;kafka-1.kafka:9092"
    assert data["SCHEMA_REGISTRY_URL"] == "http://schema-registry:8081"
    assert data["TOPIC_PARTITIONS"] == "12"
    assert data["AUTH_JWT_ISSUER"] == "https://issuer.example.com/"
    assert data["AUTH_ALLOWED_ORIGINS"] == "https://blotter.example.com"
    assert data["BROKER_SESSION_TIMEOUT"] == "60"


@pytest.mark.parametrize("which", ["default", "full"])
def test_each_statefulset_has_a_pdb_and_a_headless_service_selecting_its_pods(
    request: pytest.FixtureRequest, which: str
) -> None:
    manifests = _manifests(request, which)
    pdbs = by_kind(manifests, "PodDisruptionBudget")
    services = {s["metadata"]["name"]: s for s in by_kind(manifests, "Service")}
    for sts in by_kind(manifests, "StatefulSet"):
        pod_labels = sts["spec"]["template"]["metadata"]["labels"]

        def selects(selector: dict[str, str], labels: dict[str, str] = pod_labels) -> bool:
            return all(labels.get(k) == v for k, v in selector.items())

        assert [p for p in pdbs if selects(p["spec"]["selector"]["matchLabels"])]
        headless = services[sts["spec"]["serviceName"]]
        assert headless["spec"]["clusterIP"] == "None"
        assert headless["spec"]["publishNotReadyAddresses"] is True
        assert selects(headless["spec"]["selector"])
    client = services["trade-blotter"]
    assert client["spec"]["selector"]["app.kubernetes.io/component"] == "worker"


def test_worker_role_splits_only_when_the_coldpath_runs_apart(
    default_manifests: list[Manifest], full_manifests: list[Manifest]
) -> None:
    def roles(manifests: list[Manifest]) -> dict[str, str]:
        return {
            sts["metadata"]["name"]: _env(_container(sts))["WORKER_ROLE"]["value"]
            for sts in by_kind(manifests, "StatefulSet")
        }

    assert roles(default_manifests) == {"trade-blotter": "all"}
    assert roles(full_manifests) == {
        "trade-blotter": "hotpath",
        "trade-blotter-coldpath": "coldpath",
    }


# -- autoscaling ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("partitions", "max_replicas", "expected"),
    [(12, 50, 12), (8, 3, 3), (1, 8, 1)],
)
def test_keda_never_scales_past_the_partition_count(
    render: RenderFn, partitions: int, max_replicas: int, expected: int
) -> None:
    manifests = render(
        set_values=[
            "keda.enabled=true",
            f"keda.maxReplicas={max_replicas}",
            f"config.topicPartitions={partitions}",
        ],
        api_versions=[KEDA_API],
    )
    scaled = one(manifests, "ScaledObject", "trade-blotter")
    assert scaled["spec"]["maxReplicaCount"] == expected
    assert scaled["spec"]["scaleTargetRef"]["name"] == "trade-blotter"
    # the autoscaler owns the replica count; the chart must not reset it on upgrade
    assert "replicas" not in one(manifests, "StatefulSet", "trade-blotter")["spec"]


def test_keda_kafka_trigger_uses_the_broker_list_and_consumer_group(
    full_manifests: list[Manifest],
) -> None:
    trigger = one(full_manifests, "ScaledObject", "trade-blotter")["spec"]["triggers"][0]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["bootstrapServers"] == "kafka-0.kafka:9092,kafka-1.kafka:9092"
    assert trigger["metadata"]["consumerGroup"] == "trade-blotter"
    assert trigger["metadata"]["allowIdleConsumers"] == "false"


def test_service_monitor_scrapes_every_headless_service(full_manifests: list[Manifest]) -> None:
    monitor = one(full_manifests, "ServiceMonitor", "trade-blotter")
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = [
        s["metadata"]["name"]
        for s in by_kind(full_manifests, "Service")
        if all(s["metadata"]["labels"].get(k) == v for k, v in selector.items())
    ]
    assert sorted(scraped) == ["trade-blotter-coldpath-headless", "trade-blotter-headless"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"


# -- secrets --------------------------------------------------------------------------------------
def test_inline_jwt_secret_becomes_a_secret_the_workers_read(render: RenderFn) -> None:
    manifests = render(set_values=["auth.jwtSecret=s3cr3t-value"])
    secret = one(manifests, "Secret", "trade-blotter-auth")
    assert base64.b64decode(secret["data"]["AUTH_JWT_SECRET"]).decode() == "s3cr3t-value"
    env = _env(_container(one(manifests, "StatefulSet", "trade-blotter")))
    ref = env["AUTH_JWT_SECRET"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("trade-blotter-auth", "AUTH_JWT_SECRET")
    # the secret value itself is never in the ConfigMap or the pod spec
    rendered = yaml.safe_dump_all(m for m in manifests if m["kind"] != "Secret")
    assert "s3cr3t-value" not in rendered


def test_existing_secret_is_referenced_not_created(full_manifests: list[Manifest]) -> None:
    for sts in by_kind(full_manifests, "StatefulSet"):
        env = _env(_container(sts))
        assert env["AUTH_JWT_PUBLIC_KEY"]["valueFrom"]["secretKeyRef"]["name"] == (
            "trade-blotter-jwt"
        )


def test_no_key_material_means_no_secret_references(default_manifests: list[Manifest]) -> None:
    env = _env(_container(one(default_manifests, "StatefulSet", "trade-blotter")))
    assert "AUTH_JWT_SECRET" not in env
    assert by_kind(default_manifests, "Secret") == []


# -- dashboards -----------------------------------------------------------------------------------
def test_dashboards_ship_in_a_sidecar_config_map(default_manifests: list[Manifest]) -> None:
    config_map = one(default_manifests, "ConfigMap", "trade-blotter-dashboards")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    assert sorted(config_map["data"]) == shipped
    for name, body in config_map["data"].items():
        assert json.loads(body) == json.loads((CHART / "dashboards" / name).read_text())


def test_notes_render_with_full_values(ops_tools: OpsTools, tmp_path: Path) -> None:
    # `helm template` skips NOTES.txt; a client-side dry-run renders it without a cluster.
    result = ops_tools.run(
        ops_tools.helm, "install", "trade-blotter", CHART, "--dry-run=client",
        "--values", FULL_VALUES, "--kubeconfig", tmp_path / "no-cluster",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "Coldpath: StatefulSet trade-blotter-coldpath (2 replicas)" in notes
    assert "scaled by KEDA between 1 and 12 replicas" in notes
    assert "no key material" not in notes  # existingSecret is set
