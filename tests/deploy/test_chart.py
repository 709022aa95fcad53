"""The Helm chart (deploy/chart/telephony), checked offline as CI checks it: Helm's own lint
(strict) and render, and every manifest validated strictly against Kubernetes 1.30's schemas
(deploy/check_chart.py). And the checks themselves: a broken values file and a misspelled
manifest field fail them."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import check_chart  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def manifest(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [m for m in manifests if m["kind"] == kind]
    return found


def test_the_chart_passes_its_checks_and_drains_calls() -> None:
    problems, manifests = check_chart.check()
    assert problems == []
    kinds = sorted(m["kind"] for m in manifests)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Ingress",
        "PodDisruptionBudget",
        "Service",
    ]
    pod = manifest(manifests, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # the grace period outlasts the preStop sleep and the whole drain
    config = manifest(manifests, "ConfigMap")["data"]
    drain_s = int(config["DRAIN_TIMEOUT"])
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] == int(pre_stop[1]) + drain_s + 15
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert config["REDIS_URL"] == "redis://redis:6379/0"
    # each pod its own fleet member
    env = {e["name"]: e for e in container["env"]}
    assert env["INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"]
    rollout = manifest(manifests, "Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert rollout["maxUnavailable"] == 0
    annotations = manifest(manifests, "Ingress")["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600


def test_the_drain_setting_sets_the_grace_period() -> None:
    values = {**check_chart.CHECK_VALUES, "drainTimeoutSeconds": 900, "preStopSleepSeconds": 10}
    problems, manifests = check_chart.check(values=values)
    assert problems == []
    assert manifest(manifests, "ConfigMap")["data"]["DRAIN_TIMEOUT"] == "900"
    pod = manifest(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 925


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"drainTimeoutSeconds": "soon"}, "/drainTimeoutSeconds"),
        ({"image": {"repository": "", "tag": "x"}}, "/image/repository"),
        ({"readinessProbe": {}}, "readinessProbe"),  # not a value of this chart
        ({"replicaCount": 3}, "set redis.url"),  # a fleet with no Redis
    ],
    ids=["drain-not-a-number", "empty-image", "unknown-value", "fleet-without-redis"],
)
def test_a_broken_values_file_fails_the_checks(values: dict[str, Any], expected: str) -> None:
    problems, _ = check_chart.check(values=values)
    assert problems and any(expected in p for p in problems), problems


def test_a_misspelled_manifest_field_fails_the_checks(tmp_path: Path) -> None:
    chart = tmp_path / "telephony"
    shutil.copytree(check_chart.CHART, chart)
    deployment = chart / "templates" / "deployment.yaml"
    text = deployment.read_text()
    assert "readinessProbe:" in text
    deployment.write_text(text.replace("readinessProbe:", "readinesProbe:"))
    problems, _ = check_chart.check(chart)
    assert any("'readinesProbe' was unexpected" in p for p in problems), problems
