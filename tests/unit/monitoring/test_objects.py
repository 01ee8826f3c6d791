"""The monitor's Kubernetes objects (manifests/base/monitor.yaml, charts/alpr/templates/monitor.yaml), rendered
offline (kubectl kustomize, helm template: tests/k8s_tools.py) and checked against the CLI they start."""

from __future__ import annotations

from pathlib import Path

import pytest
from k8s_tools import helm_home, load_all, run_tool, validate_core, validate_metadata

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


#: The ingress gateway's identity and the page's paths the AuthorizationPolicy admits it to (after the rewrite).
INGRESS = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
PAGE_PATHS = ["/", "/static/*", "/upload", "/readings", "/readings/*", "/corrections", "/trends.svg"]

# The fields of Istio's VirtualService and AuthorizationPolicy (networking.istio.io / security.istio.io v1beta1, from
# Istio's API reference) the repository sets, each object closed to others: a misspelt field -- which Istio's CRD,
# preserving unknown fields, would accept and ignore -- fails here. No Istio CRD is committed (tests/cluster/crds/).
_STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}


def _closed(properties: dict, required: list[str] | None = None) -> dict:
    return {"type": "object", "properties": properties, "required": required or [], "additionalProperties": False}


_META = {"type": "object"}  # validated as ObjectMeta by validate_metadata
VIRTUAL_SERVICE = _closed(
    {
        "apiVersion": {"const": "networking.istio.io/v1beta1"},
        "kind": {"const": "VirtualService"},
        "metadata": _META,
        "spec": _closed(
            {
                "hosts": _STRINGS,
                "gateways": _STRINGS,
                "http": {
                    "type": "array",
                    "items": _closed(
                        {
                            "match": {
                                "type": "array",
                                "items": _closed(
                                    {
                                        "uri": _closed(
                                            {"exact": {"type": "string"}, "prefix": {"type": "string"}},
                                        )
                                    }
                                ),
                            },
                            "redirect": _closed({"uri": {"type": "string"}}),
                            "rewrite": _closed({"uri": {"type": "string"}}),
                            "route": {
                                "type": "array",
                                "items": _closed(
                                    {
                                        "destination": _closed(
                                            {
                                                "host": {"type": "string"},
                                                "port": _closed({"number": {"type": "integer"}}, ["number"]),
                                            },
                                            ["host"],
                                        )
                                    },
                                    ["destination"],
                                ),
                            },
                        }
                    ),
                },
            },
            ["hosts", "gateways", "http"],
        ),
    },
    ["apiVersion", "kind", "metadata", "spec"],
)
AUTHORIZATION_POLICY = _closed(
    {
        "apiVersion": {"const": "security.istio.io/v1beta1"},
        "kind": {"const": "AuthorizationPolicy"},
        "metadata": _META,
        "spec": _closed(
            {
                "selector": _closed({"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}}),
                "action": {"enum": ["ALLOW", "DENY", "AUDIT", "CUSTOM"]},
                "rules": {
                    "type": "array",
                    "items": _closed(
                        {
                            "from": {
                                "type": "array",
                                "items": _closed(
                                    {"source": _closed({"principals": _STRINGS, "namespaces": _STRINGS})},
                                    ["source"],
                                ),
                            },
                            "to": {
                                "type": "array",
                                "items": _closed(
                                    {"operation": _closed({"methods": _STRINGS, "paths": _STRINGS})},
                                    ["operation"],
                                ),
                            },
                            "when": {
                                "type": "array",
                                "items": _closed({"key": {"type": "string"}, "values": _STRINGS}, ["key", "values"]),
                            },
                        }
                    ),
                },
            },
            ["selector", "action", "rules"],
        ),
    },
    ["apiVersion", "kind", "metadata", "spec"],
)


def _validate_istio(obj: dict, schema: dict) -> None:
    import jsonschema

    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
    assert not errors, [f"{obj['kind']} {'.'.join(map(str, e.path))}: {e.message}" for e in errors]
    validate_metadata(obj)


def test_the_virtual_service_routes_the_prefix_to_the_monitors_service(objects):
    vs, service = objects["VirtualService", "alpr-monitor"], objects["Service", "alpr-monitor"]
    _validate_istio(vs, VIRTUAL_SERVICE)
    spec = vs["spec"]
    assert spec["gateways"] == ["kubeflow/kubeflow-gateway"] and spec["hosts"] == ["*"]
    redirect, route = spec["http"]
    assert redirect == {"match": [{"uri": {"exact": "/alpr/monitor"}}], "redirect": {"uri": "/alpr/monitor/"}}
    assert route["match"] == [{"uri": {"prefix": "/alpr/monitor/"}}] and route["rewrite"] == {"uri": "/"}
    (destination,) = route["route"]
    namespace = service["metadata"]["namespace"]
    assert destination["destination"] == {
        "host": f"{service['metadata']['name']}.{namespace}.svc.cluster.local",
        "port": {"number": service["spec"]["ports"][0]["port"]},
    }


def test_the_deployment_serves_under_the_virtual_services_prefix(objects):
    (container,) = objects["Deployment", "alpr-monitor"]["spec"]["template"]["spec"]["containers"]
    prefix = objects["VirtualService", "alpr-monitor"]["spec"]["http"][1]["match"][0]["uri"]["prefix"]
    assert cli._parse_args(container["args"]).root_path + "/" == prefix == "/alpr/monitor/"


def test_the_authorization_policy_admits_only_the_logged_in_page_the_events_and_the_scrapes(objects):
    policy, deployment = objects["AuthorizationPolicy", "alpr-monitor"], objects["Deployment", "alpr-monitor"]
    _validate_istio(policy, AUTHORIZATION_POLICY)
    spec = policy["spec"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"]["app.kubernetes.io/name"] == "alpr-monitor"
    assert all(pod_labels[k] == v for k, v in spec["selector"]["matchLabels"].items())
    assert spec["action"] == "ALLOW"  # what no rule matches is denied
    page, events, scrapes = spec["rules"]
    assert page == {
        "from": [{"source": {"principals": [INGRESS]}}],
        "to": [{"operation": {"methods": ["GET", "POST"], "paths": PAGE_PATHS}}],
        "when": [{"key": "request.headers[kubeflow-userid]", "values": ["*"]}],
    }
    assert events == {
        "from": [{"source": {"namespaces": ["alpr"]}}],
        "to": [{"operation": {"methods": ["POST"], "paths": ["/events"]}}],
    }
    assert scrapes == {"to": [{"operation": {"methods": ["GET"], "paths": ["/metrics", "/healthz"]}}]}
    assert policy["metadata"]["namespace"] == "alpr"


def test_the_policys_page_paths_are_the_review_pages_routes(tmp_path):
    """Every GET/POST route of the app but the events, metrics and health endpoints is among PAGE_PATHS (Istio's
    ``*`` suffix matches a path parameter), and every page path names a route."""
    from alpr.monitoring.app import MonitorConfig, create_app

    app = create_app(MonitorConfig(db_url=f"sqlite:///{tmp_path / 'metadata.db'}"))
    app.state.prediction_log.store.dispose()
    routes = set(app.openapi()["paths"]) - {"/events", "/metrics", "/healthz"}  # every route the app declares
    assert "/readings/{prediction_id}" in routes, sorted(routes)

    def admitted(path: str) -> bool:
        concrete = path.split("{")[0]
        return any(p == path or (p.endswith("*") and concrete.startswith(p[:-1])) for p in PAGE_PATHS)

    assert all(admitted(path) for path in routes), sorted(routes)
    assert {p for p in PAGE_PATHS if not p.endswith("*")} <= routes
