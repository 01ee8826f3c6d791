"""The typed lineage between steps (alpr.steps.lineage): round trips, the file format, and what a bad file says."""

import json
import math

import pytest

from alpr.steps.lineage import (
    LINEAGE_FILE,
    CandidatesLineage,
    DatasetLineage,
    LineageError,
    ModelLineage,
    TuneResult,
    read_lineage,
)

#: The keys each step wrote into lineage.json before the lineage was typed: artifacts of earlier runs must read.
RECORD_KEYS = {"annotation_version", "training_version", "git_rev", "dataset_repo", "counts", "created", "run_name"}
TRAIN_KEYS = {
    "annotation_version",
    "training_version",
    "git_rev",
    "hyperparameters",
    "config",
    "config_hash",
    "candidates",
    "train_uri",
    "tensorboard_uri",
    "val_metrics",
    "run_name",
}
#: Added since the first typed files: plate_detector by the two-stage design (a file without it reads as the one-stage
#: design), load_from by the warm start (Train's and Evaluate's; a file without it reads as from random weights).
TRAIN_KEYS_ADDED = {"plate_detector", "load_from"}
EVALUATE_KEYS_ADDED = {"load_from"}
EVALUATE_KEYS = (TRAIN_KEYS - {"val_metrics"}) | {"metrics", "model_uri", "model_id", "checkpoint", "selection_metric"}

COUNTS = {
    "splits": {"train": {"images": 12}, "val": {"images": 4}, "test": {"images": 4}},
    "classes": {"plate": 20, "7": 3},
}
DATASET = DatasetLineage(
    annotation_version="annotations-v1",
    training_version="training-annotations-v1-0123abcd",
    git_rev="a" * 40,
    dataset_repo="/ws/dataset.git",
    counts=COUNTS,
    created=True,
    run_name="run-1",
)
CANDIDATES = CandidatesLineage(
    annotation_version=DATASET.annotation_version,
    training_version=DATASET.training_version,
    git_rev="a" * 40,
    hyperparameters={
        "lr": 0.004,
        "epochs": 2,
        "batch_size": 4,
        "input_size": 128,
        "weight_decay": 0.05,
        "val_interval": 1,
        "seed": 0,
    },
    config="rtmdet_tiny_alpr.py",
    config_hash="c" * 64,
    candidates=["epoch_1.pth", "epoch_2.pth"],
    train_uri="/ws/storage/runs/run-1/train",
    tensorboard_uri=None,
    val_metrics={"coco/bbox_mAP": 0.25, "plate/eir": float("nan")},
    run_name="run-1",
)
MODEL = ModelLineage(
    annotation_version=DATASET.annotation_version,
    training_version=DATASET.training_version,
    git_rev="a" * 40,
    hyperparameters=CANDIDATES.hyperparameters,
    config=CANDIDATES.config,
    config_hash="c" * 64,
    candidates={"epoch_1.pth": {"eir": 0.5}, "epoch_2.pth": {"eir": 0.75, "mAP": float("nan")}},
    train_uri=CANDIDATES.train_uri,
    tensorboard_uri="/ws/storage/tensorboard/run-1",
    run_name="run-1",
    metrics={"eir": 0.75},
    model_uri="/ws/storage/runs/run-1/model",
    model_id=7,
    checkpoint="epoch_2.pth",
    selection_metric="eir",
)


@pytest.mark.parametrize("lineage", [DATASET, CANDIDATES, MODEL], ids=["record", "train", "evaluate"])
def test_round_trip_with_and_without_the_kind(tmp_path, lineage):
    lineage.write(tmp_path)
    for back in (read_lineage(tmp_path), read_lineage(tmp_path, type(lineage))):
        assert type(back) is type(lineage)
        assert json.dumps(back.to_dict(), sort_keys=True) == json.dumps(lineage.to_dict(), sort_keys=True)  # NaN
    with pytest.raises(AttributeError):
        lineage.run_name = "other"  # frozen


@pytest.mark.parametrize(
    ("lineage", "keys"),
    [(DATASET, RECORD_KEYS), (CANDIDATES, TRAIN_KEYS), (MODEL, EVALUATE_KEYS)],
    ids=["record", "train", "evaluate"],
)
def test_the_file_keeps_the_keys_written_before(tmp_path, lineage, keys):
    path = lineage.write(tmp_path)
    assert path == tmp_path / LINEAGE_FILE
    text = path.read_text()
    data = json.loads(text)
    added = TRAIN_KEYS_ADDED if lineage is CANDIDATES else EVALUATE_KEYS_ADDED if lineage is MODEL else set()
    assert set(data) == keys | added
    assert list(data) == sorted(data)  # sort_keys
    assert text == json.dumps(data, indent=2, sort_keys=True)
    # a file written by the untyped steps (a plain dict with these keys) reads as the typed record
    (tmp_path / LINEAGE_FILE).write_text(json.dumps({k: data[k] for k in keys}))
    old = read_lineage(tmp_path)
    assert old.to_dict().keys() == keys | added
    if lineage is CANDIDATES:
        assert old.plate_detector == ""  # the one-stage design
    if lineage is not DATASET:
        assert old.load_from == ""  # from random weights


def test_a_missing_file_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/lineage.json missing: .* not written by this pipeline"):
        read_lineage(tmp_path)


def test_a_missing_or_unknown_field_is_named_with_the_file(tmp_path):
    data = DATASET.to_dict()
    del data["git_rev"]
    (tmp_path / LINEAGE_FILE).write_text(json.dumps(data))
    with pytest.raises(
        LineageError,
        match=rf"{tmp_path}/lineage.json: missing field\(s\) git_rev: "
        r"not a DatasetLineage \(the lineage Record writes\)",
    ):
        read_lineage(tmp_path)
    (tmp_path / LINEAGE_FILE).write_text(json.dumps({**DATASET.to_dict(), "colour": "blue"}))
    with pytest.raises(LineageError, match=r"lineage.json: unknown field\(s\) colour"):
        read_lineage(tmp_path)
    # a step handed another step's folder: Evaluate's lineage where Train's is expected
    MODEL.write(tmp_path)
    with pytest.raises(
        LineageError,
        match=r"missing field\(s\) val_metrics; unknown field\(s\) checkpoint, metrics, "
        r"model_id, model_uri, selection_metric: not a CandidatesLineage",
    ):
        read_lineage(tmp_path, CandidatesLineage)
    assert issubclass(LineageError, ValueError)


def test_not_a_lineage_at_all(tmp_path):
    path = tmp_path / LINEAGE_FILE
    for text, message in (
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"name": "x"}', "none of the fields model_id, val_metrics, counts"),
    ):
        path.write_text(text)
        with pytest.raises(LineageError, match=message):
            read_lineage(tmp_path)


def test_fields_derived_for_the_components():
    assert DATASET.images == {"train": 12, "val": 4, "test": 4}
    assert DATASET.class_counts == {"plate": 20, "7": 3}
    tuned = TuneResult(
        study="tune-run-1-0a1b2c3d",
        backend="optuna",
        best_trial="t3",
        best_params={"lr": 0.01, "epochs": 2},
        best_metrics={"eir": 0.5},
        trials=4,
    )
    assert tuned.hp_override == '{"epochs": 2, "lr": 0.01}'
    assert not math.isnan(json.loads(tuned.hp_override)["lr"])
