"""Tests of the monitor service (alpr.monitoring.app, metrics, cli): KServe's logged events in, rows in SQLite and
MariaDB (``db_url``), Prometheus metrics and drift out; bad input refused with nothing stored; retention; and one
run of the real server (``python -m alpr.monitoring``, uvicorn) on loopback."""

from __future__ import annotations

import hashlib
import math
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from alpr.metadata import MetadataConnectionError
from alpr.metadata.schema import predictions
from alpr.monitoring import cli
from alpr.monitoring.app import MonitorConfig, create_app
from alpr.monitoring.baseline import SCORE_EDGES, histogram, population_stability_index
from alpr.monitoring.events import is_sampled
from alpr.monitoring.metrics import METRIC_NAMES, MonitorMetrics
from alpr.monitoring.store import PredictionLog, PredictionRecord, plates_from_reading

ROOT = Path(__file__).resolve().parents[3]
TARGET = "kubeflow-user/alpr"  # the Deploy target of the events' ce-namespace / ce-inferenceservicename


def _rows(db_url: str) -> list[dict]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(predictions).order_by(predictions.c.id))]
    finally:
        engine.dispose()


def _post(client, headers_body) -> httpx.Response:
    headers, body = headers_body
    return client.post("/events", headers=headers, content=body)


def _send(client, inference) -> httpx.Response:
    first = _post(client, inference.request)
    assert first.status_code == 200 and first.json() == {"status": "pending", "id": inference.id}, first.text
    return _post(client, inference.response)


def _metrics(client) -> dict[tuple[str, tuple], float]:
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def config(db_url, storage_root) -> MonitorConfig:
    return MonitorConfig(
        db_url=db_url, storage_uri=str(storage_root), sample_images=1.0, min_drift_plates=4, max_body_bytes=1 << 18
    )


@pytest.fixture
def client(config):
    with TestClient(create_app(config)) as test_client:
        yield test_client
    test_client.app.state.prediction_log.store.dispose()


def test_v1_v2_and_binary_inferences_are_stored_one_row_per_image(client, config, kserve, make_model, storage_root):
    model_id = make_model(client.app.state.prediction_log.store, deploy_at=TARGET)
    images = [kserve.image(shade=i) for i in range(4)] + [kserve.image(fmt="PNG", shade=9)]
    sql = "12A3456'); DELETE FROM predictions; --"
    v1 = kserve.v1(images[:2], [kserve.reading(kserve.plate()), kserve.reading(kserve.plate(sql, 0.5))])
    v2 = kserve.v2(images[2:4], [kserve.reading(), kserve.reading(kserve.plate("34B5678", 0.8))], latency_ms=80)
    binary = kserve.v2_binary(images[4:], [kserve.reading(kserve.plate("56C7890", 0.9))], latency_ms=50)
    stored = []
    for inference in (v1, v2, binary):
        answer = _send(client, inference)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "stored"
        stored += answer.json()["ids"]

    rows = _rows(config.db_url)
    assert [r["id"] for r in rows] == stored and len(rows) == 5
    assert [r["event_id"] for r in rows] == [f"{v1.id}/0", f"{v1.id}/1", f"{v2.id}/0", f"{v2.id}/1", f"{binary.id}/0"]
    assert [r["image_sha256"] for r in rows] == [hashlib.sha256(i).hexdigest() for i in images]
    assert [r["image_bytes"] for r in rows] == [len(i) for i in images]
    assert {(r["width"], r["height"]) for r in rows} == {(64, 32)}
    assert [r["latency_ms"] for r in rows] == pytest.approx([120, 120, 80, 80, 50])
    assert {(r["model_name"], r["model_version"]) for r in rows} == {("alpr", str(model_id))}
    assert [[p["text"] for p in r["plates"]] for r in rows] == [["12A3456"], [sql], [], ["34B5678"], ["56C7890"]]
    assert [(r["plate_count"], r["valid_count"]) for r in rows] == [(1, 1), (1, 0), (0, 0), (1, 1), (1, 1)]
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert rows[4]["image_uri"] == str(storage_root / "monitor/images" / day / f"{rows[4]['image_sha256']}.png")
    assert Path(rows[4]["image_uri"]).read_bytes() == images[4]
    assert client.get("/healthz").json() == {"status": "ok", "pending": 0}


def test_bad_input_gets_a_clear_4xx_and_nothing_is_stored(client, config, kserve):
    good = kserve.v1([kserve.image()], [kserve.reading(kserve.plate())])
    headers, body = good.request
    cases = [
        ((headers, b"x" * (config.max_body_bytes + 1)), 413, "too_large"),
        (({k: v for k, v in headers.items() if k != "Ce-Specversion"}, body), 400, "malformed"),
        (({**headers, "Ce-Type": "com.example.other"}, body), 400, "unknown_type"),
        (({k: v for k, v in headers.items() if k != "Ce-Type"}, body), 400, "unknown_type"),
        (good.response, 409, "unknown_id"),  # a response whose request never came
        ((headers, b'{"instances": [{"image_bytes": {"b64": "bm90IGFuIGltYWdl"}}]}'), 422, "bad_image"),
        ((headers, b'{"instances": "none"}'), 422, "bad_request_body"),
    ]
    for event, status, reason in cases:
        answer = _post(client, event)
        assert answer.status_code == status, (reason, answer.text)
        assert answer.json()["reason"] == reason and answer.json()["error"]

    bad = kserve.v1([kserve.image()], [{"plates": [{**kserve.plate(), "score": 7}]}])
    assert _post(client, bad.request).status_code == 200
    answer = _post(client, bad.response)
    assert answer.status_code == 422 and "plates[0].score must be in [0, 1]" in answer.json()["error"]
    assert _rows(config.db_url) == []
    counts = _metrics(client)
    rejected = {dict(k[1])["reason"]: v for k, v in counts.items() if k[0] == "alpr_monitor_events_rejected_total"}
    expected = {"too_large": 1, "malformed": 1, "unknown_type": 2, "unknown_id": 1, "bad_image": 1}
    assert {r: rejected[r] for r in expected} == expected and rejected["bad_reading"] == 1
    assert counts[("alpr_monitor_readings_total", ())] == 0

    assert _send(client, good).status_code == 200  # still serving
    assert _post(client, good.response).json()["reason"] == "unknown_id"  # a second response: already answered
    assert len(_rows(config.db_url)) == 1


def test_a_store_outage_is_a_503_and_the_service_keeps_answering(client, config, kserve, monkeypatch):
    log = client.app.state.prediction_log
    real = log.add_predictions
    for error in (MetadataConnectionError("cannot connect to the metadata store"), OSError("bucket gone")):

        def down(records, images, error=error):
            raise error

        monkeypatch.setattr(log, "add_predictions", down)
        inference = kserve.v1([kserve.image()], [kserve.reading(kserve.plate())])
        answer = _send(client, inference)
        assert answer.status_code == 503 and answer.json()["reason"] == "store_error", answer.text
    monkeypatch.setattr(log, "add_predictions", real)
    assert _send(client, kserve.v1([kserve.image()], [kserve.reading()])).status_code == 200
    assert len(_rows(config.db_url)) == 1
    assert _metrics(client)[("alpr_monitor_events_rejected_total", (("reason", "store_error"),))] == 2
    long_name = kserve.v1([kserve.image()], [kserve.reading()], isvc="x" * 129)
    answer = _post(client, long_name.request)
    assert answer.status_code == 400 and "ce-inferenceservicename is longer than 128" in answer.json()["error"]


def test_metrics_and_drift_against_the_served_models_baseline(client, kserve, make_model):
    store = client.app.state.prediction_log.store
    model_id = make_model(store, deploy_at=TARGET)
    base_scores = [0.99, 0.97, 0.92, 0.88]
    with store.transaction() as tx:
        tx.add_model_baseline(
            model_id,
            "test",
            images=4,
            plates=4,
            valid_plates=3,
            score_edges=SCORE_EDGES,
            score_counts=histogram(base_scores),
        )
    before = _metrics(client)
    assert math.isnan(before[("alpr_monitor_baseline_valid_share", ())])  # nothing served yet
    assert math.isnan(before[("alpr_monitor_valid_share_drift", ())])
    live = [("12A3456", 0.95), ("1", 0.45), ("22", 0.62), ("34B5678", 0.99), ("9", 0.3)]  # 2 of 5 valid
    inference = kserve.v1(
        [kserve.image(shade=i) for i in range(3)],
        [
            kserve.reading(*(kserve.plate(t, s) for t, s in live[:2])),
            kserve.reading(*(kserve.plate(t, s) for t, s in live[2:])),
            kserve.reading(),
        ],
        latency_ms=300,
    )
    assert _send(client, inference).status_code == 200
    m = _metrics(client)
    assert m[("alpr_monitor_readings_total", ())] == 3 and m[("alpr_monitor_plates_total", ())] == 5
    assert m[("alpr_monitor_valid_plates_total", ())] == 2
    assert m[("alpr_monitor_plates_per_image_count", ())] == 3 and m[("alpr_monitor_plates_per_image_sum", ())] == 5
    assert m[("alpr_monitor_plate_score_count", ())] == 5
    assert m[("alpr_monitor_plate_score_bucket", (("le", "0.5"),))] == 2
    assert m[("alpr_monitor_latency_seconds_bucket", (("le", "0.25"),))] == 0
    assert m[("alpr_monitor_latency_seconds_bucket", (("le", "0.5"),))] == 3
    assert m[("alpr_monitor_valid_share", ())] == pytest.approx(0.4)
    assert m[("alpr_monitor_baseline_valid_share", ())] == pytest.approx(0.75)
    assert m[("alpr_monitor_valid_share_drift", ())] == pytest.approx(0.4 - 0.75)
    psi = population_stability_index(histogram(base_scores), histogram(s for _, s in live))
    assert m[("alpr_monitor_score_drift", ())] == pytest.approx(psi) and psi > 0.25
    assert m[("alpr_monitor_events_total", (("type", "request"),))] == 1
    assert m[("alpr_monitor_pending_requests", ())] == 0


def test_metric_names_are_all_exported():
    names = MonitorMetrics().exported_names()
    for name in METRIC_NAMES:
        assert name.startswith("alpr_monitor_")
        assert name in names or f"{name}_bucket" in names, name


def test_population_stability_index():
    assert population_stability_index([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    # two bins, shares 0.5/0.5 vs 0.9/0.1: (0.9-0.5) ln(1.8) + (0.1-0.5) ln(0.2)
    expected = 0.4 * math.log(1.8) - 0.4 * math.log(0.2)
    assert population_stability_index([5, 5], [9, 1]) == pytest.approx(expected)
    assert math.isnan(population_stability_index([0, 0], [1, 1]))
    with pytest.raises(ValueError, match="bins"):
        population_stability_index([1], [1, 2])


def test_the_window_forgets_old_plates(kserve):
    now = [0.0]
    metrics = MonitorMetrics(window_s=60, min_plates=1, clock=lambda: now[0])
    record = PredictionRecord(
        None,
        "e/0",
        datetime.now(UTC),
        "alpr",
        "",
        "0" * 64,
        1,
        1,
        1,
        None,
        plates_from_reading(kserve.reading(kserve.plate())),
    )
    value = metrics.registry.get_sample_value
    metrics.observe([record])
    assert value("alpr_monitor_window_plates") == 1 and value("alpr_monitor_valid_share") == 1.0
    now[0] = 61
    metrics.refresh()
    assert value("alpr_monitor_window_plates") == 0 and math.isnan(value("alpr_monitor_valid_share"))
    assert value("alpr_monitor_readings_total") == 1  # the counters keep counting


def test_images_are_sampled_by_their_sha256(db_url, storage_root, kserve):
    images = [kserve.image(shade=i) for i in range(40)]
    kept = [i for i in images if is_sampled(hashlib.sha256(i).hexdigest(), 0.5)]
    assert 0 < len(kept) < len(images)
    config = MonitorConfig(db_url=db_url, storage_uri=str(storage_root), sample_images=0.5)
    with TestClient(create_app(config)) as client:
        inference = kserve.v1(images, [kserve.reading()] * len(images))
        assert _send(client, inference).status_code == 200
    rows = _rows(db_url)
    assert [r["image_sha256"] for r in rows if r["image_uri"]] == [hashlib.sha256(i).hexdigest() for i in kept]
    client.app.state.prediction_log.store.dispose()


def test_the_retention_purge_runs_at_start_up(db_url, storage_root, kserve):
    log = PredictionLog(db_url, str(storage_root))
    data = kserve.image()
    old = PredictionRecord(
        None,
        "old/0",
        datetime.now(UTC) - timedelta(days=31),
        "alpr",
        "",
        hashlib.sha256(data).hexdigest(),
        len(data),
        64,
        32,
        None,
        (),
    )
    (old_id,) = log.add_predictions([old], [data])
    assert log.image(old_id) == data
    config = MonitorConfig(db_url=db_url, storage_uri=str(storage_root), retention_days=30)
    with TestClient(create_app(config, prediction_log=log)):
        deadline = time.monotonic() + 10
        while log.get(old_id).image_uri is not None and time.monotonic() < deadline:
            time.sleep(0.05)
    assert log.get(old_id).image_uri is None and log.image(old_id) is None
    assert not list((storage_root / "monitor/images").rglob("*.jpg"))
    log.store.dispose()


def test_cli_defaults_listen_on_loopback():
    args = cli._parse_args([])
    assert (args.host, args.port, args.sample_images, args.retention_days) == ("127.0.0.1", 8090, 0.1, 30)
    for bad in (["--sample-images", "1.5"], ["--retention-days", "0"], ["--port", "-1"]):
        with pytest.raises(SystemExit) as caught:
            cli._parse_args(bad)
        assert caught.value.code == 2
    with pytest.raises(ValueError, match="sample_images"):
        MonitorConfig(db_url="sqlite:///x.db", sample_images=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_real_server_on_loopback(tmp_path, kserve, storage_root):
    """``python -m alpr.monitoring`` (uvicorn) on a free loopback port: events in over real HTTP, a row out."""
    db_url = f"sqlite:///{tmp_path / 'live.db'}"
    port = _free_port()
    command = [sys.executable, "-m", "alpr.monitoring", "--port", str(port), "--db-url", db_url]
    command += ["--storage-uri", str(storage_root), "--sample-images", "1", "--log-level", "warning"]
    env = {**os.environ, "ALPR_WORKSPACE": str(tmp_path / "ws")}
    log_path = tmp_path / "monitor.log"
    with log_path.open("w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        image = kserve.image(fmt="PNG")
        inference = kserve.v1([image], [kserve.reading(kserve.plate())])
        with httpx.Client(base_url=base, timeout=10) as client:
            assert _send(client, inference).json()["status"] == "stored"
            assert "alpr_monitor_readings_total 1.0" in client.get("/metrics").text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    (row,) = _rows(db_url)
    assert row["event_id"] == f"{inference.id}/0" and Path(row["image_uri"]).read_bytes() == image


def test_cli_root_path():
    """``--root-path``: the prefix Kubeflow's gateway serves the page under (manifests/base/monitor-gateway.yaml)."""
    assert cli._parse_args([]).root_path == ""
    assert cli._parse_args(["--root-path", "/alpr/monitor/"]).root_path == "/alpr/monitor"
    for bad in ("alpr/monitor", "/alpr monitor", "/a?b"):
        with pytest.raises(SystemExit) as caught:
            cli._parse_args(["--root-path", bad])
        assert caught.value.code == 2


def test_the_review_page_under_a_root_path_links_under_it(config):
    """Behind the gateway (prefix stripped, uvicorn's ``root_path``) every local link, form and image of the page keeps
    the prefix, and following one reaches the app."""
    import re

    with TestClient(create_app(config), root_path="/alpr/monitor") as client:
        try:
            page = client.get("/")
            assert page.status_code == 200, page.text
            links = re.findall(r'(?:href|src|action)="(/[^"]*)"', page.text)
            assert links, page.text
            assert all(link.startswith("/alpr/monitor/") for link in links), links
            readings = next(link for link in links if link.split("?")[0] == "/alpr/monitor/readings")
            assert client.get(readings).status_code == 200
        finally:
            client.app.state.prediction_log.store.dispose()
