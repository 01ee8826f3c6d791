"""Monitoring on a cluster, offline: the InferenceService's payload logger, the ServiceMonitors, the PrometheusRule
alerts and the Grafana dashboard of ``charts/alpr`` (``helm template``) and ``manifests/`` (``kubectl kustomize``).

- the InferenceService of the chart and of the manifests sends its traffic to the monitor (KServe's
  ``spec.predictor.logger``), validated against KServe's CRD;
- ServiceMonitors and the PrometheusRule validate against the Prometheus Operator's CRDs
  (tests/cluster/crds/prometheus-operator-v0.93.0/, unknown fields rejected), the other objects strictly as core
  objects; chart and manifests hold the same specs and the same dashboard;
- ``promtool check rules`` (Debian's ``prometheus`` package) accepts the rendered rules, and every dashboard query
  (as a recording rule);
- every metric a dashboard query or an alert names is exported by the code: the model server's registry (kserve's
  histograms, :mod:`alpr.serving.eventlog`'s counters, the process collector) or the monitor's
  (:class:`alpr.monitoring.metrics.MonitorMetrics`).
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from k8s_tools import (
    CRDS,
    _raise_errors,
    _strict,
    helm_home,
    load_all,
    run_tool,
    validate_core,
    validate_inference_service,
    validate_metadata,
)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "alpr"
MONITORING = ROOT / "manifests" / "base" / "monitoring"
DASHBOARD = CHART / "dashboards" / "alpr.json"
#: (apiVersion, kind) -> the Prometheus Operator's CRD (v0.93.0, unmodified; README.md beside them).
PROMETHEUS_CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): CRDS
    / "prometheus-operator-v0.93.0/monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): CRDS
    / "prometheus-operator-v0.93.0/monitoring.coreos.com_prometheusrules.yaml",
}
#: The labels KServe puts on an InferenceService's predictor pods (kserve pkg/constants: InferenceServicePodLabelKey,
#: KServiceComponentLabel).
PREDICTOR_POD_LABELS = {"serving.kserve.io/inferenceservice": "alpr", "component": "predictor"}
MONITOR_URL = "http://alpr-monitor.alpr.svc.cluster.local/events"
ON = ["--set", "monitoring.prometheusOperator=true"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return helm_home(tmp_path_factory.mktemp("helm-home"))


def _template(home, *args: str) -> list[dict]:
    return load_all(run_tool("helm", "template", "alpr", str(CHART), "--namespace", "alpr", *args, home=home))


def _by_kind(objs: list[dict]) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for o in objs:
        out.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    return out


@pytest.fixture(scope="module")
def chart(home) -> dict[str, dict[str, dict]]:
    """The chart rendered with the Prometheus Operator objects on."""
    return _by_kind(_template(home, *ON))


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, dict]]:
    """``kubectl kustomize manifests/base/monitoring``."""
    return _by_kind(load_all(run_tool("kubectl", "kustomize", str(MONITORING))))


@functools.cache
def _prometheus_validator(api_version: str, kind: str):
    import jsonschema

    crd = yaml.safe_load(PROMETHEUS_CRDS[(api_version, kind)].read_text())
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == api_version.rpartition("/")[2] and v["served"]]
    schema = _go_patterns(_strict(served["schema"]["openAPIV3Schema"]))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _go_patterns(schema):
    """``schema`` with Go's ``^(?i)...`` patterns written as Python reads them (a global flag first: ``(?i)^...``)."""
    if isinstance(schema, list):
        return [_go_patterns(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _go_patterns(v) for k, v in schema.items()}
    if isinstance(schema.get("pattern"), str) and schema["pattern"].startswith("^(?i)"):
        out["pattern"] = "(?i)^" + schema["pattern"][len("^(?i)") :]
    return out


def _validate(obj: dict) -> None:
    key = (obj["apiVersion"], obj["kind"])
    if key in PROMETHEUS_CRDS:
        _raise_errors(_prometheus_validator(*key), obj, f"{obj['kind']} {obj['metadata']['name']}")
        validate_metadata(obj)
    else:
        validate_core(obj)


# --- the prediction log on a cluster: KServe's payload logger -------------------------------------------------------


def test_the_inference_service_logs_to_the_monitor(home):
    isvc = _by_kind(_template(home))["InferenceService"]["alpr"]
    predictor = validate_inference_service(isvc)
    assert predictor["logger"] == {
        "mode": "all",
        "url": MONITOR_URL,
        "metadataHeaders": ["Inference-Header-Content-Length"],
    }
    custom = _by_kind(
        _template(home, "--set", "monitor.url=http://m.example/events", "--set", "monitor.logMode=request")
    )
    assert validate_inference_service(custom["InferenceService"]["alpr"])["logger"]["url"] == "http://m.example/events"
    assert custom["InferenceService"]["alpr"]["spec"]["predictor"]["logger"]["mode"] == "request"
    off = _by_kind(_template(home, "--set", "monitor.enabled=false"))["InferenceService"]["alpr"]
    assert "logger" not in validate_inference_service(off)
    for target in ("base", "overlays/dev", "overlays/prod"):
        objs = _by_kind(load_all(run_tool("kubectl", "kustomize", str(ROOT / "manifests" / target))))
        assert validate_inference_service(objs["InferenceService"]["alpr"])["logger"] == predictor["logger"], target
    base = _by_kind(load_all(run_tool("kubectl", "kustomize", str(ROOT / "manifests" / "base"))))
    # an InferenceService the Deploy step creates logs to the same place (alpr.kubeflow.kserve.DeploySettings)
    assert base["ConfigMap"]["alpr-config"]["data"]["ALPR_MONITOR_URL"] == MONITOR_URL


# --- the objects ----------------------------------------------------------------------------------------------------


def test_prometheus_operator_objects_only_when_asked(home):
    default = _by_kind(_template(home))
    assert "ServiceMonitor" not in default and "PrometheusRule" not in default  # no CRDs needed by default
    assert default["ConfigMap"]["alpr-grafana-dashboard"]["metadata"]["labels"]["grafana_dashboard"] == "1"
    no_monitor = _by_kind(_template(home, *ON, "--set", "monitor.enabled=false"))
    assert set(no_monitor["ServiceMonitor"]) == {"alpr-serving"} and "PrometheusRule" not in no_monitor
    no_isvc = _by_kind(_template(home, *ON, "--set", "inferenceService.enabled=false"))
    assert set(no_isvc["ServiceMonitor"]) == {"alpr-monitor"} and "alpr-serving-metrics" not in no_isvc["Service"]
    no_dashboard = _by_kind(_template(home, "--set", "monitoring.grafanaDashboard.enabled=false"))
    assert "alpr-grafana-dashboard" not in no_dashboard["ConfigMap"]
    labelled = _by_kind(_template(home, *ON, "--set", "monitoring.selectorLabels.release=prometheus"))
    for obj in [*labelled["ServiceMonitor"].values(), *labelled["PrometheusRule"].values()]:
        assert obj["metadata"]["labels"]["release"] == "prometheus"  # what the cluster's Prometheus selects


def test_objects_validate_and_chart_and_manifests_agree(chart, manifests):
    for objs in (chart, manifests):
        assert set(objs["ServiceMonitor"]) == {"alpr-serving", "alpr-monitor"}
        assert set(objs["PrometheusRule"]) == {"alpr"}
        for kind in ("ServiceMonitor", "PrometheusRule"):
            for obj in objs[kind].values():
                _validate(obj)
                assert obj["metadata"]["namespace"] == "alpr"
        _validate(objs["Service"]["alpr-serving-metrics"])
        _validate(objs["ConfigMap"]["alpr-grafana-dashboard"])
    for kind, name in [
        ("ServiceMonitor", "alpr-serving"),
        ("ServiceMonitor", "alpr-monitor"),
        ("Service", "alpr-serving-metrics"),
    ]:
        assert chart[kind][name]["spec"] == manifests[kind][name]["spec"], (kind, name)
    assert _rules(chart) == _rules(manifests)
    assert (MONITORING / "alpr.json").read_bytes() == DASHBOARD.read_bytes()  # the kustomize copy
    for objs in (chart, manifests):
        cm = objs["ConfigMap"]["alpr-grafana-dashboard"]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(cm["data"]["alpr.json"]) == json.loads(DASHBOARD.read_text())


def test_servicemonitors_select_the_model_server_and_the_monitor(chart, home):
    service = chart["Service"]["alpr-serving-metrics"]
    # the predictor pods, on the model server's own port (the ServingRuntime's containerPort), not KServe's agent
    assert service["spec"]["selector"] == PREDICTOR_POD_LABELS and service["spec"]["clusterIP"] == "None"
    runtime_port = chart["ServingRuntime"]["alpr"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": runtime_port, "protocol": "TCP"}
    ]
    serving = chart["ServiceMonitor"]["alpr-serving"]["spec"]
    assert serving["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert serving["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    monitor = chart["ServiceMonitor"]["alpr-monitor"]["spec"]
    assert monitor["endpoints"][0]["port"] == "http" and monitor["endpoints"][0]["path"] == "/metrics"
    assert monitor["namespaceSelector"] == {"matchNames": ["alpr"]}
    # the monitor's own Service (templates/monitor.yaml) has the labels and the port the ServiceMonitor selects
    wanted = monitor["selector"]["matchLabels"]
    services = [
        s for s in chart.get("Service", {}).values() if wanted.items() <= s["metadata"].get("labels", {}).items()
    ]
    assert [s["metadata"]["name"] for s in services] == ["alpr-monitor"]
    assert "http" in {p.get("name") for p in services[0]["spec"]["ports"]}


def test_alert_thresholds_come_from_values(home):
    objs = _by_kind(
        _template(
            home,
            *ON,
            "--set",
            "monitor.alerts.validShareMargin=0.05",
            "--set",
            "monitor.alerts.noTrafficMinutes=10",
            "--set",
            "monitor.alerts.validShareFor=1h",
        )
    )
    rules = {r["alert"]: r for r in objs["PrometheusRule"]["alpr"]["spec"]["groups"][0]["rules"]}
    assert rules["AlprValidPlateShareBelowBaseline"]["expr"].endswith("< -0.05")
    assert rules["AlprValidPlateShareBelowBaseline"]["for"] == "1h"
    assert (
        "[10m]" in rules["AlprNoReadings"]["expr"]
        and "absent(alpr_monitor_readings_total" in rules["AlprNoReadings"]["expr"]
    )
    for bad, message in [
        (["--set", "monitor.alerts.validShareMargin=1.5"], "validShareMargin must be a share between 0 and 1"),
        (["--set", "monitor.alerts.noTrafficMinutes=0"], "noTrafficMinutes must be >= 1"),
    ]:
        with pytest.raises(Exception, match=message):
            _template(home, *ON, *bad)


# --- PromQL: promtool, and the metric names -------------------------------------------------------------------------


def _rules(objs: dict) -> list[dict]:
    return objs["PrometheusRule"]["alpr"]["spec"]["groups"]


def _dashboard_queries() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs


def _as_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced by values (what Grafana sends to Prometheus)."""
    return expr.replace("$__rate_interval", "5m").replace("$namespace", ".*")


@pytest.fixture(scope="module")
def promtool():
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian: apt-get install --no-install-recommends prometheus)")
    return path


def _check_rules(promtool: str, groups: list[dict], path: Path) -> str:
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_promtool_accepts_the_rules_and_the_dashboard_queries(promtool, chart, manifests, tmp_path):
    for name, objs in (("chart", chart), ("manifests", manifests)):
        out = _check_rules(promtool, _rules(objs), tmp_path / f"{name}.rules.yaml")
        assert "SUCCESS: 4 rules found" in out, out
    queries = [q for q in _dashboard_queries() if not q.startswith("label_values(")]
    recording = [{"record": f"alpr:dashboard:query{i}", "expr": _as_promql(q)} for i, q in enumerate(queries)]
    out = _check_rules(promtool, [{"name": "dashboard", "rules": recording}], tmp_path / "dashboard.rules.yaml")
    assert f"SUCCESS: {len(queries)} rules found" in out, out
    # and promtool does refuse a bad query
    bad = tmp_path / "bad.rules.yaml"
    bad.write_text(
        yaml.safe_dump({"groups": [{"name": "bad", "rules": [{"record": "a:b", "expr": "sum(rate(x[5m])"}]}]})
    )
    done = subprocess.run([promtool, "check", "rules", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0


#: PromQL words that are not metric names.
_PROMQL_WORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "inf",
        "nan",
    }
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers outside strings, label matchers, ranges and
    ``by (...)`` clauses that are neither followed by ``(`` (functions, aggregations) nor PromQL keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end() :].lstrip().startswith("(") or match.group(0).lower() in _PROMQL_WORDS:
            continue
        names.add(match.group(0))
    return names


def test_metric_names_reads_promql():
    expr = 'histogram_quantile(0.5, sum by (le) (rate(a_bucket{ns=~"x|y", le!="1"}[$__rate_interval]))) / ignoring(x) b'
    assert metric_names(expr) == {"a_bucket", "b"}
    assert metric_names('sum(increase(c_total[30m])) == 0 or absent(d{k="v"}) > bool 1e3') == {"c_total", "d"}
    assert metric_names("label_values(e_total, namespace)") == {"e_total", "namespace"}


def _exported(registry) -> set[str]:
    """Every series name ``registry`` exports: its samples', and for families without samples yet (labelled ones
    before their first observation) the names their type implies."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}
    names = set()
    for family in registry.collect():
        names.update(sample.name for sample in family.samples)
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def test_every_metric_queried_is_exported_by_the_code(chart):
    from prometheus_client import REGISTRY

    import alpr.serving.server  # noqa: F401  (kserve's histograms and the prediction log's counters, registered)
    from alpr.monitoring.metrics import METRIC_NAMES, MonitorMetrics
    from alpr.serving import eventlog

    serving = _exported(REGISTRY)
    assert {
        "request_predict_seconds_bucket",
        eventlog.SENT_METRIC,
        eventlog.DROPPED_METRIC,
        eventlog.FAILED_METRIC,
    } <= serving
    monitor = _exported(MonitorMetrics().registry)
    families = {family.name for family in MonitorMetrics().registry.collect()}
    assert set(METRIC_NAMES) <= monitor | families  # D's list: counters with _total, histograms by family name
    queried: dict[str, set[str]] = {}
    for expr in _dashboard_queries():
        for name in metric_names(expr) - {"namespace"}:  # label_values(metric, label)
            queried.setdefault(name, set()).add("dashboard")
    for group in _rules(chart):
        for rule in group["rules"]:
            for name in metric_names(rule["expr"]):
                queried.setdefault(name, set()).add(rule["alert"])
    assert len(queried) >= 15
    unknown = {name: where for name, where in queried.items() if name not in serving | monitor}
    assert not unknown, f"queried but exported by nothing: {unknown}"
    # the alerts use the monitor's drift and traffic, the dashboard both servers
    assert {"alpr_monitor_valid_share_drift", "alpr_monitor_readings_total"} <= queried.keys()
    assert {
        eventlog.SENT_METRIC,
        eventlog.DROPPED_METRIC,
        eventlog.FAILED_METRIC,
        "request_predict_seconds_bucket",
    } <= queried.keys()


def test_dashboard_is_grafana_provisionable():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "alpr-monitor" and dash["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys() and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
            assert all('namespace=~"$namespace"' in t["expr"] for t in panel["targets"]), panel["title"]
