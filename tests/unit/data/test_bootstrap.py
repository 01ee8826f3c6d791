"""Bootstrapping a new workspace (alpr.data.bootstrap): a few synthetic plates registered once as the first
annotation version, over real git, DVC and the metadata store (SQLite, and MariaDB when the ``mysql`` tests run)."""

import json
from pathlib import Path

import git
import pytest

from alpr.data.bootstrap import bootstrap
from alpr.data.synth import synthesize
from alpr.defaults import BOOTSTRAP_VERSION
from alpr.metadata import MetadataStore
from alpr.settings import Settings

N = 6


@pytest.fixture
def settings(tmp_path, db_url) -> Settings:
    return Settings(workspace=tmp_path / "ws", db_url=db_url)


def _folder(settings: Settings) -> Path:
    return Path(settings.workspace) / "bootstrap" / BOOTSTRAP_VERSION


def _state(settings: Settings) -> dict:
    """Everything a bootstrap may change: the origin's refs, the DVC remote, the rows and the drawn samples."""
    origin = git.Repo(settings.dataset_repo)
    store = MetadataStore(settings.db_url)
    return {
        "refs": sorted((ref.path, ref.commit.hexsha) for ref in origin.refs),
        "remote": sorted(str(p) for p in Path(settings.dvc_remote).rglob("*") if p.is_file()),
        "versions": store.list_annotation_versions(),
        "images": store.annotation_images(BOOTSTRAP_VERSION),
        "samples": {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in _folder(settings).iterdir()},
    }


def test_first_version_is_created_once(settings):
    assert bootstrap(settings, N, progress=False) is True
    store = MetadataStore(settings.db_url)
    version = store.get_annotation_version(BOOTSTRAP_VERSION)
    assert version["image_count"] == N and f"{N} synthetic plates" in version["description"]
    assert len(store.annotation_images(BOOTSTRAP_VERSION)) == N
    origin = git.Repo(settings.dataset_repo)
    assert origin.tags[BOOTSTRAP_VERSION].commit.hexsha == version["git_rev"]
    assert origin.commit("refs/heads/main").hexsha == version["git_rev"]
    assert len(list(_folder(settings).glob("*.json"))) == N and len(list(_folder(settings).glob("*.jpg"))) == N

    before = _state(settings)
    assert bootstrap(settings, N, progress=False) is False
    assert _state(settings) == before  # nothing drawn, pushed, tagged or written
    assert bootstrap(settings, N + 1, progress=False) is False  # the version exists: another size changes nothing
    assert _state(settings) == before


def test_samples_drawn_before_an_interruption_are_reused_or_completed(tmp_path):
    settings = Settings(workspace=tmp_path / "ws")
    folder = _folder(settings)
    reference = tmp_path / "reference"
    synthesize(reference, N, seed=0, progress=False)
    synthesize(folder, N // 2, seed=0, progress=False)  # a bootstrap killed while drawing
    assert bootstrap(settings, N, progress=False) is True
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in reference.iterdir())
    for path in reference.iterdir():
        assert (folder / path.name).read_bytes() == path.read_bytes()  # sample i depends on (seed, i) only
    assert MetadataStore(settings.db_url).get_annotation_version(BOOTSTRAP_VERSION)["image_count"] == N


def test_a_complete_draw_is_not_redrawn(tmp_path):
    settings = Settings(workspace=tmp_path / "ws")
    synthesize(_folder(settings), N, seed=0, progress=False)  # drawn, then killed before the registration
    drawn = {p.name: p.stat().st_mtime_ns for p in _folder(settings).iterdir()}
    assert bootstrap(settings, N, progress=False) is True
    assert {p.name: p.stat().st_mtime_ns for p in _folder(settings).iterdir()} == drawn


def test_bootstrap_draws_the_conditions_asked_for(tmp_path):
    from alpr.data.synth import ROAD

    settings = Settings(workspace=tmp_path / "ws")
    with pytest.raises(ValueError, match="unknown synthetic conditions 'rainy'.*classic, road"):
        bootstrap(settings, 2, conditions="rainy", progress=False)
    assert not _folder(settings).exists()  # nothing drawn
    assert bootstrap(settings, 2, conditions="road", progress=False) is True
    for path in _folder(settings).glob("*.json"):
        doc = json.loads(path.read_text())
        assert (doc["imageWidth"], doc["imageHeight"]) in ROAD.frame_sizes
    assert "road conditions" in MetadataStore(settings.db_url).get_annotation_version(BOOTSTRAP_VERSION)["description"]


def test_a_mixture_of_conditions_shares_the_images(tmp_path):
    from alpr.data.synth import CLASSIC, ROAD

    settings = Settings(workspace=tmp_path / "ws")
    with pytest.raises(ValueError, match="unknown synthetic conditions 'rainy'"):
        bootstrap(settings, 4, conditions="classic+rainy", progress=False)
    assert not _folder(settings).exists()  # nothing drawn
    assert bootstrap(settings, 4, conditions="classic+road", progress=False) is True
    reference = tmp_path / "reference"
    synthesize(reference, 2, seed=0, progress=False, conditions=CLASSIC)  # samples 0, 1
    synthesize(reference, 2, seed=0, progress=False, conditions=ROAD, first=2)  # samples 2, 3
    assert sorted(p.name for p in _folder(settings).iterdir()) == sorted(p.name for p in reference.iterdir())
    for path in reference.iterdir():
        assert (_folder(settings) / path.name).read_bytes() == path.read_bytes()
    version = MetadataStore(settings.db_url).get_annotation_version(BOOTSTRAP_VERSION)
    assert version["image_count"] == 4 and "classic+road conditions" in version["description"]
