"""Record under failure: killed mid-way, bad annotations that bypassed registration, hostile names.

(a) A Record step runs in a subprocess (its own session, with no git identity configured, like a pod) and is
    SIGKILLed -- with every process it started -- at observable points of its progress. After each kill the
    version is either fully recorded (metadata row AND tag on the origin) or not at all (neither); the one
    documented exception is the instant between the origin accepting the tag and the database commit, which
    may leave a tag without a row (never a row without a tag) -- see :mod:`alpr.data.versions`. The leftovers (a
    half-made clone, stale git locks, half-written folders, a local tag) must not stop the next run, which
    completes with exactly one training version and one tag.
(b) An annotation version pushed by hand (no validation) with an unknown label, a broken JSON file and a
    missing image: Record refuses the whole version, naming every file and problem, and records nothing.
(c) Names and descriptions shaped like SQL injections round-trip and leave the tables intact.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import git
import pytest
import sqlalchemy as sa

from alpr.data.repo import TagConflict, params_hash
from alpr.data.synth import synthesize
from alpr.data.versions import (
    CONVERTER_VERSION,
    InvalidAnnotations,
    record_training_version,
    register_annotation_version,
    training_version_name,
)
from alpr.metadata import MetadataStore
from alpr.settings import Settings

TABLES = {
    "annotation_versions",
    "images",
    "training_versions",
    "splits",
    "pipeline_runs",
    "models",
    "evaluations",
    "evaluation_metrics",
    "test_results",
}


@pytest.fixture(scope="module")
def labelme(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("labelme")
    synthesize(folder, 6, seed=31, progress=False)
    return folder


def _origin_tags(settings: Settings) -> set[str]:
    return {t.name for t in git.Repo(settings.dataset_repo).tags}


def _count(store: MetadataStore, table: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()  # table: a literal of this file


# ------------------------------------------------------------------------------------------ (a) killed mid-way
# A Record run that stops at one kill point and waits there to be killed: argv = version, pause point, marker file.
# The pause point is "import" (half-way through the imports) or "before:" / "after:" the first call of
# "module:attribute" (a function or method, wrapped in this process only): there the run writes the marker file,
# then sleeps until the test kills it. The test waits for the marker, so every kill lands exactly at its point:
# no polling for short-lived files, nothing left to chance.
RECORD_SCRIPT = """
import importlib
import os
import sys
import time

version, point, marker = sys.argv[1:4]


def pause():
    with open(marker + ".tmp", "w") as f:
        f.write(point)
    os.replace(marker + ".tmp", marker)  # the marker appears whole
    while True:
        time.sleep(60)


def pause_at(point):
    when, module, attribute = point.split(":")
    owner = importlib.import_module(module)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)

    def paused(*args, **kwargs):
        if when == "after":
            original(*args, **kwargs)
        pause()  # never returns

    setattr(owner, name, paused)


import alpr.settings

if point == "import":
    pause()
pause_at(point)
from alpr.data.versions import record_training_version

tv = record_training_version(alpr.settings.load_settings(), version, seed=0, progress=False)
print("RECORDED", tv.name, tv.created, flush=True)
"""


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_ctime_ns


class _Appears:
    """True once ``path`` exists as a different file than at construction (a new file, or re-created)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.before = _identity(path)

    def __call__(self) -> bool:
        now = _identity(self.path)
        return now is not None and now != self.before


def _wait_for_pause(proc: subprocess.Popen, marker: Path, timeout_s: float = 600) -> bool:
    """Wait until the run writes ``marker`` (it then waits to be killed): True; False when it ended before."""
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        if marker.exists():
            return True
        time.sleep(0.02)
    return marker.exists()


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process and everything it started (its session), as a pod kill does; wait until all are gone."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the git children too
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)


def test_killed_record_is_all_or_nothing_and_rerun_completes(tmp_path, labelme, caplog):
    settings = Settings(workspace=tmp_path / "ws")  # SQLite, bare origin, local DVC remote
    register_annotation_version(settings, labelme, "v1", progress=False)
    av_rev = git.Repo(settings.dataset_repo).commit("v1").hexsha
    digest = params_hash(
        {"annotation_version": "v1", "fractions": [0.8, 0.1, 0.1], "seed": 0, "converter": CONVERTER_VERSION}
    )
    name = training_version_name("v1", digest)
    wc = settings.cache_dir / "dataset"
    origin = Path(settings.dataset_repo)
    home = tmp_path / "home"  # no ~/.gitconfig: git has no identity, like a fresh container
    home.mkdir()
    env = {
        **os.environ,
        **settings.environ(),
        "HOME": str(home),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    env.pop("ALPR_DB_PASSWORD", None)
    shutil.rmtree(settings.cache_dir)  # the first run clones, so a kill can land in the clone

    # Kill points, in the order a run passes them: (label, where the run pauses (see RECORD_SCRIPT), predicate
    # factory called right after the spawn -- the child needs far longer than that to import -- returning "the
    # state the label names is there", checked once the run has paused).
    journal = settings.workspace / "metadata.db-journal"  # exists while an SQLite write transaction has rows
    publish = "alpr.data.repo:DatasetRepo"
    points: list[tuple[str, str, Callable[[subprocess.Popen], Callable[[], bool]]]] = [
        ("while importing", "import", lambda proc: lambda: True),
        (
            "while cloning",
            "after:git:Repo.clone_from",  # the clone made, not yet renamed into place
            lambda proc: _Appears(settings.cache_dir / f".dataset-clone-{proc.pid}"),
        ),
        (
            "during the annotation pull",
            "after:dvc.repo:Repo.checkout",  # pulled, the pull not finished
            lambda proc: _Appears(wc / "annotations"),
        ),
        (
            "while converting to COCO",
            "after:alpr.data.coco:write_json_atomic",  # the first split written
            lambda proc: _Appears(wc / "training"),
        ),
        (
            "after dvc add, during dvc push",
            "before:dvc.repo:Repo.push",
            lambda proc: _Appears(wc / "training" / f"{name}.dvc"),
        ),
        (
            "after the local commit and tag",
            f"after:{publish}.commit_version",
            lambda proc: _Appears(wc / ".git" / "refs" / "tags" / name),
        ),
        (
            "with the rows inserted, before the tag push",
            f"before:{publish}.push_version",
            lambda proc: _Appears(journal),
        ),
        (
            "as the tag reaches the origin",
            f"after:{publish}.push_version",
            lambda proc: _Appears(origin / "refs" / "tags" / name),
        ),
    ]
    # From the rows' insert on, a kill can land after the origin accepted the tag and before the commit:
    # (tag, no row) is then the documented in-doubt state, which the next run completes.
    in_doubt_possible = {"with the rows inserted, before the tag push", "as the tag reaches the origin"}
    outcomes = []
    for label, pause_point, make in points:
        log_path = tmp_path / f"run-{len(outcomes)}.log"
        marker = tmp_path / f"run-{len(outcomes)}.paused"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", RECORD_SCRIPT, "v1", pause_point, str(marker)],
                env=env,
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            reached = make(proc)
            hit = _wait_for_pause(proc, marker)
            there = hit and reached()
            _kill_group(proc)
        assert hit, f"the run ended (rc {proc.returncode}) before {label}:\n{log_path.read_text()[-3000:]}"
        assert there, f"the run paused {label} ({pause_point}) without the state the label names"
        row = MetadataStore(settings.db_url).get_training_version(name) is not None
        tag = name in _origin_tags(settings)
        outcomes.append((label, row, tag))
        assert not (row and not tag), f"killed {label}: a row without its tag"
        if label not in in_doubt_possible:
            assert row == tag, f"killed {label}: row={row} tag={tag}"
    in_doubt_tag = git.Repo(settings.dataset_repo).git.rev_parse(f"refs/tags/{name}") if tag and not row else None

    # Plant what a git or DVC process killed at the wrong instant leaves (kills above rarely hit git itself).
    (wc / ".git" / "index.lock").write_text("")
    (wc / ".git" / "HEAD.lock").write_text("")
    (wc / ".dvc" / "tmp").mkdir(parents=True, exist_ok=True)
    (wc / ".dvc" / "tmp" / "rwlock").write_text('{"write": {"/x": {"pid"')  # torn mid-write

    # Whatever the kills left behind, a normal run completes: one version, one tag, pulled data.
    caplog.set_level(logging.WARNING, logger="alpr.data.repo")
    tv = record_training_version(settings, "v1", seed=0, out_dir=tmp_path / "coco", progress=False)
    assert tv.name == name
    warnings = "\n".join(r.getMessage() for r in caplog.records)
    assert "index.lock" in warnings and "HEAD.lock" in warnings and "rwlock" in warnings  # removed as stale ...
    assert "cloning it again" not in warnings  # ... so the working copy (and its DVC cache) was kept
    store = MetadataStore(settings.db_url)
    assert [v["name"] for v in store.list_training_versions()] == [name]
    assert _count(store, "splits") == 6
    assert {t for t in _origin_tags(settings) if t.startswith("training-")} == {name}
    assert git.Repo(settings.dataset_repo).commit(name).parents[0].hexsha == av_rev
    assert tv.git_rev == store.get_training_version(name)["git_rev"]
    assert len(json.loads((tmp_path / "coco" / "annotations" / "train.json").read_text())["images"]) >= 1
    if in_doubt_tag is not None:  # the re-run re-made the identical tag object: its push was a no-op
        assert git.Repo(settings.dataset_repo).git.rev_parse(f"refs/tags/{name}") == in_doubt_tag
    again = record_training_version(settings, "v1", seed=0, progress=False)
    assert not again.created and again.git_rev == tv.git_rev
    print("kill outcomes (point, row, tag):", outcomes)


def test_failure_right_after_the_tag_push_removes_the_tag(tmp_path, labelme, monkeypatch):
    """The push succeeded but the step fails before the commit (a lost connection, a signal): the rows roll
    back and the tag this step pushed is removed again; the next run records normally."""
    from alpr.data.repo import DatasetRepo

    settings = Settings(workspace=tmp_path / "ws")
    register_annotation_version(settings, labelme, "v1", progress=False)
    real_push = DatasetRepo.push_version

    def push_then_fail(self, tag, commit, *, branch):
        real_push(self, tag, commit, branch=branch)
        assert tag in _origin_tags(settings)  # really pushed
        raise ConnectionError("lost the database right after the push")

    monkeypatch.setattr(DatasetRepo, "push_version", push_then_fail)
    with pytest.raises(ConnectionError):
        record_training_version(settings, "v1", progress=False)
    assert _origin_tags(settings) == {"v1"}
    assert MetadataStore(settings.db_url).list_training_versions() == []
    monkeypatch.setattr(DatasetRepo, "push_version", real_push)
    tv = record_training_version(settings, "v1", progress=False)
    assert tv.created and _origin_tags(settings) == {"v1", tv.name}


def test_register_completes_a_tag_left_without_rows(tmp_path, labelme, tmp_path_factory):
    """A registration killed between its push and its commit leaves the tag (and main) without rows: the same
    registration completes it (same commit); another content under that name is refused and the tag is kept."""
    settings = Settings(workspace=tmp_path / "ws")
    rev = register_annotation_version(settings, labelme, "v1", progress=False)
    store = MetadataStore(settings.db_url)
    with store.engine.begin() as conn:  # the rows of a commit that never happened
        conn.execute(sa.text("DELETE FROM images"))
        conn.execute(sa.text("DELETE FROM annotation_versions"))

    other = tmp_path_factory.mktemp("other")
    synthesize(other, 3, seed=99, progress=False)
    with pytest.raises(TagConflict, match="not a registered annotation version"):
        register_annotation_version(settings, other, "v1", progress=False)
    origin = git.Repo(settings.dataset_repo)
    assert origin.commit("v1").hexsha == rev == origin.commit("main").hexsha

    assert register_annotation_version(settings, labelme, "v1", progress=False) == rev
    assert store.get_annotation_version("v1")["git_rev"] == rev
    assert origin.commit("main").hexsha == rev


# ------------------------------------------------------------------------------ (b) bad hand-pushed annotations
def test_hand_pushed_bad_annotations_refuse_the_whole_version(db_url, tmp_path, labelme):
    from dvc.repo import Repo as DvcRepo

    settings = Settings(workspace=tmp_path / "ws", db_url=db_url)
    register_annotation_version(settings, labelme, "v1", progress=False)

    # A team member edits the labels in a clone and pushes them by hand: no register, so no validation.
    hand = tmp_path / "hand"
    repo = git.Repo.clone_from(settings.dataset_repo, hand)
    folder = hand / "annotations"
    with DvcRepo(str(hand)) as dvc:
        dvc.pull(targets=[str(folder)])
    files = sorted(folder.glob("*.json"))
    docs = [json.loads(f.read_text()) for f in files]
    unknown, broken, orphan = files[0], files[1], files[2]
    docs[0]["shapes"][0]["label"] = "Q"
    unknown.write_text(json.dumps(docs[0]))
    broken.write_text(json.dumps(docs[1])[:-25])
    (folder / Path(docs[2]["imagePath"]).name).unlink()
    with DvcRepo(str(hand)) as dvc:
        dvc.add([str(folder)])
        dvc.push(targets=[str(folder)])
    person = git.Actor("A Labeller", "labeller@example.invalid")
    repo.git.add("annotations.dvc")
    commit = repo.index.commit("Fix some labels", author=person, committer=person)
    repo.create_tag("v2-hand")  # a lightweight tag, as people make them
    repo.remote("origin").push(["HEAD:refs/heads/main", "refs/tags/v2-hand:refs/tags/v2-hand"]).raise_if_error()
    store = MetadataStore(db_url)
    images = [
        {
            "file_name": Path(d["imagePath"]).name,
            "width": d["imageWidth"],
            "height": d["imageHeight"],
            "md5": "0" * 32,
            "plate_count": 1,
        }
        for d in docs
    ]
    with store.transaction() as tx:
        tx.add_annotation_version("v2-hand", commit.hexsha, {}, images, description="pushed by hand")

    with pytest.raises(InvalidAnnotations) as err:
        record_training_version(settings, "v2-hand", progress=False)
    message = str(err.value)
    assert "annotation version v2-hand: 3 invalid labelme file(s)" in message
    problems = {e.path.name: e.problem for e in err.value.report.errors}
    assert set(problems) == {unknown.name, broken.name, orphan.name}
    assert "unknown label 'Q'" in problems[unknown.name]
    assert "invalid JSON" in problems[broken.name]
    assert "image file not found" in problems[orphan.name]
    lines = message.splitlines()
    for name, problem in problems.items():  # listed file by file: the file's line, then its problem
        at = next(i for i, line in enumerate(lines) if line.strip().endswith(f"/{name}"))
        assert lines[at + 1].strip() == f"- {problem}"

    assert store.list_training_versions() == []
    assert _count(store, "splits") == 0
    assert not {t for t in _origin_tags(settings) if t.startswith("training-")}
    # The failure blocks nothing: the good version records.
    assert record_training_version(settings, "v1", progress=False).created


# --------------------------------------------------------------------------------------- (c) hostile names
def test_injection_shaped_name_and_description_round_trip(db_url, tmp_path, labelme):
    settings = Settings(workspace=tmp_path / "ws", db_url=db_url)
    name = "v1-x';DROP-TABLE-images;--"  # a valid git tag name, quotes and all
    assert subprocess.run(["git", "check-ref-format", f"refs/tags/{name}"]).returncode == 0
    description = "x'); DROP TABLE annotation_versions; -- \" OR 1=1 # \\ ☃ 番号"
    rev = register_annotation_version(settings, labelme, name, description=description, progress=False)
    tv = record_training_version(settings, name, progress=False)

    store = MetadataStore(db_url)
    av = store.get_annotation_version(name)
    assert (av["name"], av["description"], av["git_rev"]) == (name, description, rev)
    assert store.get_annotation_version("x' OR '1'='1") is None
    assert store.get_training_version(tv.name)["annotation_version"] == name
    assert set(sa.inspect(store.engine).get_table_names()) >= TABLES
    assert (
        _count(store, "annotation_versions"),
        _count(store, "images"),
        _count(store, "training_versions"),
        _count(store, "splits"),
    ) == (1, 6, 1, 6)
    assert {name, tv.name} == _origin_tags(settings)
    again = record_training_version(settings, name, progress=False)
    assert not again.created and again.name == tv.name


def test_register_failure_after_its_push_restores_main(tmp_path, labelme, monkeypatch):
    """An annotation version pushes its tag AND advances main in one push; if the step then fails, both are
    undone in one push: no tag, main back where it was, no rows."""
    from alpr.data.repo import DatasetRepo

    settings = Settings(workspace=tmp_path / "ws")
    register_annotation_version(settings, labelme, "v1", progress=False)
    origin = git.Repo(settings.dataset_repo)
    main_before = origin.commit("main").hexsha
    real_push = DatasetRepo.push_version

    def push_then_fail(self, tag, commit, *, branch):
        real_push(self, tag, commit, branch=branch)
        assert git.Repo(settings.dataset_repo).commit("main").hexsha == commit  # really advanced
        raise ConnectionError("lost the database right after the push")

    monkeypatch.setattr(DatasetRepo, "push_version", push_then_fail)
    second = tmp_path / "second"
    shutil.copytree(labelme, second)
    victim = sorted(second.glob("*.json"))[0]
    victim.unlink()
    victim.with_suffix(".jpg").unlink()
    with pytest.raises(ConnectionError):
        register_annotation_version(settings, second, "v2", progress=False)
    assert _origin_tags(settings) == {"v1"}
    assert git.Repo(settings.dataset_repo).commit("main").hexsha == main_before
    assert [v["name"] for v in MetadataStore(settings.db_url).list_annotation_versions()] == ["v1"]
    monkeypatch.setattr(DatasetRepo, "push_version", real_push)
    register_annotation_version(settings, second, "v2", progress=False)
    assert _origin_tags(settings) == {"v1", "v2"}
