"""The monitor's Kubernetes objects (manifests/base/monitor.yaml, charts/alpr/templates/monitor.yaml), rendered
offline (kubectl kustomize, helm template: tests/k8s_tools.py) and checked against the CLI they start."""

from __future__ import annotations

from pathlib import Path

import pytest
from k8s_tools import helm_home, load_all, run_tool, validate_core

from alpr.monitoring import cli

ROOT = Path(__file__).resolve().parents[3]


def _render(kind: str, tmp_path_factory) -> list[dict]:
    if kind == "kustomize":
        return load_all(run_tool("kubectl", "kustomize", str(ROOT / "manifests" / "overlays" / "dev")))
    home = helm_home(tmp_path_factory.mktemp("helm-home"))
    return load_all(
        run_tool("helm", "template", "alpr", str(ROOT / "charts" / "alpr"), "--namespace", "alpr", home=home)
    )


@pytest.fixture(scope="module", params=["kustomize", "helm"])
def objects(request, tmp_path_factory) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in _render(request.param, tmp_path_factory)}


def test_the_monitor_deployment_and_service(objects):
    deployment, service = objects["Deployment", "alpr-monitor"], objects["Service", "alpr-monitor"]
    validate_core(deployment)
    validate_core(service)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "alpr.monitoring"]
    args = cli._parse_args(container["args"])  # the arguments the CLI accepts
    assert (args.host, args.port) == ("0.0.0.0", 8090)  # behind the Service; the CLI's own default is loopback
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["ports"] == [{"name": "http", "containerPort": 8090, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert {(k, v["name"], v["key"]) for k, v in secrets.items()} == {
        ("ALPR_DB_URL", "alpr-db", "url"),
        ("ALPR_DB_PASSWORD", "alpr-db", "password"),
    }
    assert container["envFrom"] == [{"configMapRef": {"name": "alpr-config"}}]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    selector = service["spec"]["selector"]
    assert all(deployment["spec"]["template"]["metadata"]["labels"][k] == v for k, v in selector.items())
    # the ServiceMonitor alpr-monitor selects the Service by these labels
    assert {k: service["metadata"]["labels"][k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/component")} == {
        "app.kubernetes.io/name": "alpr",
        "app.kubernetes.io/component": "monitor",
    }


def test_the_payload_logger_sends_to_the_monitors_service(objects):
    logger = objects["InferenceService", "alpr"]["spec"]["predictor"]["logger"]
    assert logger["url"] == "http://alpr-monitor.alpr.svc.cluster.local/events" and logger["mode"] == "all"
