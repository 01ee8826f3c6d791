"""Annotation and training versions against real git, DVC and the metadata store (SQLite here; the store's own
tests cover MariaDB)."""

import json
import shutil
from pathlib import Path

import git
import pytest

from alpr.data.repo import DatasetRepoError
from alpr.data.synth import synthesize
from alpr.data.versions import InvalidAnnotations, record_training_version, register_annotation_version
from alpr.metadata import AlreadyExists, MetadataStore
from alpr.settings import Settings


@pytest.fixture(scope="module")
def labelme_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("labelme")
    synthesize(folder, 12, seed=3, progress=False)
    return folder


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(workspace=tmp_path / "ws")


def _origin_tags(settings: Settings) -> set[str]:
    return {t.name for t in git.Repo(settings.dataset_repo).tags}


def _remote_files(settings: Settings) -> int:
    return (
        sum(1 for p in Path(settings.dvc_remote).rglob("*") if p.is_file()) if Path(settings.dvc_remote).exists() else 0
    )


def test_register_publishes_tag_dvc_and_rows(settings, labelme_folder):
    rev = register_annotation_version(settings, labelme_folder, "annotations-v1", description="test", progress=False)
    assert "annotations-v1" in _origin_tags(settings)
    assert git.Repo(settings.dataset_repo).tags["annotations-v1"].commit.hexsha == rev
    assert _remote_files(settings) >= 24  # 12 images + 12 labelme files (+ the .dir manifest)
    store = MetadataStore(settings.db_url)
    version = store.get_annotation_version("annotations-v1")
    assert version["git_rev"] == rev and version["image_count"] == 12
    assert sum(version["class_counts"].values()) > 12 * 7
    assert len(store.annotation_images("annotations-v1")) == 12


def test_register_twice_is_refused_and_changes_nothing(settings, labelme_folder):
    register_annotation_version(settings, labelme_folder, "v1", progress=False)
    with pytest.raises(AlreadyExists):
        register_annotation_version(settings, labelme_folder, "v1", progress=False)
    assert len(MetadataStore(settings.db_url).list_annotation_versions()) == 1


def test_register_invalid_folder_publishes_nothing(settings, labelme_folder, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(labelme_folder, bad)
    first = sorted(bad.glob("*.json"))[0]
    doc = json.loads(first.read_text())
    doc["shapes"][0]["label"] = "Z'); DROP TABLE images; --"
    first.write_text(json.dumps(doc))
    with pytest.raises(InvalidAnnotations) as err:
        register_annotation_version(settings, bad, "v-bad", progress=False)
    assert first.name in str(err.value) and "DROP TABLE" in str(err.value)
    store = MetadataStore(settings.db_url)
    store.create_schema()
    assert store.list_annotation_versions() == []
    assert not Path(settings.dataset_repo).exists() or "v-bad" not in _origin_tags(settings)


def test_failed_dvc_push_leaves_no_rows_and_no_tag_then_rerun_works(tmp_path, labelme_folder):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the DVC remote folder should be")
    broken = Settings(workspace=tmp_path / "ws", dvc_remote=str(blocker / "remote"))
    with pytest.raises(DatasetRepoError, match="dvc add/push"):
        register_annotation_version(broken, labelme_folder, "v1", progress=False)
    assert MetadataStore(broken.db_url).list_annotation_versions() == []
    assert "v1" not in _origin_tags(broken)
    fixed = Settings(workspace=tmp_path / "ws")
    register_annotation_version(fixed, labelme_folder, "v1", progress=False)
    assert "v1" in _origin_tags(fixed)


def test_record_creates_then_reuses_training_version(settings, labelme_folder, tmp_path):
    register_annotation_version(settings, labelme_folder, "v1", progress=False)
    # A fresh clone must pull images from the DVC remote, not find them in a local cache.
    shutil.rmtree(settings.cache_dir)
    tv = record_training_version(
        settings, "v1", fractions=(0.5, 0.25, 0.25), seed=1, out_dir=tmp_path / "out", progress=False
    )
    assert tv.created and tv.name in _origin_tags(settings)
    for split in ("train", "val", "test"):
        coco = json.loads((tmp_path / "out" / "annotations" / f"{split}.json").read_text())
        for img in coco["images"]:
            assert (tmp_path / "out" / img["file_name"]).is_file()
            assert all(len(p["text"]) == 7 for p in img["plates"])
    store = MetadataStore(settings.db_url)
    row = store.get_training_version(tv.name)
    assert row["git_rev"] == tv.git_rev
    assert len(store.training_splits(tv.name)) == 12

    again = record_training_version(
        settings, "v1", fractions=(0.5, 0.25, 0.25), seed=1, out_dir=tmp_path / "out2", progress=False
    )
    assert not again.created and again.name == tv.name and again.git_rev == tv.git_rev
    assert len(store.list_training_versions()) == 1
    assert (tmp_path / "out2" / "annotations" / "train.json").read_bytes() == (
        tmp_path / "out" / "annotations" / "train.json"
    ).read_bytes()

    other = record_training_version(settings, "v1", fractions=(0.5, 0.25, 0.25), seed=2, progress=False)
    assert other.name != tv.name and len(store.list_training_versions()) == 2


def test_record_unknown_version_and_bad_fractions(settings, labelme_folder):
    register_annotation_version(settings, labelme_folder, "v1", progress=False)
    with pytest.raises(DatasetRepoError, match="not registered"):
        record_training_version(settings, "v9", progress=False)
    with pytest.raises(ValueError, match="fraction"):
        record_training_version(settings, "v1", fractions=(0.9, 0.2, -0.1), progress=False)
    assert MetadataStore(settings.db_url).list_training_versions() == []


def test_record_db_failure_after_push_removes_the_tag(settings, labelme_folder):
    """A training version whose rows cannot be written must not leave its tag on the origin."""
    register_annotation_version(settings, labelme_folder, "v1", progress=False)
    tv = record_training_version(settings, "v1", seed=5, progress=False)
    # Occupy the name a different parameter set would need -> its insert fails after the push.
    from alpr.data.repo import params_hash
    from alpr.data.versions import CONVERTER_VERSION, training_version_name

    digest = params_hash(
        {"annotation_version": "v1", "fractions": [0.8, 0.1, 0.1], "seed": 6, "converter": CONVERTER_VERSION}
    )
    clash = training_version_name("v1", digest)
    store = MetadataStore(settings.db_url)
    with store.transaction() as tx:
        tx.add_training_version(
            clash, "v1", params_hash="0" * 64, git_rev="x", seed=0, fractions=(0.8, 0.1, 0.1), counts={}, splits={}
        )
    with pytest.raises(AlreadyExists):
        record_training_version(settings, "v1", seed=6, progress=False)
    assert clash not in _origin_tags(settings)
    assert tv.name in _origin_tags(settings)
