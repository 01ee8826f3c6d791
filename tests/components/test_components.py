"""Each KFP component's function called directly (``.python_func``) on a real workspace, in pipeline order.

The tasks learn their run from ``ALPR_RUN_NAME`` (set here as the pipeline sets it), not from an input.
"""

import json
from pathlib import Path

import pytest
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Markdown, Metrics, Model, PipelineTaskFinalStatus
from tiny_models import TINY_HP

from alpr.data.synth import synthesize
from alpr.data.versions import register_annotation_version
from alpr.kubeflow.platform import RUN_NAME_ENV
from alpr.metadata import MetadataStore
from alpr.model.report import CONFUSION_FILE, MISSING, ConfusionMatrix
from alpr.settings import Settings
from components.deploy import deploy
from components.evaluate import evaluate
from components.finish import finish
from components.record import record
from components.test import test as test_component
from components.train import train

RUN = "component-test-run"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A workspace with one registered annotation version of 20 synthetic images; env set for the components."""
    ws = tmp_path_factory.mktemp("ws")
    settings = Settings(workspace=ws)
    mp = pytest.MonkeyPatch()
    for key, value in settings.environ().items():
        mp.setenv(key, value)
    mp.setenv(RUN_NAME_ENV, RUN)
    src = tmp_path_factory.mktemp("labelme")
    synthesize(src, 20, seed=21, progress=False)
    register_annotation_version(settings, src, "v1", progress=False)
    yield settings
    mp.undo()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    return {
        "dataset": Dataset(name="dataset", uri=str(root / "dataset")),
        "candidates": Model(name="model", uri=str(root / "candidates")),
        "train_metrics": Metrics(name="metrics", uri=str(root / "train_metrics")),
        "selected": Model(name="selected_model", uri=str(root / "selected")),
        "eval_metrics": Metrics(name="metrics", uri=str(root / "eval_metrics")),
        "report": HTML(name="report", uri=str(root / "report.html")),
        "test_metrics": Metrics(name="metrics", uri=str(root / "test_metrics")),
    }


def test_record(workspace, artifacts):
    ds = artifacts["dataset"]
    record.python_func(
        annotation_version="v1",
        train_fraction=0.6,
        val_fraction=0.2,
        test_fraction=0.2,
        split_seed=0,
        dataset=ds,
    )
    assert ds.metadata["annotation_version"] == "v1"
    assert ds.metadata["training_version"].startswith("training-v1-")
    assert len(ds.metadata["git_rev"]) == 40
    assert sum(ds.metadata["images"].values()) == 20
    assert (Path(ds.path) / "annotations" / "train.json").is_file()
    assert MetadataStore(workspace.db_url).get_run(RUN)["status"] == "running"


def test_train(workspace, artifacts):
    model, metrics = artifacts["candidates"], artifacts["train_metrics"]
    train.python_func(
        dataset=artifacts["dataset"],
        config="rtmdet_tiny_reader_alpr.py",  # the two-stage reader, on the plates' crops
        weight_decay=0.05,
        seed=0,
        plate_input_size=256,  # the two-stage design: a plate detector at 256 px, trained on 128-px crops
        plate_epochs=1,
        load_from="",
        train_workers=1,
        train_gpus_per_worker=0,
        model=model,
        metrics=metrics,
        **TINY_HP,
    )
    assert "epoch_2.pth" in model.metadata["candidates"]
    assert (Path(model.path) / "config.py").is_file()
    assert model.metadata["plate_detector"] == "plate_detector"
    for name in ("config.py", "model.pth"):
        assert (Path(model.path) / "plate_detector" / name).is_file()
        assert (Path(model.metadata["train_uri"]) / "plate_detector" / name).is_file()
    assert Path(model.metadata["train_uri"], "config.py").is_file()
    assert list(Path(model.metadata["tensorboard_uri"]).rglob("events.out.tfevents.*"))
    assert "plate_eir" in metrics.metadata and "coco_bbox_mAP" in metrics.metadata


def test_train_with_two_workers(workspace, artifacts, tmp_path, capfd, monkeypatch):
    """``--train-workers 2`` here: two torchrun processes (gloo) train; the step publishes their checkpoints once."""
    monkeypatch.setenv(RUN_NAME_ENV, f"{RUN}-ddp")  # its own work dir and storage paths, not test_train's
    model = Model(name="model", uri=str(tmp_path / "model"))
    metrics = Metrics(name="metrics", uri=str(tmp_path / "metrics"))
    train.python_func(
        dataset=artifacts["dataset"],
        config="rtmdet_tiny_alpr.py",
        weight_decay=0.05,
        seed=0,
        plate_input_size=0,
        plate_epochs=1,
        load_from="",
        train_workers=2,
        train_gpus_per_worker=0,
        model=model,
        metrics=metrics,
        **TINY_HP,
    )
    assert "Scaling the original LR by 2.0" in "".join(capfd.readouterr())
    assert {"epoch_1.pth", "epoch_2.pth"} <= set(model.metadata["candidates"])
    published = Path(model.metadata["train_uri"])
    assert "launcher = 'pytorch'" not in (published / "config.py").read_text()  # Evaluate loads it in one process
    assert len(list(Path(model.metadata["tensorboard_uri"]).rglob("events.out.tfevents.*"))) == 1
    assert "plate_eir" in metrics.metadata


def test_evaluate(workspace, artifacts):
    selected, metrics = artifacts["selected"], artifacts["eval_metrics"]
    evaluate.python_func(
        dataset=artifacts["dataset"],
        candidates=artifacts["candidates"],
        selection_metric="eir",
        selected_model=selected,
        metrics=metrics,
    )
    assert {"val_eir", "val_mAP", "val_char_accuracy", "val_recall"} <= set(metrics.metadata)
    breakdown = json.loads((Path(selected.path) / "model.json").read_text())["breakdown"]
    assert breakdown["split"] == "val" and set(breakdown["groups"]) == {"width", "angle", "layout", "brightness"}
    assert breakdown["overall"]["n_truth"] == sum(row["n_truth"] for row in breakdown["groups"]["width"].values())
    for name in ("config.py", "model.pth", "model.json", "plate_detector/config.py", "plate_detector/model.pth"):
        assert (Path(selected.path) / name).is_file()
        assert (Path(selected.metadata["model_uri"]) / name).is_file()
    from alpr.model.crops import READER_GEOMETRY
    from alpr.model.inference import PlateReader

    assert PlateReader(Path(selected.path)).crop_geometry == READER_GEOMETRY  # read as it was trained
    model_json = json.loads((Path(selected.path) / "model.json").read_text())
    assert model_json["two_stage"] and list(model_json["threshold_sweep"]["by_zoom_below_px"]) == ["0"]
    lineage = json.loads((Path(selected.path) / "lineage.json").read_text())
    for metrics in lineage["candidates"].values():  # every candidate read with both stages on val
        assert {"eir", "plate_precision", "char_accuracy", "mAP"} <= set(metrics)
    store = MetadataStore(workspace.db_url)
    latest = store.latest_selected_model()
    assert latest["id"] == selected.metadata["model_id"] and latest["uri"] == selected.metadata["model_uri"]
    assert len(store.models_of_training_version(artifacts["dataset"].metadata["training_version"])) >= 2


def test_train_warm_starts_from_the_latest_model(workspace, artifacts, tmp_path, monkeypatch, capfd):
    """``load_from="latest"``: the model Evaluate just selected (two-stage) gives both networks their first weights;
    the trained candidates record it."""
    monkeypatch.setenv(RUN_NAME_ENV, f"{RUN}-warm")  # its own work dir and storage paths
    model = Model(name="model", uri=str(tmp_path / "model"))
    train.python_func(
        dataset=artifacts["dataset"],
        config="rtmdet_tiny_reader_alpr.py",
        weight_decay=0.05,
        seed=0,
        plate_input_size=256,
        plate_epochs=1,
        load_from="latest",
        train_workers=1,
        train_gpus_per_worker=0,
        model=model,
        metrics=Metrics(name="metrics", uri=str(tmp_path / "metrics")),
        **TINY_HP,
    )
    selected = artifacts["selected"].metadata["model_uri"]
    assert model.metadata["load_from"] == selected
    assert json.loads((Path(model.path) / "lineage.json").read_text())["load_from"] == selected
    # The component's log (alpr.logs.setup: stderr): the reader, then the plate detector, from the selected model.
    started = [line for line in capfd.readouterr().err.splitlines() if "warm start: weights from" in line]
    assert len(started) == 2 and started[1].endswith("plate_detector/model.pth")


def test_test(workspace, artifacts, tmp_path):
    report, metrics = artifacts["report"], artifacts["test_metrics"]
    confusion = ClassificationMetrics(name="confusion_matrix", uri=str(tmp_path / "confusion_matrix"))
    test_component.python_func(
        dataset=artifacts["dataset"],
        model=artifacts["selected"],
        report=report,
        metrics=metrics,
        confusion_matrix=confusion,
    )
    html = Path(report.path).read_text()
    assert "ALPR test report" in html and 'src="data:image/jpeg;base64,' in html
    assert 'src="images/' not in html  # every picture inlined (once: see tests/unit/model/test_report.py)
    assert '<table class="confusion">' in html and 'class="breakdown breakdown-width"' in html
    report_dir = Path(report.path + "_files")
    assert (report_dir / "index.html").is_file()
    assert (Path(report.metadata["report_uri"]) / "index.html").is_file()  # published to storage too
    assert {"test_eir", "test_plate_precision", "test_char_accuracy", "test_mAP", "test_recall"} <= set(
        metrics.metadata
    )
    # The character confusion matrix as KFP draws it: 0-9, A-E and the missing symbol, rows = truth.
    cm = confusion.metadata["confusionMatrix"]
    names = [spec["displayName"] for spec in cm["annotationSpecs"]]
    assert names == [*"0123456789ABCDE", MISSING]
    assert [row["row"] for row in cm["rows"]] == [
        list(r) for r in ConfusionMatrix.read(report_dir / CONFUSION_FILE).counts
    ]
    store = MetadataStore(workspace.db_url)
    model_id = artifacts["selected"].metadata["model_id"]
    rows = store.test_results(model_id)
    n_test = json.loads((Path(artifacts["dataset"].path) / "annotations" / "test.json").read_text())["images"]
    assert len(rows) == len(n_test) == report.metadata["images"]
    # Every ground-truth character of the test split is a row of the matrix.
    n_chars = sum(len(p["text"]) for img in n_test for p in img.get("plates", []))
    assert sum(sum(row["row"]) for row in cm["rows"][:-1]) == n_chars
    assert store.get_run(RUN)["status"] == "running"  # Deploy follows; the exit handler (Finish) ends the run


def test_deploy(workspace, artifacts, tmp_path, monkeypatch):
    monkeypatch.delenv("ALPR_DEPLOY_TARGET", raising=False)
    decision, metrics = Markdown(name="decision", uri=str(tmp_path / "decision.md")), Metrics(name="m", uri="")
    action = deploy.python_func(
        model=artifacts["selected"],
        deploy_target="",
        min_eir_improvement=0.0,
        decision=decision,
        metrics=metrics,
    )
    model_id = artifacts["selected"].metadata["model_id"]
    assert action == "deployed" and decision.metadata["target"] == "local"  # nothing was served: deploy
    text = Path(decision.path).read_text()
    assert (
        "**deployed**" in text and "make serve MODEL=" in text and artifacts["selected"].metadata["model_uri"] in text
    )
    assert metrics.metadata["deployed"] == 1.0 and "deploy_new_eir" in metrics.metadata
    # the same model again: already served, skipped; both decisions are in the metadata store
    again = Markdown(name="decision", uri=str(tmp_path / "again.md"))
    assert (
        deploy.python_func(
            model=artifacts["selected"],
            deploy_target="local",
            min_eir_improvement=0.0,
            decision=again,
            metrics=Metrics(name="m", uri=""),
        )
        == "skipped"
    )
    rows = MetadataStore(workspace.db_url).deployments("local")
    assert [(r["action"], r["model_id"], r["run"]) for r in rows] == [
        ("deployed", model_id, RUN),
        ("skipped", model_id, RUN),
    ]
    assert "already served" in rows[1]["reason"]


def test_record_refuses_an_unknown_version(workspace, tmp_path, monkeypatch):
    from alpr.data.repo import DatasetRepoError

    monkeypatch.setenv(RUN_NAME_ENV, "other")
    with pytest.raises(DatasetRepoError, match="'v404'"):
        record.python_func(
            annotation_version="v404",
            train_fraction=0.8,
            val_fraction=0.1,
            test_fraction=0.1,
            split_seed=0,
            dataset=Dataset(name="d", uri=str(tmp_path / "d")),
        )
    run = MetadataStore(workspace.db_url).get_run("other")
    assert run["status"] == "failed" and run["finished_at"] is not None  # not left "running" forever


def test_a_failing_step_marks_its_run_failed(workspace, tmp_path, monkeypatch):
    """Record succeeds, Train fails (a config that does not exist): the run ends ``failed``, the error is Train's."""
    monkeypatch.setenv(RUN_NAME_ENV, "broken-train")
    dataset = Dataset(name="d", uri=str(tmp_path / "d"))
    record.python_func(
        annotation_version="v1",
        train_fraction=0.6,
        val_fraction=0.2,
        test_fraction=0.2,
        split_seed=0,
        dataset=dataset,
    )
    store = MetadataStore(workspace.db_url)
    assert store.get_run("broken-train")["status"] == "running"
    with pytest.raises(Exception, match="no_such_config"):
        train.python_func(
            dataset=dataset,
            config="no_such_config.py",
            weight_decay=0.05,
            seed=0,
            plate_input_size=0,
            plate_epochs=1,
            load_from="",
            train_workers=1,
            train_gpus_per_worker=0,
            model=Model(name="m", uri=str(tmp_path / "m")),
            metrics=Metrics(name="x", uri=str(tmp_path / "x")),
            **TINY_HP,
        )
    run = store.get_run("broken-train")
    assert run["status"] == "failed" and run["finished_at"] is not None
    # The exit handler then gets the failed group's state and keeps the run failed, with the reason.
    status = _final_status("FAILED", error="Train failed")
    assert finish.python_func(status=status) == "failed"
    assert store.get_run("broken-train")["status"] == "failed"


def _final_status(state: str, error: str = "") -> PipelineTaskFinalStatus:
    """What the KFP backend hands the exit task: the exit-handler group's final state."""
    return PipelineTaskFinalStatus(
        state=state,
        pipeline_job_resource_name="alpr-train-abcde",
        pipeline_task_name="exit-handler-1",
        error_code=None,
        error_message=error or None,
    )


def test_finish_ends_the_run_after_deploy(workspace):
    """After Test and Deploy the run is still running; the exit task (Finish) sets succeeded."""
    store = MetadataStore(workspace.db_url)
    assert store.get_run(RUN)["status"] == "running"
    assert finish.python_func(status=_final_status("COMPLETE")) == "succeeded"
    run = store.get_run(RUN)
    assert run["status"] == "succeeded" and run["finished_at"] is not None


def test_a_component_outside_a_run_says_what_is_missing(workspace, tmp_path, monkeypatch):
    from alpr.steps.runs import RunNameMissing

    monkeypatch.delenv(RUN_NAME_ENV)
    with pytest.raises(RunNameMissing, match="ALPR_RUN_NAME"):
        finish.python_func(status=_final_status("COMPLETE"))
