"""The dataset repository (alpr.data.repo) over real git and DVC: a local bare origin and a local DVC remote in
tmp_path, and one or two working copies (each its own cache folder) on them.

Covers publishing (commit and tag stay local until one atomic push of tag and branch; same inputs, same commit and
tag object; tag conflicts; compare-and-delete compensation), checking out and pulling a tagged revision, the
repair of a working copy left broken by a killed process, the per-environment DVC remote section, params_hash,
and errors that name the bad input.
"""

import hashlib
import json
import re
import shutil
from pathlib import Path

import git
import pytest

from alpr.data import repo as repo_mod
from alpr.data.repo import (
    ANNOTATIONS_DIR,
    Checkout,
    DatasetRepo,
    DatasetRepoError,
    TagConflict,
    params_hash,
    remote_config,
)
from alpr.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(workspace=tmp_path / "ws")


@pytest.fixture
def repo(settings) -> DatasetRepo:
    """A working copy on a freshly initialised origin."""
    dataset = DatasetRepo(settings)
    assert dataset.init_origin() is True
    return dataset


def _other(settings: Settings, name: str) -> DatasetRepo:
    """A second working copy (own cache folder, as on another machine) of the same origin and DVC remote."""
    return DatasetRepo(Settings(workspace=settings.workspace, cache_dir=settings.workspace / f"cache-{name}"))


def _origin(settings: Settings) -> git.Repo:
    return git.Repo(settings.dataset_repo)


def _origin_tags(settings: Settings) -> dict[str, str]:
    """Tag name → commit SHA on the origin."""
    return {t.name: t.commit.hexsha for t in _origin(settings).tags}


def _origin_main(settings: Settings) -> str:
    return _origin(settings).commit("refs/heads/main").hexsha


def _remote_files(settings: Settings) -> int:
    remote = Path(settings.dvc_remote)
    return sum(1 for p in remote.rglob("*") if p.is_file()) if remote.exists() else 0


def _stage(dataset: DatasetRepo, base: str, files: dict[str, str]) -> Checkout:
    """Check out ``base`` and put ``files`` (name → text) into ``annotations/``."""
    checkout = dataset.checkout(base)
    folder = checkout.path / ANNOTATIONS_DIR
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return checkout


def _commit(dataset: DatasetRepo, base: str, files: dict[str, str], tag: str) -> tuple[Checkout, str]:
    checkout = _stage(dataset, base, files)
    return checkout, dataset.commit_version(checkout, data_path=ANNOTATIONS_DIR, tag=tag, message=f"Version {tag}")


def _publish(dataset: DatasetRepo, base: str, files: dict[str, str], tag: str) -> str:
    _, sha = _commit(dataset, base, files, tag)
    dataset.push_version(tag, sha, branch="main")
    return sha


# --------------------------------------------------------------------------------------------- set-up


def test_init_origin_once(settings):
    dataset = DatasetRepo(settings)
    assert dataset.init_origin() is True
    origin = _origin(settings)
    assert origin.bare
    first = origin.commit("refs/heads/main")
    assert {b.path for b in first.tree.traverse()} >= {".dvc/config", "README.md"}
    dvc_config = first.tree[".dvc/config"].data_stream.read().decode()
    assert settings.dvc_remote in dvc_config and "storage" in dvc_config
    assert "credential" not in dvc_config and "endpointurl" not in dvc_config  # environment-free
    assert dataset.init_origin() is False
    assert _origin_main(settings) == first.hexsha and _origin_tags(settings) == {}
    assert not (dataset.path.parent / "dataset-init").exists()


def test_init_origin_is_refused_for_a_remote_url(tmp_path):
    remote = Settings(workspace=tmp_path / "ws", dataset_repo="https://git.example.com/alpr/dataset.git")
    with pytest.raises(DatasetRepoError, match=r"https://git\.example\.com/alpr/dataset\.git is not a local path"):
        DatasetRepo(remote).init_origin()


def test_init_origin_completes_an_interrupted_initialisation(settings):
    git.Repo.init(settings.dataset_repo, bare=True, initial_branch="main")  # killed before its first push
    assert DatasetRepo(settings).init_origin() is True
    assert _origin_main(settings)


# --------------------------------------------------------------------------------------------- publishing


def test_commit_is_local_until_one_push_publishes_tag_and_branch(repo, settings):
    base = _origin_main(settings)
    checkout, sha = _commit(repo, "main", {"a.json": "{}", "a.jpg": "pixels"}, "v1")
    assert checkout.rev == base
    # Nothing visible on the origin yet; the DVC objects are already in the remote (content-addressed).
    assert _origin_tags(settings) == {} and _origin_main(settings) == base
    assert _remote_files(settings) >= 2
    assert "v1" in {t.name for t in git.Repo(repo.path).tags}

    repo.push_version("v1", sha, branch="main")
    assert _origin_tags(settings) == {"v1": sha} and _origin_main(settings) == sha
    assert repo.resolve_parents(sha) == [base]
    commit = _origin(settings).commit(sha)
    assert {b.path for b in commit.tree.traverse()} >= {"annotations.dvc", ".gitignore"}
    assert commit.author.name == repo_mod.BOT.name and commit.message == "Version v1"
    assert _origin(settings).tags["v1"].tag is not None  # an annotated tag


def test_push_without_a_branch_publishes_the_tag_only(repo, settings):
    base = _origin_main(settings)
    _, sha = _commit(repo, "main", {"a.json": "{}"}, "training-1")
    repo.push_version("training-1", sha, branch=None)
    assert _origin_tags(settings) == {"training-1": sha} and _origin_main(settings) == base
    assert repo.tag_exists("training-1") and repo.list_tags() == ["training-1"]
    assert repo.resolve("training-1") == sha and repo.resolve("main") == base and repo.resolve(sha) == sha


def test_same_inputs_give_the_same_commit_and_tag_object_and_a_repeated_push_is_a_no_op(repo, settings):
    other = _other(settings, "b")
    files = {"a.json": '{"x": 1}', "a.jpg": "pixels"}
    _, sha_a = _commit(repo, "main", files, "v1")
    _, sha_b = _commit(other, "main", files, "v1")  # another machine, another clone, later
    assert sha_a == sha_b
    tag_object = git.Repo(repo.path).git.rev_parse("refs/tags/v1")
    assert git.Repo(other.path).git.rev_parse("refs/tags/v1") == tag_object
    repo.push_version("v1", sha_a, branch="main")
    other.push_version("v1", sha_b, branch="main")  # a re-run after a kill: nothing to update, no error
    assert _origin(settings).git.rev_parse("refs/tags/v1") == tag_object
    assert _origin_main(settings) == sha_a


def test_tag_conflict_names_the_tag_and_both_commits(repo, settings):
    sha = _publish(repo, "main", {"a.json": "1"}, "v1")
    base = repo.resolve_parents(sha)[0]
    with pytest.raises(
        TagConflict,
        match=rf"tag 'v1' already exists in {re.escape(settings.dataset_repo)} at commit "
        rf"{sha[:12]}, not at the commit this step makes \([0-9a-f]{{12}}\)",
    ):
        _commit(repo, base, {"a.json": "2"}, "v1")
    assert _origin_tags(settings) == {"v1": sha}
    assert issubclass(TagConflict, DatasetRepoError)


def test_push_is_all_or_nothing_when_the_branch_moved_meanwhile(repo, settings):
    other = _other(settings, "b")
    base = _origin_main(settings)
    _, sha_b = _commit(other, "main", {"b.json": "b"}, "v2")  # made on the old main
    sha_a = _publish(repo, "main", {"a.json": "a"}, "v1")  # main moves on first
    refused = f"git push refs/tags/v2:refs/tags/v2 {sha_b}:refs/heads/main to {re.escape(settings.dataset_repo)} failed"
    with pytest.raises(DatasetRepoError, match=refused):
        other.push_version("v2", sha_b, branch="main")
    assert _origin_tags(settings) == {"v1": sha_a} and _origin_main(settings) == sha_a  # no v2 tag alone
    # The retry on top of the new main goes through.
    sha_b2 = _publish(other, "main", {"b.json": "b"}, "v2-retry")
    assert other.resolve_parents(sha_b2) == [sha_a] and repo.resolve_parents(sha_a) == [base]


def test_delete_tag_removes_it_and_moves_the_branch_back(repo, settings):
    base = _origin_main(settings)
    sha = _publish(repo, "main", {"a.json": "1"}, "v1")
    repo.delete_tag("v1", branch="main", restore=base, expected=sha)
    assert _origin_tags(settings) == {} and _origin_main(settings) == base
    assert "v1" not in {t.name for t in git.Repo(repo.path).tags}
    repo.delete_tag("v1")  # gone already: nothing to do, no error
    repo.delete_tag("never-existed")


def test_delete_tag_of_a_push_that_never_happened_is_local_only(repo, settings):
    _commit(repo, "main", {"a.json": "1"}, "v1")
    repo.delete_tag("v1")
    assert "v1" not in {t.name for t in git.Repo(repo.path).tags} and _origin_tags(settings) == {}


def test_delete_tag_never_removes_a_tag_someone_else_pushed(repo, settings):
    _commit(repo, "main", {"a.json": "mine"}, "v1")  # ours, local only
    other = _other(settings, "b")
    theirs = _publish(other, "main", {"a.json": "theirs"}, "v1")
    repo.delete_tag("v1")  # the compensation of our (failed) push: the origin's v1 is not the tag object we made
    assert _origin_tags(settings) == {"v1": theirs} and _origin_main(settings) == theirs
    assert "v1" not in {t.name for t in git.Repo(repo.path).tags}


# --------------------------------------------------------------------------------------------- checkout and pull


def test_checkout_of_a_tagged_revision_gives_exactly_its_tree_and_data(repo, settings):
    sha1 = _publish(repo, "main", {"a.json": "one"}, "v1")
    sha2 = _publish(repo, "main", {"b.json": "two"}, "v2")
    assert repo.resolve_parents(sha2) == [sha1]

    checkout = repo.checkout("v1")
    assert checkout == Checkout(repo.path, sha1)
    (checkout.path / "stray.txt").write_text("left by a killed step")
    (checkout.path / "README.md").write_text("edited")
    checkout = repo.checkout("v1")
    assert not (checkout.path / "stray.txt").exists() and "ALPR dataset" in (checkout.path / "README.md").read_text()
    assert not (checkout.path / ANNOTATIONS_DIR).exists()  # DVC data only after a pull
    repo.pull(checkout, ANNOTATIONS_DIR)
    assert sorted(p.name for p in (checkout.path / ANNOTATIONS_DIR).iterdir()) == ["a.json"]
    assert (checkout.path / ANNOTATIONS_DIR / "a.json").read_text() == "one"

    assert repo.checkout(sha2).rev == sha2 and repo.checkout("main").rev == sha2
    checkout = repo.checkout("v2")
    repo.pull(checkout, ANNOTATIONS_DIR)
    assert sorted(p.name for p in (checkout.path / ANNOTATIONS_DIR).iterdir()) == ["b.json"]
    local = (checkout.path / ".dvc" / "config.local").read_text()
    assert settings.dvc_remote in local and "site_cache_dir" in local


def test_a_fresh_working_copy_pulls_the_data_from_the_remote(repo, settings):
    _publish(repo, "main", {"a.json": "one", "a.jpg": "pixels"}, "v1")
    fresh = _other(settings, "fresh")
    checkout = fresh.checkout("v1")
    assert checkout.path != repo.path and not (checkout.path / ".dvc" / "cache" / "files").exists()
    fresh.pull(checkout, ANNOTATIONS_DIR)
    assert (checkout.path / ANNOTATIONS_DIR / "a.jpg").read_text() == "pixels"


def test_checkout_of_missing_tag_names_it(settings, repo):
    with pytest.raises(DatasetRepoError, match="no tag or branch 'nope'"):
        DatasetRepo(settings).checkout("nope")
    assert repo.resolve("nope") is None and not repo.tag_exists("nope")


def test_a_working_copy_left_broken_by_a_killed_process_is_repaired(repo, settings):
    sha = _publish(repo, "main", {"a.json": "one"}, "v1")
    git_dir = repo.path / ".git"
    for lock in (git_dir / "index.lock", git_dir / "HEAD.lock", git_dir / "refs" / "heads" / "main.lock"):
        lock.write_text("")
    rwlock = repo.path / ".dvc" / "tmp" / "rwlock"
    rwlock.parent.mkdir(parents=True, exist_ok=True)
    rwlock.write_text('{"read": {}, "wri')  # torn mid-write
    checkout = repo.checkout("v1")
    assert checkout.rev == sha and not list(git_dir.glob("*.lock")) and not rwlock.exists()
    repo.pull(checkout, ANNOTATIONS_DIR)

    (git_dir / "HEAD").unlink()  # unusable: cloned again
    leftover = repo.path.parent / ".dataset-clone-99999"  # a clone a killed process left half-made
    leftover.mkdir()
    assert repo.checkout("v1").rev == sha
    assert not leftover.exists() and (git_dir / "HEAD").is_file()


# --------------------------------------------------------------------------------------------- bad inputs


def test_an_origin_that_does_not_exist_is_named(tmp_path):
    missing = Settings(workspace=tmp_path / "ws", dataset_repo=str(tmp_path / "nowhere.git"))
    with pytest.raises(
        DatasetRepoError, match="cannot clone dataset repository " + re.escape(str(tmp_path / "nowhere.git"))
    ):
        DatasetRepo(missing).checkout("main")
    assert not list((tmp_path / "ws" / "cache").glob(".dataset-clone-*"))


def test_a_missing_data_path_is_named(repo, settings):
    checkout = repo.checkout("main")
    with pytest.raises(
        DatasetRepoError, match=f"dvc add/push of training/nope to {re.escape(settings.dvc_remote)} failed"
    ):
        repo.commit_version(checkout, data_path="training/nope", tag="t", message="m")
    assert _origin_tags(settings) == {} and "t" not in {t.name for t in git.Repo(repo.path).tags}


def test_data_missing_from_the_remote_is_named(repo, settings):
    _publish(repo, "main", {"a.json": "one"}, "v1")
    shutil.rmtree(settings.dvc_remote)
    fresh = _other(settings, "fresh")
    checkout = fresh.checkout("v1")
    with pytest.raises(DatasetRepoError, match=f"dvc pull annotations from {re.escape(settings.dvc_remote)} failed"):
        fresh.pull(checkout, ANNOTATIONS_DIR)


def test_an_unknown_dvc_config_level_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown DVC config level 'global'"):
        repo_mod._configure_dvc_remote(tmp_path, "/r", level="global")


# --------------------------------------------------------------------------------------------- DVC remote section


@pytest.fixture
def no_gcs_env(monkeypatch):
    monkeypatch.delenv(repo_mod.EMULATOR_ENV, raising=False)
    monkeypatch.delenv(repo_mod.CREDENTIALS_ENV, raising=False)
    return monkeypatch


def test_remote_config_of_a_folder_is_its_url_only(no_gcs_env):
    no_gcs_env.setenv(repo_mod.EMULATOR_ENV, "localhost:9023")
    no_gcs_env.setenv(repo_mod.CREDENTIALS_ENV, "/keys/sa.json")
    assert remote_config("/data/dvc-remote") == {"url": "/data/dvc-remote"}


def test_remote_config_of_gcs_follows_the_environment(no_gcs_env, tmp_path):
    assert remote_config("gs://bucket/dvc") == {"url": "gs://bucket/dvc"}  # workload identity
    no_gcs_env.setenv(repo_mod.EMULATOR_ENV, "localhost:9023")
    assert remote_config("gs://bucket/dvc") == {
        "url": "gs://bucket/dvc",
        "endpointurl": "http://localhost:9023",
        "allow_anonymous_login": True,
    }
    no_gcs_env.setenv(repo_mod.EMULATOR_ENV, "https://emulator.test")
    assert remote_config("gs://b/d")["endpointurl"] == "https://emulator.test"
    no_gcs_env.setenv(repo_mod.EMULATOR_ENV, "default")
    assert "endpointurl" not in remote_config("gs://b/d")
    key = tmp_path / "sa.json"
    key.write_text('{"private_key": "SECRET"}')
    no_gcs_env.setenv(repo_mod.CREDENTIALS_ENV, str(key))
    section = remote_config("gs://b/d")
    assert section["credentialpath"] == str(key) and "SECRET" not in json.dumps(section)


# --------------------------------------------------------------------------------------------- params_hash


def test_params_hash_is_stable_and_canonical():
    payload = {"annotation_version": "v1", "fractions": [0.8, 0.1, 0.1], "seed": 0, "converter": 1}
    reordered = dict(reversed(list(payload.items())))
    digest = params_hash(payload)
    assert digest == params_hash(reordered) == params_hash(json.loads(json.dumps(payload)))
    assert len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
    canonical = '{"annotation_version":"v1","converter":1,"fractions":[0.8,0.1,0.1],"seed":0}'
    assert digest == hashlib.sha256(canonical.encode()).hexdigest()
    # A value that changes the inputs changes the hash; list order is part of the inputs.
    assert params_hash({**payload, "seed": 1}) != digest
    assert params_hash({**payload, "fractions": [0.1, 0.1, 0.8]}) != digest
    assert params_hash({"nested": {"b": 1, "a": 2}}) == params_hash({"nested": {"a": 2, "b": 1}})
