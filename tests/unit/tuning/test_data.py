"""Which data a trial trains on (alpr.tuning.data.resolve_training_data): folders used in place, with or without
their lineage, and what an unknown reference says. Fetching a recorded version from the dataset repository is
tested end to end by tests/integration/test_tuning_pipeline.py."""

import json
from pathlib import Path

import pytest

from alpr.metadata import MetadataStore
from alpr.tuning.data import resolve_training_data


def _training_folder(root: Path, *, lineage: dict | None = None) -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    for split in ("train", "val"):
        (root / "annotations" / f"{split}.json").write_text("{}")
    if lineage is not None:
        (root / "lineage.json").write_text(json.dumps(lineage))
    return root


def test_a_folder_with_lineage_is_used_in_place_with_its_version(tmp_path, settings):
    folder = _training_folder(tmp_path / "record-out", lineage={"training_version": "v1-split-abc", "counts": {}})
    path, name = resolve_training_data(settings, str(folder), tmp_path / "fetched")
    assert path == folder.absolute() and name == "v1-split-abc"
    assert not (tmp_path / "fetched").exists()  # nothing copied
    assert not any(settings.workspace.rglob("metadata.db"))  # no store needed for a folder


def test_a_folder_without_lineage_has_no_version_name(tmp_path, settings, monkeypatch):
    folder = _training_folder(tmp_path / "plain")
    monkeypatch.chdir(tmp_path)
    path, name = resolve_training_data(settings, "plain", tmp_path / "fetched")
    assert path == folder.absolute() and path.is_absolute() and name is None


@pytest.mark.parametrize(("present", "missing"), [((), "train"), (("train",), "val"), (("val",), "train")])
def test_a_folder_that_is_not_a_training_version_names_the_missing_file(tmp_path, settings, present, missing):
    (tmp_path / "d" / "annotations").mkdir(parents=True)
    for split in present:
        (tmp_path / "d" / "annotations" / f"{split}.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=f"folder without annotations/{missing}.json: not a training version"):
        resolve_training_data(settings, str(tmp_path / "d"), tmp_path / "fetched")


def test_an_unknown_reference_names_itself_and_the_store(tmp_path, settings):
    with pytest.raises(LookupError) as exc:
        resolve_training_data(settings, "v404", tmp_path / "fetched")
    message = str(exc.value)
    assert "'v404'" in message and "neither a training version nor an annotation version" in message
    assert MetadataStore(settings.db_url).url_for_display in message
    assert not (tmp_path / "fetched").exists()
