from pathlib import Path

import pytest

from alpr.settings import Settings, load_settings


def test_defaults_live_in_the_workspace(tmp_path, monkeypatch):
    for var in ("ALPR_DB_URL", "ALPR_STORAGE_URI", "ALPR_DATASET_REPO", "ALPR_DVC_REMOTE", "ALPR_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ALPR_WORKSPACE", str(tmp_path / "ws"))
    s = load_settings()
    ws = tmp_path / "ws"
    assert s.workspace == ws
    assert s.db_url == f"sqlite:///{ws / 'metadata.db'}"
    assert s.storage_uri == str(ws / "storage")
    assert s.dataset_repo == str(ws / "dataset.git")
    assert s.dvc_remote == str(ws / "dvc-remote")
    assert s.cache_dir == ws / "cache"
    assert s.is_local_dataset_repo


def test_environment_and_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPR_DB_URL", "mysql+pymysql://alpr@db:3306/alpr")
    monkeypatch.setenv("ALPR_STORAGE_URI", "gs://bucket/alpr")
    monkeypatch.setenv("ALPR_DATASET_REPO", "https://git.example.com/plates.git")
    s = load_settings(workspace=tmp_path)
    assert s.db_url.startswith("mysql+pymysql://")
    assert s.storage_uri == "gs://bucket/alpr"
    assert not s.is_local_dataset_repo
    env = s.environ()
    assert env["ALPR_WORKSPACE"] == str(tmp_path)
    assert Settings(**{k.removeprefix("ALPR_").lower(): v for k, v in env.items()}).environ() == env


def test_relative_workspace_becomes_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ALPR_WORKSPACE", raising=False)
    monkeypatch.delenv("ALPR_DB_URL", raising=False)
    s = load_settings()
    assert s.workspace == tmp_path / ".alpr"
    assert Path(s.db_url.removeprefix("sqlite:///")).is_absolute()


@pytest.mark.parametrize("value", ["", None])
def test_none_overrides_are_ignored(value, tmp_path):
    s = load_settings(workspace=tmp_path, storage_uri=value)
    assert s.storage_uri == str(tmp_path / "storage")
