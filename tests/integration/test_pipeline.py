"""The pipeline: compiled IR (no cluster) and one complete kfp.local run on tiny data."""

import json
import re

import pytest
import yaml

from alpr.metadata import MetadataStore
from alpr.settings import Settings
from pipelines import run as pipeline


def test_compile_carries_every_parameter_and_its_default(tmp_path):
    """The graph itself (order, caching, Tune's condition, the exit handler) is tests/pipelines/test_graph.py's."""
    out = pipeline.compile_pipeline(tmp_path / "p.yaml")
    spec = next(yaml.safe_load_all(out.read_text()))  # the pipeline spec; the kubernetes platform spec follows
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == set(pipeline.DEFAULTS)
    assert params["epochs"]["defaultValue"] == pipeline.DEFAULTS["epochs"]
    assert params["selection_metric"]["defaultValue"] == "eir"
    assert sorted(spec["root"]["dag"]["tasks"]) == ["exit-handler-1", "finish"]


def test_compile_cli_writes_yaml(tmp_path, capsys):
    assert pipeline.main(["--compile", "--output", str(tmp_path / "x.yaml")]) == 0
    assert (tmp_path / "x.yaml").is_file()
    assert "compiled" in capsys.readouterr().out


def test_cli_flags_cover_every_parameter():
    args = pipeline._parse_args(["--run", "--epochs", "3", "--lr", "0.01", "--selection-metric", "mAP"])
    values = pipeline.pipeline_arguments(args)
    assert values["epochs"] == 3 and values["lr"] == 0.01 and values["selection_metric"] == "mAP"
    assert set(values) == set(pipeline.DEFAULTS)
    with pytest.raises(SystemExit):
        pipeline._parse_args([])


@pytest.mark.slow
def test_local_run_end_to_end(tmp_path, monkeypatch, capsys):
    """`python pipeline.py --run` on a fresh workspace: bootstrap, Record, Train, Evaluate, Test, summary."""
    ws = tmp_path / "ws"
    for key, value in Settings(workspace=ws).environ().items():
        monkeypatch.setenv(key, value)  # restored after the test; run_local exports the same values
    argv = [
        "--run",
        "--workspace",
        str(ws),
        "--bootstrap-images",
        "24",
        "--epochs",
        "2",
        "--input-size",
        "160",
        "--batch-size",
        "4",
        "--val-interval",
        "1",
        "--train-fraction",
        "0.6",
        "--val-fraction",
        "0.2",
        "--test-fraction",
        "0.2",
    ]
    assert pipeline.main(argv) == 0
    out = capsys.readouterr().out
    assert "ALPR pipeline finished" in out and "selected model" in out and "test report:    /" in out
    assert "deploy:         deployed at local" in out and "serve:          make serve MODEL=" in out
    store = MetadataStore(f"sqlite:///{ws / 'metadata.db'}")
    model = store.latest_selected_model()
    assert model is not None
    lineage = store.model_lineage(model["id"])
    assert lineage["annotation_version"]["name"] == pipeline.BOOTSTRAP_VERSION
    assert lineage["training_version"]["name"].startswith("training-annotations-v1-")
    splits = {e["split"] for e in store.evaluations(model["id"])}
    assert splits == {"val", "test"}
    assert store.test_results(model["id"])
    run = store.get_run(lineage["run"]["name"])
    assert run["status"] == "succeeded" and run["finished_at"] is not None  # finished after Deploy, not by Test
    assert run["name"].startswith("alpr-train-") and run["host"] == "local"
    assert run["parameters"] == {**pipeline.DEFAULTS, **run["parameters"]} and run["parameters"]["epochs"] == 2
    assert f"run:            {run['name']}  succeeded" in out
    assert [d["run"] for d in store.deployments("local")] == [run["name"]]  # Deploy recorded the same run
    reports = list((ws / "pipeline_root").glob("*/test/report_files/index.html"))
    assert len(reports) == 1 and "ALPR test report" in reports[0].read_text()
    assert list((ws / "storage" / "tensorboard").rglob("events.out.tfevents.*"))

    # Second run: the annotation version exists, Record re-uses the training version.
    assert pipeline.main(argv) == 0
    assert len(store.list_training_versions()) == 1
    assert len(store.list_annotation_versions()) == 1
    decisions = store.deployments("local")  # one Deploy decision per run, the first one deployed
    assert [d["action"] for d in decisions][:1] == ["deployed"] and len(decisions) == 2

    # The acceptance command reads images with the latest selected model.
    from alpr.serving import predict

    images = sorted((ws / "bootstrap" / pipeline.BOOTSTRAP_VERSION).glob("*.jpg"))[:2]
    out_file = tmp_path / "readings.json"
    assert predict.main(["--model", "latest", *map(str, images), "--out", str(out_file)]) == 0
    readings = json.loads(out_file.read_text())
    assert sorted(readings) == sorted(p.name for p in images)
    assert all("plates" in r for r in readings.values())


def test_a_failing_local_run_ends_failed(tmp_path, monkeypatch, capsys):
    """Record fails (an annotation version the dataset repository does not have): kfp.local stops, the run is
    recorded ``failed`` with every parameter, and the command exits 1 with the reason."""
    ws = tmp_path / "ws"
    for key, value in Settings(workspace=ws).environ().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ALPR_RUN_NAME", raising=False)
    assert pipeline.main(["--run", "--workspace", str(ws), "--annotation-version", "annotations-v404"]) == 1
    captured = capsys.readouterr()
    (name,) = re.findall(r"^run: (alpr-train-\S+)$", captured.out, flags=re.MULTILINE)
    assert f"ALPR pipeline failed: run {name} failed: " in captured.err
    run = MetadataStore(f"sqlite:///{ws / 'metadata.db'}").get_run(name)
    assert run["status"] == "failed" and run["finished_at"] is not None
    assert run["parameters"]["annotation_version"] == "annotations-v404"
    import os

    assert "ALPR_RUN_NAME" not in os.environ  # the run's name was set for its tasks only
