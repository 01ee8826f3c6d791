"""The ``import``, ``register``, ``list`` and ``show`` commands of ``python -m dataset_tools``, end to end.

No mocks: real labelme files and images, real git (a bare origin with a ``pre-receive`` hook to refuse a push),
real DVC, and the metadata store on both backends (the ``db_url`` fixture: an SQLite file and a fresh database on
the MariaDB test server). Every failure of ``register`` is checked to leave no rows, no tag and no new commit on
the origin, and to succeed when run again after the cause is removed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dvc.repo  # noqa: F401 - at collection: DVC binds its log handlers to sys.stdout when first imported, and
import git  # a test's capsys stream (closed after the test) would break DVC's logging in later tests
import pytest
import sqlalchemy as sa
from PIL import Image

from alpr import spec
from alpr.data.labelme import validate_folder
from alpr.data.synth import synthesize
from alpr.data.versions import record_training_version
from alpr.metadata import MetadataStore
from alpr.settings import Settings
from dataset_tools.__main__ import main

REPO_ROOT = Path(__file__).resolve().parents[2]
INJECTION = "x'); DROP TABLE images; --"
N_IMAGES = 6
#: A metadata store URL nobody listens on (port 1 is closed on loopback).
DEAD_DB = "mysql+pymysql://root@127.0.0.1:1/x"


# ---------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def synth_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six synthetic labelme files with their images, made once per module (copy before changing)."""
    folder = tmp_path_factory.mktemp("synth")
    synthesize(folder, N_IMAGES, seed=5, progress=False)
    return folder


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ALPR_* setting of the developer leaks in; relative defaults land in tmp_path."""
    for var in (
        "ALPR_WORKSPACE",
        "ALPR_DB_URL",
        "ALPR_DATASET_REPO",
        "ALPR_DVC_REMOTE",
        "ALPR_CACHE_DIR",
        "ALPR_STORAGE_URI",
        "ALPR_DB_PASSWORD",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def good(synth_src: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic folder."""
    return Path(shutil.copytree(synth_src, tmp_path / "good"))


# ---------------------------------------------------------------------------------------------------- helpers


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """Run ``python -m dataset_tools`` in-process; return (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def problems_by_file(report: str) -> dict[str, list[str]]:
    """Parse the ``problems:`` section of a folder report into ``{file path: [problem, ...]}``."""
    found: dict[str, list[str]] = {}
    current = None
    in_problems = False
    for line in report.splitlines():
        if line == "problems:":
            in_problems = True
        elif in_problems and line.startswith("    - ") and current is not None:
            found[current].append(line[6:])
        elif in_problems and line.startswith("  ") and not line.startswith("   "):
            current = line.strip()
            found[current] = []
        elif in_problems and not line.startswith(" "):
            in_problems = False
    return found


def variant(src: Path, folder: Path, stem: str, change: Callable[[dict], object] | None = None) -> Path:
    """Copy labelme file ``src`` and its image into ``folder`` as ``stem``.json/.jpg, applying ``change``."""
    doc = json.loads(src.read_text())
    shutil.copy2(src.with_suffix(".jpg"), folder / f"{stem}.jpg")
    doc["imagePath"] = f"{stem}.jpg"
    if change is not None:
        change(doc)
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(doc))
    return path


def backend_args(tmp_path: Path, db_url: str) -> list[str]:
    return ["--workspace", str(tmp_path / "ws"), "--db-url", db_url, "--no-progress"]


def settings_of(tmp_path: Path, db_url: str) -> Settings:
    return Settings(workspace=tmp_path / "ws", db_url=db_url)


def origin_state(settings: Settings) -> tuple[dict[str, str], str | None]:
    """The origin's tags (name -> commit) and the head of its ``main`` (None when it does not exist yet)."""
    if not Path(settings.dataset_repo).exists():
        return {}, None
    origin = git.Repo(settings.dataset_repo)
    tags = {t.name: t.commit.hexsha for t in origin.tags}
    head = origin.heads.main.commit.hexsha if "main" in origin.heads else None
    return tags, head


def stored_versions(db_url: str) -> dict[str, dict]:
    """The annotation versions in the store, by name, each with its images (``"images"``)."""
    store = MetadataStore(db_url)
    try:
        store.create_schema()
        out = {}
        for row in store.list_annotation_versions():
            out[row["name"]] = {**row, "images": store.annotation_images(row["name"])}
        return out
    finally:
        store.dispose()


def register(capsys, tmp_path: Path, db_url: str, folder: Path, name: str, *extra: str) -> tuple[int, str, str]:
    return run_cli(capsys, "register", folder, "--name", name, *backend_args(tmp_path, db_url), *extra)


def write_image(path: Path, w: int, h: int) -> None:
    Image.new("RGB", (w, h), (40, 60, 80)).save(path)


def rect(label: str, x1: float, y1: float, x2: float, y2: float) -> dict:
    return {"label": label, "points": [[x1, y1], [x2, y2]], "shape_type": "rectangle", "group_id": None, "flags": {}}


def original_project_file(folder: Path) -> Path:
    """A labelme file in the original project's label names: an ``l_board`` plate ``12a3456``, an ``r_board``
    plate ``34c`` / ``5678``, and three text-region shapes (``r_s_n``, ``l_s_n``, ``r_m_n``)."""
    write_image(folder / "legacy.png", 320, 200)
    shapes = [rect("l_board", 10, 10, 310, 60)]
    shapes += [rect(c, 20 + 40 * i, 20, 50 + 40 * i, 50) for i, c in enumerate("12a3456")]
    shapes.append(rect("l_s_n", 15, 15, 300, 55))
    shapes.append(rect("r_board", 40, 80, 200, 190))
    shapes += [rect(c, 60 + 40 * i, 90, 90 + 40 * i, 130) for i, c in enumerate("34c")]
    shapes += [rect(c, 50 + 36 * i, 140, 80 + 36 * i, 180) for i, c in enumerate("5678")]
    shapes.append(rect("r_s_n", 55, 85, 185, 135))
    shapes.append(rect("r_m_n", 45, 135, 195, 185))
    doc = {
        "version": "4.5.6",
        "flags": {},
        "shapes": shapes,
        "imagePath": "legacy.png",
        "imageData": None,
        "imageHeight": 200,
        "imageWidth": 320,
    }
    path = folder / "legacy.json"
    path.write_text(json.dumps(doc))
    return path


# ---------------------------------------------------------------------------------------------------- import


def test_import_good_folder_writes_normalised_copy_atomically(capsys, good: Path, tmp_path: Path) -> None:
    out = tmp_path / "export" / "out"
    code, stdout, stderr = run_cli(capsys, "import", good, "--out", out, "--no-progress")
    assert code == 0, stderr
    assert f"{N_IMAGES} good, 0 with problems" in stdout and "-> OK" in stdout
    expected = validate_folder(good, progress=False).class_counts
    for label in spec.CLASSES:  # per-class counts, one line each
        assert f"  {label:<14}  {expected.get(label, 0)}" in stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in good.iterdir())
    written = validate_folder(out, progress=False)
    assert written.ok and written.class_counts == expected
    for path in out.glob("*.json"):
        doc = json.loads(path.read_text())
        assert doc["imageData"] is None and doc["imagePath"] == path.with_suffix(".jpg").name
    assert [p.name for p in out.parent.iterdir()] == ["out"]  # no temporary folder left beside OUT


def test_import_without_out_only_reports(capsys, good: Path) -> None:
    before = sorted(p.name for p in good.parent.iterdir())
    code, stdout, _ = run_cli(capsys, "import", good, "--no-progress")
    assert code == 0 and "-> OK" in stdout
    assert sorted(p.name for p in good.parent.iterdir()) == before


def test_import_original_label_names(capsys, tmp_path: Path) -> None:
    src = tmp_path / "legacy"
    src.mkdir()
    original_project_file(src)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(capsys, "import", src, "--out", out, "--no-progress")
    assert code == 0, stdout + stderr
    assert "dropped legacy text-region shapes:" in stdout
    for label in ("l_s_n", "r_m_n", "r_s_n"):
        assert f"  {label:<14}  1" in stdout
    for label, n in (("plate_one_line", 1), ("plate_two_line", 1), ("A", 1), ("C", 1), ("1", 1), ("5", 2)):
        assert f"  {label:<14}  {n}" in stdout
    doc = json.loads((out / "legacy.json").read_text())
    labels = [s["label"] for s in doc["shapes"]]
    assert labels == ["plate_one_line", *"12A3456", "plate_two_line", *"34C", *"5678"]
    assert (out / "legacy.png").read_bytes() == (src / "legacy.png").read_bytes()
    assert validate_folder(out, progress=False).dropped == {}  # nothing legacy left in the output


def _set(path: tuple, value: object) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def test_import_broken_folder_names_every_file_and_writes_nothing(capsys, good: Path, tmp_path: Path) -> None:
    src = sorted(good.glob("*.json"))[0]
    multi = [_set(("shapes", 1, "label"), "Z"), _set(("shapes", 2, "points", 0), [99999, 5])]
    broken = {
        "no_shapes": (_set(("shapes",), []), ["no shapes"]),
        "unknown_label": (_set(("shapes", 1, "label"), "Q"), ["shapes[1]: unknown label 'Q'"]),
        "degenerate": (_set(("shapes", 1, "points"), [[10, 10], [20, 20], [30, 30]]), ["degenerate polygon"]),
        "outside": (_set(("shapes", 2, "points", 0), [5000, 10]), ["points[0] (5000, 10) is outside"]),
        "no_image": (_set(("imagePath",), "nowhere.jpg"), ["image file not found: imagePath 'nowhere.jpg'"]),
        "two_problems": (lambda d: [c(d) for c in multi], ["unknown label 'Z'", "(99999, 5) is outside"]),
        "huge": (_set(("imageData",), "A" * 300_000), ["over the limit of 200000 bytes"]),
        # The plate contract: shapes[0] is a plate, shapes[1..7] its characters in reading order (alpr.data.synth).
        "six_characters": (lambda d: d["shapes"].pop(7), ["holds 6 characters"]),
        "eight_characters": (lambda d: d["shapes"].insert(1, d["shapes"][1]), ["holds 8 characters"]),
        "not_canonical": (
            _set(("shapes", 3, "label"), "7"),
            ["is not a canonical plate text: position 3 is '7', a letter A-E expected"],
        ),
        "too_many_shapes": (
            lambda d: d["shapes"].extend([rect("r_s_n", 1, 1, 2, 2)] * 1000),
            ["shapes, over the limit of 1000 per file"],
        ),
    }
    for stem, (change, _) in broken.items():
        variant(src, good, stem, change)
    (good / "invalid.json").write_text('{"shapes": [,]}')
    broken["invalid"] = (None, ["invalid JSON at line 1, column 13"])
    out = tmp_path / "out"

    code, stdout, stderr = run_cli(capsys, "import", good, "--out", out, "--max-bytes", 200_000, "--no-progress")

    assert code == 1
    assert f"{N_IMAGES} good, {len(broken)} with problems" in stdout and "REFUSED" in stdout
    found = {Path(p).name: probs for p, probs in problems_by_file(stdout).items()}
    assert sorted(found) == sorted(f"{stem}.json" for stem in broken)
    for stem, (_, expected) in broken.items():
        problems = found[f"{stem}.json"]
        assert len(problems) == len(expected), problems
        for text in expected:
            assert any(text in p for p in problems), (stem, text, problems)
    for stem in ("six_characters", "eight_characters", "not_canonical"):  # the plate is named
        assert found[f"{stem}.json"][0].startswith("shapes[0] ('plate_"), found[f"{stem}.json"]
    too_many = found["too_many_shapes.json"][0]
    assert " plate outline" in too_many and ": shapes[0] ('plate_" in too_many, too_many
    assert f"{len(broken)} file(s)" in stderr and "nothing written" in stderr
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_import_reports_injection_shaped_label_verbatim(capsys, good: Path) -> None:
    bad = variant(sorted(good.glob("*.json"))[0], good, "evil", _set(("shapes", 1, "label"), INJECTION))
    code, stdout, _ = run_cli(capsys, "import", good, "--no-progress")
    assert code == 1
    assert problems_by_file(stdout)[str(bad)][0].startswith(f"shapes[1]: unknown label {INJECTION!r}")
    assert INJECTION in stdout


def test_import_refuses_a_non_empty_out(capsys, good: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, stderr = run_cli(capsys, "import", good, "--out", out, "--no-progress")
    assert code == 1 and "not empty" in stderr and str(out) in stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli(capsys, "import", good, "--out", empty, "--no-progress")[0] == 0  # an empty OUT is fine
    assert len(list(empty.glob("*.json"))) == N_IMAGES


def test_import_finds_images_in_image_dir(capsys, good: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for path in good.glob("*.jpg"):
        path.rename(images / path.name)
    assert run_cli(capsys, "import", good, "--no-progress")[0] == 1  # the images are not beside the JSON files
    out = tmp_path / "out"
    code, _, stderr = run_cli(capsys, "import", good, "--image-dir", images, "--out", out, "--no-progress")
    assert code == 0, stderr
    assert len(list(out.glob("*.jpg"))) == N_IMAGES and validate_folder(out, progress=False).ok


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_import_missing_or_empty_folder(capsys, tmp_path: Path, make: str) -> None:
    folder = tmp_path / "labelme"
    if make == "empty":
        folder.mkdir()
    code, _, stderr = run_cli(capsys, "import", folder, "--no-progress")
    assert code == 1 and str(folder) in stderr


# ---------------------------------------------------------------------------------------------------- register


def test_register_then_list_and_show(capsys, good: Path, tmp_path: Path, db_url: str) -> None:
    code, stdout, stderr = register(capsys, tmp_path, db_url, good, "annotations-v1", "--description", INJECTION)
    assert code == 0, stderr
    settings = settings_of(tmp_path, db_url)
    tags, head = origin_state(settings)
    rev = tags["annotations-v1"]
    assert head == rev
    assert f"registered annotation version annotations-v1: git revision {rev}, {N_IMAGES} images" in stdout
    stored = stored_versions(db_url)["annotations-v1"]
    assert stored["git_rev"] == rev and len(stored["images"]) == N_IMAGES and stored["description"] == INJECTION
    tv = record_training_version(settings, "annotations-v1", fractions=(0.5, 0.25, 0.25), seed=2, progress=False)
    db = ["--db-url", db_url]
    counts = validate_folder(good, progress=False).class_counts
    plates = counts["plate_one_line"] + counts["plate_two_line"]

    code, stdout, _ = run_cli(capsys, "list", *db)
    assert code == 0
    row = next(line.split() for line in stdout.splitlines() if line.startswith("annotations-v1"))
    assert row[1:3] == [str(N_IMAGES), str(plates)] and row[-1] == rev[:10]
    assert tv.name not in stdout

    code, stdout, _ = run_cli(capsys, "list", "--training", "--json", *db)
    data = json.loads(stdout)
    assert [a["name"] for a in data["annotation_versions"]] == ["annotations-v1"]
    (t,) = data["training_versions"]
    assert (t["name"], t["annotation_version"], t["seed"], t["git_rev"]) == (tv.name, "annotations-v1", 2, tv.git_rev)
    assert sum(t["images"].values()) == N_IMAGES and t["fractions"] == [0.5, 0.25, 0.25]

    code, stdout, _ = run_cli(capsys, "list", "--training", *db)
    assert code == 0 and tv.name in stdout and "annotations-v1" in stdout

    code, stdout, _ = run_cli(capsys, "show", "annotations-v1", *db)
    assert code == 0
    assert INJECTION in stdout and rev in stdout and tv.name in stdout
    for label in spec.CLASSES:
        assert any(line.split() == [label, str(counts.get(label, 0))] for line in stdout.splitlines()), label

    data = json.loads(run_cli(capsys, "show", "annotations-v1", "--json", *db)[1])
    assert data["kind"] == "annotation_version" and data["description"] == INJECTION
    assert data["images"] == N_IMAGES and data["git_rev"] == rev
    assert data["class_counts"] == {c: counts.get(c, 0) for c in spec.CLASSES}
    assert [t["name"] for t in data["training_versions"]] == [tv.name]

    data = json.loads(run_cli(capsys, "show", tv.name, "--json", *db)[1])
    store = MetadataStore(db_url)
    splits = store.training_splits(tv.name)
    store.dispose()
    assert data["kind"] == "training_version" and data["annotation_version"] == "annotations-v1"
    assert data["seed"] == 2 and data["fractions"] == [0.5, 0.25, 0.25]
    assert data["images"] == {s: list(splits.values()).count(s) for s in ("train", "val", "test")}
    assert {c: sum(v.values()) for c, v in data["class_counts"].items()} == {c: counts.get(c, 0) for c in spec.CLASSES}

    code, stdout, _ = run_cli(capsys, "show", tv.name, *db)
    assert code == 0 and "annotations-v1" in stdout and tv.git_rev in stdout and "images train" in stdout

    code, _, stderr = run_cli(capsys, "show", "annotations-v9", *db)
    assert code == 1 and "'annotations-v9'" in stderr


def test_register_invalid_folder_lists_problems_and_keeps_the_db_intact(
    capsys, good: Path, tmp_path: Path, db_url: str
) -> None:
    assert register(capsys, tmp_path, db_url, good, "v1")[0] == 0
    settings = settings_of(tmp_path, db_url)
    before = origin_state(settings)
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    evil = variant(sorted(bad.glob("*.json"))[0], bad, "evil", _set(("shapes", 1, "label"), INJECTION))
    variant(sorted(bad.glob("*.json"))[0], bad, "flat", _set(("shapes",), []))

    code, stdout, stderr = register(capsys, tmp_path, db_url, bad, "v2")

    assert code == 1 and stdout == ""
    assert "'v2' was not registered: 2 labelme file(s)" in stderr
    found = problems_by_file(stderr)
    assert found[str(evil)][0].startswith(f"shapes[1]: unknown label {INJECTION!r}")
    assert found[str(bad / "flat.json")] == ["no shapes"]
    assert origin_state(settings) == before
    stored = stored_versions(db_url)
    assert list(stored) == ["v1"] and len(stored["v1"]["images"]) == N_IMAGES
    store = MetadataStore(db_url)
    assert {"annotation_versions", "images"} <= set(sa.inspect(store.engine).get_table_names())
    store.dispose()


@pytest.mark.parametrize("name", [INJECTION, "-rf", "a..b", "v1.lock", "v" * 129, ""])
def test_register_refuses_a_bad_version_name(capsys, good: Path, tmp_path: Path, name: str) -> None:
    code, _, stderr = run_cli(
        capsys, "register", good, f"--name={name}", "--workspace", tmp_path / "ws", "--no-progress"
    )
    assert code == 1 and "version name" in stderr and "Nothing was published" in stderr
    assert not (tmp_path / "ws").exists()


def test_push_refused_by_the_origin_leaves_nothing_then_rerun_works(
    capsys, good: Path, tmp_path: Path, db_url: str
) -> None:
    assert register(capsys, tmp_path, db_url, good, "v1")[0] == 0
    settings = settings_of(tmp_path, db_url)
    hook = Path(settings.dataset_repo) / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'push refused: the dataset repository is frozen for an audit' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = origin_state(settings)
    second = tmp_path / "second"
    shutil.copytree(good, second)
    for path in sorted(second.glob("*.json"))[:1]:  # v2 is v1 less one image
        path.unlink()
        path.with_suffix(".jpg").unlink()

    code, stdout, stderr = register(capsys, tmp_path, db_url, second, "v2")

    assert code == 1 and "registered" not in stdout
    assert "git or DVC failed while publishing 'v2'" in stderr and "git push" in stderr
    assert "frozen for an audit" in stderr  # the origin's own reason reaches the user
    assert "Nothing was published: no metadata rows written, no new tag and main unchanged on the origin." in stderr
    assert origin_state(settings) == before
    assert list(stored_versions(db_url)) == ["v1"]

    hook.unlink()
    code, stdout, stderr = register(capsys, tmp_path, db_url, second, "v2")
    assert code == 0, stderr
    tags, head = origin_state(settings)
    assert set(tags) == {"v1", "v2"} and head == tags["v2"] and tags["v1"] == before[0]["v1"]
    assert git.Repo(settings.dataset_repo).commit(tags["v2"]).parents[0].hexsha == before[1]
    stored = stored_versions(db_url)
    assert stored["v2"]["git_rev"] == tags["v2"] and len(stored["v2"]["images"]) == N_IMAGES - 1


def test_db_down_fails_fast_without_leaking_the_password_then_rerun_works(
    capsys, good: Path, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert register(capsys, tmp_path, db_url, good, "v1")[0] == 0
    settings = settings_of(tmp_path, db_url)
    before = origin_state(settings)

    monkeypatch.setenv("ALPR_DB_PASSWORD", "env-pw-Zq9")
    start = time.monotonic()
    code, stdout, stderr = run_cli(
        capsys,
        "register",
        good,
        "--name",
        "v2",
        "--workspace",
        tmp_path / "ws",
        "--db-url",
        DEAD_DB.replace("root@", "root:url-pw-Xk3@"),
        "--no-progress",
    )
    elapsed = time.monotonic() - start
    monkeypatch.delenv("ALPR_DB_PASSWORD")

    assert code == 1 and elapsed < 10
    assert "cannot connect to the metadata store" in stderr and "127.0.0.1:1" in stderr
    assert "Nothing was published" in stderr
    for secret in ("env-pw-Zq9", "url-pw-Xk3"):
        assert secret not in stdout + stderr
    assert origin_state(settings) == before

    code, _, stderr = register(capsys, tmp_path, db_url, good, "v2")
    assert code == 0, stderr
    assert set(origin_state(settings)[0]) == {"v1", "v2"} and set(stored_versions(db_url)) == {"v1", "v2"}


def test_registering_an_existing_name_changes_nothing(capsys, good: Path, tmp_path: Path, db_url: str) -> None:
    assert register(capsys, tmp_path, db_url, good, "v1", "--description", "first")[0] == 0
    settings = settings_of(tmp_path, db_url)
    before, rows = origin_state(settings), stored_versions(db_url)
    other = tmp_path / "other"
    shutil.copytree(good, other)
    next(other.glob("*.json")).unlink()

    code, _, stderr = register(capsys, tmp_path, db_url, other, "v1", "--description", "second")

    assert code == 1 and "'v1' is already registered" in stderr and "Nothing was published" in stderr
    assert origin_state(settings) == before and stored_versions(db_url) == rows
    code, _, stderr = register(capsys, tmp_path, db_url, other, "v2")  # the cause removed: a new name
    assert code == 0, stderr
    assert set(stored_versions(db_url)) == {"v1", "v2"} and origin_state(settings)[0]["v1"] == before[0]["v1"]


def test_a_foreign_tag_of_that_name_is_refused_and_left_alone(capsys, good: Path, tmp_path: Path, db_url: str) -> None:
    """The origin has a tag v1 with other content that this store does not know (it was registered with another
    store): refuse, and leave that tag exactly where it is."""
    first_store = f"sqlite:///{tmp_path / 'first.db'}"
    smaller = tmp_path / "smaller"
    shutil.copytree(good, smaller)
    next(smaller.glob("*.json")).unlink()
    assert register(capsys, tmp_path, first_store, smaller, "v1")[0] == 0
    assert register(capsys, tmp_path, first_store, good, "v2")[0] == 0
    settings = settings_of(tmp_path, db_url)
    before = origin_state(settings)

    code, stdout, stderr = register(capsys, tmp_path, db_url, good, "v1")

    assert code == 1 and "registered" not in stdout
    assert "'v1'" in stderr and "tag" in stderr and "Nothing was published" in stderr
    assert origin_state(settings) == before and stored_versions(db_url) == {}
    assert register(capsys, tmp_path, db_url, good, "v3")[0] == 0


# ---------------------------------------------------------------------------------------------------- settings


def test_settings_come_from_the_environment_and_flags_override_it(
    capsys, good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALPR_WORKSPACE", str(tmp_path / "env-ws"))
    code, _, stderr = run_cli(capsys, "register", good, "--name", "v1", "--no-progress")
    assert code == 0, stderr
    assert (tmp_path / "env-ws" / "metadata.db").is_file() and (tmp_path / "env-ws" / "dataset.git").is_dir()
    assert "v1" in run_cli(capsys, "list")[1]
    other = f"sqlite:///{tmp_path / 'other.db'}"
    code, stdout, _ = run_cli(capsys, "list", "--db-url", other)
    assert code == 0 and "no annotation versions" in stdout
    monkeypatch.setenv("ALPR_DB_URL", other)
    assert "no annotation versions" in run_cli(capsys, "list")[1]


def test_list_and_show_on_an_empty_or_unreachable_store(capsys, tmp_path: Path) -> None:
    fresh = f"sqlite:///{tmp_path / 'fresh' / 'metadata.db'}"
    code, stdout, _ = run_cli(capsys, "list", "--training", "--db-url", fresh)
    assert code == 0 and "no annotation versions" in stdout and "no training versions" in stdout
    assert json.loads(run_cli(capsys, "list", "--json", "--db-url", fresh)[1]) == {"annotation_versions": []}
    code, _, stderr = run_cli(capsys, "show", "nope", "--db-url", fresh)
    assert code == 1 and "'nope'" in stderr
    dead = DEAD_DB.replace("root@", "root:hunter2-Pw@")
    for argv in (["list"], ["show", "v1"]):
        code, stdout, stderr = run_cli(capsys, *argv, "--db-url", dead)
        assert code == 1 and "cannot connect" in stderr and "hunter2-Pw" not in stdout + stderr


# ---------------------------------------------------------------------------------------------------- entry point


def test_help_documents_every_option(capsys) -> None:
    expected = {
        "import": ["DIR", "--out", "--image-dir", "--max-bytes", "--no-progress"],
        "register": [
            "DIR",
            "--name",
            "--description",
            "--workspace",
            "--db-url",
            "--dataset-repo",
            "--dvc-remote",
            "--no-progress",
        ],
        "list": ["--training", "--json", "--workspace", "--db-url"],
        "show": ["NAME", "--json", "--workspace", "--db-url"],
    }
    for command, options in expected.items():
        code, stdout, _ = run_cli(capsys, command, "--help")
        assert code == 0
        for option in options:
            assert option in stdout, (command, option)


def test_module_entry_point_exit_codes(good: Path, tmp_path: Path) -> None:
    def cli(*argv: object) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dataset_tools", *map(str, argv)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    (good / "broken.json").write_text("[]")
    result = cli("import", good, "--no-progress")
    assert result.returncode == 1 and "broken.json" in result.stdout
    result = cli("list", "--json", "--db-url", f"sqlite:///{tmp_path / 'm.db'}")
    assert result.returncode == 0 and json.loads(result.stdout) == {"annotation_versions": []}
