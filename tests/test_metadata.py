"""Tests of alpr.metadata, every one against both an SQLite file and the real MariaDB/MySQL server (``db_url``)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

from alpr import metadata
from alpr.metadata import AlreadyExists, MetadataConnectionError, MetadataStore, NotFound

ROOT = Path(__file__).resolve().parents[1]
TABLES = {
    "annotation_versions", "images", "training_versions", "splits", "pipeline_runs", "models", "evaluations",
    "evaluation_metrics", "test_results",
}
EVIL = "x'); DROP TABLE models; --"
HANGUL = "서울 12가3456 번호판 🚗"


@pytest.fixture(scope="module")
def _module_store(module_db_url):
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ALPR_DB_PASSWORD", raising=False)
        s = MetadataStore(module_db_url)
    s.create_schema()
    yield s
    s.dispose()


@pytest.fixture
def store(_module_store):
    """The module's store (one database per backend, schema created once), emptied before the test."""
    with _module_store.engine.begin() as conn:
        for table in reversed(metadata.metadata_obj.sorted_tables):
            conn.execute(sa.delete(table))
    return _module_store


def _images(*names: str) -> list[dict]:
    return [
        {"file_name": n, "width": 640 + i, "height": 480, "md5": f"{i:032x}", "plate_count": i % 3}
        for i, n in enumerate(names)
    ]


def _counts(store: MetadataStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {t: conn.execute(sa.select(sa.func.count()).select_from(metadata.metadata_obj.tables[t])).scalar()
                for t in sorted(TABLES)}


def _populate(store: MetadataStore) -> dict:
    """annotations-v1 (3 images) -> training-a -> run-1 -> model (evaluated, selected)."""
    with store.transaction() as tx:
        av = tx.add_annotation_version("annotations-v1", "a" * 40, {"A": 3, "plate_one_line": 2},
                                       _images("a.jpg", "b.jpg", "c.jpg"), description="first")
        tv = tx.add_training_version(
            "training-a", "annotations-v1", params_hash="h" * 64, git_rev="b" * 40, seed=7,
            fractions=(0.6, 0.2, 0.2), counts={"train": 1, "val": 1, "test": 1, "classes": {"A": 3}},
            splits={"a.jpg": "train", "b.jpg": "val", "c.jpg": "test"},
        )
        run = tx.start_run("run-1", {"epochs": 2, "lr": 0.01}, "laptop")
        model = tx.add_model("file:///m/1", "training-a", "run-1", "file:///m/1/config.py", "c" * 64,
                             "epoch_2.pth", 2, {"lr": 0.01, "batch": 8})
        ev = tx.add_evaluation(model, "val", {"eir": 0.5, "bbox_mAP": 0.25}, run="run-1")
        tx.finish_run("run-1", "succeeded")
    return {"av": av, "tv": tv, "run": run, "model": model, "evaluation": ev}


def _assert_utc_recent(ts: datetime) -> None:
    assert ts.tzinfo is not None and ts.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - ts) < timedelta(minutes=5)


# --------------------------------------------------------------------------------------------------- schema


def test_create_schema_is_idempotent(db_url):
    store = MetadataStore(db_url)
    store.create_schema()
    _populate(store)
    store.create_schema()  # second time: no error, data kept
    assert TABLES <= set(sa.inspect(store.engine).get_table_names())
    assert store.get_annotation_version("annotations-v1")["image_count"] == 3
    assert store.dialect == ("sqlite" if db_url.startswith("sqlite") else "mysql")
    store.dispose()


def test_foreign_keys_enforced_and_sqlite_parent_folder_created(store, tmp_path):
    if store.dialect == "sqlite":
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        path = tmp_path / "deep" / "er" / "m.db"
        other = MetadataStore(f"sqlite:///{path}")
        other.create_schema()
        assert path.is_file()
        other.dispose()
    else:  # InnoDB: foreign keys and transactions
        with store.engine.connect() as conn:
            engines = {r[0] for r in conn.exec_driver_sql(
                "SELECT engine FROM information_schema.tables WHERE table_schema = DATABASE()")}
        assert engines == {"InnoDB"}
    # a mariadb:// URL (the mariadb dialect) gets the same InnoDB / utf8mb4 / binary-collation table options
    ddl = str(CreateTable(metadata.models).compile(sa.create_engine("mariadb+pymysql://u@h/db")))
    assert "ENGINE=InnoDB" in ddl and "utf8mb4_bin" in ddl
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(sa.insert(metadata.metadata_obj.tables["images"]), {
            "annotation_version_id": 999, "file_name": "x", "width": 1, "height": 1, "md5": "", "plate_count": 0})


def test_in_memory_sqlite_is_refused():
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory&uri=true"):
        with pytest.raises(ValueError, match="in-memory"):
            MetadataStore(url)
    with pytest.raises(ValueError, match="unsupported"):
        MetadataStore("postgresql://u@h/db")


# --------------------------------------------------------------------------------------------------- round trips


def test_annotation_version_round_trip(store):
    assert store.get_annotation_version("annotations-v1") is None
    assert store.list_annotation_versions() == []
    ids = _populate(store)
    with store.transaction() as tx:
        tx.add_annotation_version("annotations-v2", "d" * 40, {}, [], description="")
    av = store.get_annotation_version("annotations-v1")
    assert av["id"] == ids["av"]
    assert (av["name"], av["git_rev"], av["image_count"], av["description"]) == (
        "annotations-v1", "a" * 40, 3, "first")
    assert av["class_counts"] == {"A": 3, "plate_one_line": 2}
    _assert_utc_recent(av["created_at"])
    assert [v["name"] for v in store.list_annotation_versions()] == ["annotations-v1", "annotations-v2"]
    imgs = store.annotation_images("annotations-v1")
    assert [{k: v for k, v in i.items() if k != "id"} for i in imgs] == _images("a.jpg", "b.jpg", "c.jpg")
    assert store.annotation_images("annotations-v2") == []
    assert store.get_annotation_version("annotations-v2")["image_count"] == 0


def test_training_version_round_trip(store):
    ids = _populate(store)
    tv = store.get_training_version("training-a")
    assert tv["id"] == ids["tv"]
    assert tv["annotation_version"] == "annotations-v1"
    assert (tv["params_hash"], tv["git_rev"], tv["seed"]) == ("h" * 64, "b" * 40, 7)
    assert tv["fractions"] == (0.6, 0.2, 0.2)
    assert tv["counts"] == {"train": 1, "val": 1, "test": 1, "classes": {"A": 3}}
    _assert_utc_recent(tv["created_at"])
    assert store.find_training_version("annotations-v1", "h" * 64)["name"] == "training-a"
    assert store.find_training_version("annotations-v1", "other") is None
    assert store.find_training_version("nope", "h" * 64) is None
    assert store.training_splits("training-a") == {"a.jpg": "train", "b.jpg": "val", "c.jpg": "test"}
    with store.transaction() as tx:
        tx.add_annotation_version("annotations-v2", "e" * 40, {}, _images("z.jpg"))
        tx.add_training_version("training-b", "annotations-v2", "h" * 64, "f" * 40, 2**40, (1, 0, 0), {},
                                {"z.jpg": "train"})
        assert tx.get_training_version("training-b")["seed"] == 2**40  # visible inside the transaction
    assert [t["name"] for t in store.list_training_versions()] == ["training-a", "training-b"]
    assert [t["name"] for t in store.list_training_versions("annotations-v2")] == ["training-b"]


def test_run_round_trip(store):
    with store.transaction() as tx:
        run_id = tx.start_run("run-x", {"epochs": 3, "nested": {"a": [1, 2]}}, "node-7")
    run = store.get_run("run-x")
    assert run["id"] == run_id
    assert (run["status"], run["host"], run["finished_at"]) == ("running", "node-7", None)
    assert run["parameters"] == {"epochs": 3, "nested": {"a": [1, 2]}}
    _assert_utc_recent(run["started_at"])
    with store.transaction() as tx:
        assert tx.finish_run("run-x", "failed") == run_id
    run = store.get_run("run-x")
    assert run["status"] == "failed"
    assert run["finished_at"] >= run["started_at"]
    assert store.get_run("run-y") is None


def test_model_evaluation_and_test_results_round_trip(store):
    ids = _populate(store)
    model = store.get_model(ids["model"])
    assert model["uri"] == "file:///m/1"
    assert (model["training_version"], model["run"], model["epoch"], model["checkpoint"]) == (
        "training-a", "run-1", 2, "epoch_2.pth")
    assert (model["config_uri"], model["config_hash"]) == ("file:///m/1/config.py", "c" * 64)
    assert model["hyperparameters"] == {"lr": 0.01, "batch": 8}
    assert model["selected"] is False and model["selection_metric"] is None
    assert store.get_model(ids["model"] + 1000) is None

    with store.transaction() as tx:
        no_run = tx.add_model("gs://b/m2", "training-a", None, "", "", "latest.pth", None, {})
        ev2 = tx.add_evaluation(ids["model"], "test", {"eir": 0.75, "char_acc": float("nan"), "n": 3})
        assert tx.add_test_results(ids["model"], [
            {"file_name": "c.jpg", "truth": ["12A3456"], "reading": {"plates": [{"text": "12A3456"}]},
             "exact": True},
            {"file_name": "b.jpg", "truth": [], "reading": {"plates": []}, "exact": False},
        ], run="run-1") == 2
        assert tx.add_test_results(ids["model"], []) == 0
    m2 = store.get_model(no_run)
    assert (m2["run"], m2["epoch"], m2["uri"]) == (None, None, "gs://b/m2")

    evs = store.evaluations(ids["model"])
    assert [e["id"] for e in evs] == [ids["evaluation"], ev2]
    assert evs[0]["metrics"] == {"eir": 0.5, "bbox_mAP": 0.25} and evs[0]["run"] == "run-1"
    assert evs[1]["metrics"] == {"eir": 0.75, "char_acc": None, "n": 3.0} and evs[1]["split"] == "test"
    assert store.evaluations(no_run) == []
    # the long form answers SQL queries over metrics
    em = metadata.evaluation_metrics
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(em.c.evaluation_id, em.c.value).where(em.c.name == "eir")
                            .order_by(em.c.value.desc())).all()
        nan_row = conn.execute(sa.select(em.c.value).where(em.c.name == "char_acc")).scalar_one()
    assert [tuple(r) for r in rows] == [(ev2, 0.75), (ids["evaluation"], 0.5)]
    assert nan_row is None

    results = store.test_results(ids["model"])
    assert [(r["file_name"], r["truth"], r["exact"], r["run"]) for r in results] == [
        ("c.jpg", ["12A3456"], True, "run-1"), ("b.jpg", [], False, "run-1")]
    assert results[0]["reading"] == {"plates": [{"text": "12A3456"}]}
    _assert_utc_recent(results[0]["created_at"])


def test_latest_selected_model(store):
    assert store.latest_selected_model() is None
    ids = _populate(store)
    assert store.latest_selected_model() is None  # nothing selected yet
    with store.transaction() as tx:
        m2 = tx.add_model("gs://b/m2", "training-a", "run-1", "cfg", "h2", "best.pth", 5, {})
        tx.select_model(ids["model"], "eir", 0.5)
    latest = store.latest_selected_model()
    assert latest["id"] == ids["model"] and latest["uri"] == "file:///m/1"
    assert (latest["selected"], latest["selection_metric"], latest["selection_value"]) == (True, "eir", 0.5)
    assert latest["metrics"] == {"eir": 0.5, "bbox_mAP": 0.25}
    assert latest["evaluation"]["split"] == "val"
    _assert_utc_recent(latest["selected_at"])

    with store.transaction() as tx:
        assert tx.select_model(m2, "eir", 0.9) == m2  # a newer selection wins, although m2 has no evaluation
    latest = store.latest_selected_model()
    assert latest["id"] == m2 and latest["metrics"] == {} and latest["evaluation"] is None

    with store.transaction() as tx:
        tx.add_evaluation(m2, "val", {"eir": 0.9})
        tx.add_evaluation(m2, "test", {"eir": 0.8})
        assert tx.latest_selected_model()["metrics"] == {"eir": 0.8}
    assert store.latest_selected_model(split="val")["metrics"] == {"eir": 0.9}
    with store.transaction() as tx:
        tx.select_model(ids["model"], "eir", 0.95)  # re-selecting an older model (a rollback) makes it the latest
    assert store.latest_selected_model()["id"] == ids["model"]
    assert store.get_model(m2)["selected"] is True  # earlier selections stay recorded


def test_lineage_both_directions(store):
    ids = _populate(store)
    with store.transaction() as tx:
        tx.add_training_version("training-b", "annotations-v1", "p" * 64, "9" * 40, 1, (0.8, 0.1, 0.1), {},
                                {"a.jpg": "val"})
        mb = tx.add_model("gs://b/mb", "training-b", None, "gs://b/mb/cfg.py", "k" * 64, "e.pth", 1, {})
        tx.add_annotation_version("annotations-v2", "2" * 40, {}, _images("q.jpg"))
    lineage = store.model_lineage(ids["model"])
    assert lineage["model"]["id"] == ids["model"] and lineage["uri"] == "file:///m/1"
    assert lineage["training_version"]["name"] == "training-a"
    assert lineage["annotation_version"]["name"] == "annotations-v1"
    assert lineage["git_revs"] == {"training_version": "b" * 40, "annotation_version": "a" * 40}
    assert (lineage["config_uri"], lineage["config_hash"]) == ("file:///m/1/config.py", "c" * 64)
    assert lineage["run"]["name"] == "run-1" and lineage["run"]["status"] == "succeeded"
    assert store.model_lineage(mb)["run"] is None

    assert [m["id"] for m in store.models_of_training_version("training-a")] == [ids["model"]]
    assert [m["id"] for m in store.models_of_training_version("training-b")] == [mb]
    assert [m["id"] for m in store.models_of_annotation_version("annotations-v1")] == [ids["model"], mb]
    assert [m["training_version"] for m in store.models_of_annotation_version("annotations-v1")] == [
        "training-a", "training-b"]
    assert store.models_of_annotation_version("annotations-v2") == []


# --------------------------------------------------------------------------------------------------- transactions


def test_transaction_rolls_back_on_exception(store):
    empty = _counts(store)
    assert set(empty.values()) == {0}

    class PushFailed(RuntimeError):
        pass

    with pytest.raises(PushFailed, match="dvc push"):
        with store.transaction() as tx:
            tx.add_annotation_version("annotations-v1", "a" * 40, {"A": 1}, _images("a.jpg", "b.jpg"))
            tx.add_training_version("training-a", "annotations-v1", "h", "b" * 40, 0, (0.5, 0.5, 0.0), {},
                                    {"a.jpg": "train", "b.jpg": "val"})
            tx.start_run("run-1", {}, "h")
            m = tx.add_model("u", "training-a", "run-1", "c", "h", "x.pth", 1, {})
            tx.add_evaluation(m, "val", {"eir": 1.0})
            tx.add_test_results(m, [{"file_name": "a.jpg", "truth": [], "reading": {}, "exact": True}])
            tx.select_model(m, "eir", 1.0)
            # the transaction sees its rows; another connection does not
            assert tx.get_annotation_version("annotations-v1")["image_count"] == 2
            assert tx.latest_selected_model()["id"] == m
            assert store.get_annotation_version("annotations-v1") is None
            raise PushFailed("dvc push failed")
    assert _counts(store) == empty
    assert store.get_annotation_version("annotations-v1") is None
    assert store.latest_selected_model() is None


def test_failed_write_rolls_back_earlier_writes_of_the_step(store):
    with pytest.raises(ValueError, match="missing.jpg"):
        with store.transaction() as tx:
            tx.add_annotation_version("annotations-v1", "a" * 40, {}, _images("a.jpg"))
            tx.add_training_version("training-a", "annotations-v1", "h", "b", 0, (1, 0, 0), {},
                                    {"a.jpg": "train", "missing.jpg": "val"})
    assert set(_counts(store).values()) == {0}


def test_transaction_object_unusable_after_the_block(store):
    with store.transaction() as tx:
        pass
    with pytest.raises(metadata.MetadataError, match="ended"):
        tx.start_run("late", {}, "h")


def test_concurrent_transactions(store):
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(4):
                with store.transaction() as tx:
                    if tx.get_run(f"run-{t}-{i}") is None:
                        tx.start_run(f"run-{t}-{i}", {"t": t}, "h")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert _counts(store)["pipeline_runs"] == 16


# --------------------------------------------------------------------------------------------------- errors


def test_duplicate_names_raise_already_exists(store):
    _populate(store)
    with pytest.raises(AlreadyExists, match="annotations-v1"), store.transaction() as tx:
        tx.add_annotation_version("annotations-v1", "z", {}, [])
    with pytest.raises(AlreadyExists, match="training-a"), store.transaction() as tx:
        tx.add_training_version("training-a", "annotations-v1", "other", "z", 0, (1, 0, 0), {}, {})
    with pytest.raises(AlreadyExists, match="training-a") as info, store.transaction() as tx:
        tx.add_training_version("training-z", "annotations-v1", "h" * 64, "z", 0, (1, 0, 0), {}, {})
    assert "h" * 64 in str(info.value)
    with pytest.raises(AlreadyExists, match="run-1"), store.transaction() as tx:
        tx.start_run("run-1", {}, "h")
    with pytest.raises(ValueError, match="a.jpg"), store.transaction() as tx:
        tx.add_annotation_version("annotations-v9", "z", {}, _images("a.jpg", "a.jpg"))
    assert [v["name"] for v in store.list_annotation_versions()] == ["annotations-v1"]
    assert store.get_annotation_version("annotations-v1")["git_rev"] == "a" * 40
    # names compare exactly on both backends (binary collation on MySQL): case differs -> another version
    with store.transaction() as tx:
        tx.add_annotation_version("Annotations-V1", "z", {}, [])
        tx.add_annotation_version("annotations-vı", "z", {}, [])  # dotless i
    assert len(store.list_annotation_versions()) == 3


def test_unique_violation_from_the_database_is_translated(store):
    """The pre-checks aside, a unique-key error raised by the database itself (a race) becomes AlreadyExists."""
    _populate(store)
    row = {"name": "annotations-v1", "git_rev": "r", "image_count": 0, "class_counts": {}, "description": "",
           "created_at": datetime.now(timezone.utc)}
    with pytest.raises(AlreadyExists, match="raced"), store.transaction() as tx:
        with metadata._duplicates_as("annotations-v1 raced"):
            tx.connection.execute(sa.insert(metadata.annotation_versions), row)
    with pytest.raises(sa.exc.IntegrityError), store.transaction() as tx:  # other integrity errors stay as they are
        with metadata._duplicates_as("not this"):
            tx.connection.execute(sa.insert(metadata.models), {
                "uri": "u", "training_version_id": 12345, "config_uri": "", "config_hash": "", "checkpoint": "",
                "hyperparameters": {}, "selected": False, "created_at": datetime.now(timezone.utc)})


def test_not_found(store):
    model = _populate(store)["model"]
    cases = [
        (lambda tx: tx.add_training_version("t", "annotations-nope", "h", "r", 0, (1, 0, 0), {}, {}),
         "annotations-nope"),
        (lambda tx: tx.add_model("u", "training-nope", None, "c", "h", "x", 1, {}), "training-nope"),
        (lambda tx: tx.add_model("u", "training-a", "run-nope", "c", "h", "x", 1, {}), "run-nope"),
        (lambda tx: tx.finish_run("run-nope", "failed"), "run-nope"),
        (lambda tx: tx.select_model(424242, "eir", 1.0), "424242"),
        (lambda tx: tx.add_evaluation(424242, "val", {}), "424242"),
        (lambda tx: tx.add_evaluation(model, "val", {}, run="run-nope"), "run-nope"),
        (lambda tx: tx.add_test_results(424242, []), "424242"),
    ]
    for call, missing in cases:
        with pytest.raises(NotFound, match=missing), store.transaction() as tx:
            call(tx)
    for call, missing in [
        (lambda: store.annotation_images("annotations-nope"), "annotations-nope"),
        (lambda: store.training_splits("training-nope"), "training-nope"),
        (lambda: store.list_training_versions("annotations-nope"), "annotations-nope"),
        (lambda: store.models_of_training_version("training-nope"), "training-nope"),
        (lambda: store.models_of_annotation_version("annotations-nope"), "annotations-nope"),
        (lambda: store.model_lineage(424242), "424242"),
        (lambda: store.evaluations(424242), "424242"),
        (lambda: store.test_results(424242), "424242"),
    ]:
        with pytest.raises(LookupError, match=missing):
            call()
    assert _counts(store)["models"] == 1


def test_invalid_arguments_raise_value_error_on_both_backends(store):
    model = _populate(store)["model"]
    bad = [
        lambda tx: tx.add_annotation_version("x" * 129, "r", {}, []),  # longer than the column
        lambda tx: tx.add_annotation_version("", "r", {}, []),
        lambda tx: tx.add_annotation_version(" padded", "r", {}, []),
        lambda tx: tx.add_annotation_version("v", "r", {}, [{"file_name": "a.jpg"}]),
        lambda tx: tx.add_annotation_version("v", "r", {}, [dict(_images("a")[0], width="640")]),
        lambda tx: tx.add_annotation_version("v", "r", {}, [dict(_images("a")[0], file_name="f" * 513)]),
        lambda tx: tx.add_training_version("t", "annotations-v1", "h2", "r", 0, (0.5, 0.2, 0.2), {}, {}),
        lambda tx: tx.add_training_version("t", "annotations-v1", "h2", "r", 0, (1, 0, 0), {}, {"a.jpg": "dev"}),
        lambda tx: tx.start_run("r", {"x": float("nan")}, "h"),
        lambda tx: tx.start_run("r", {"x": object()}, "h"),
        lambda tx: tx.finish_run("run-1", "s" * 17),
        lambda tx: tx.add_evaluation(model, "holdout", {}),
        lambda tx: tx.add_evaluation(model, "val", {"eir": "high"}),
        lambda tx: tx.add_evaluation(model, "val", {"m" * 65: 1.0}),
        lambda tx: tx.add_test_results(model, [{"file_name": "a.jpg", "truth": []}]),
        lambda tx: tx.select_model(model, "m" * 65, 1.0),
    ]
    before = _counts(store)
    for call in bad:
        with pytest.raises(ValueError), store.transaction() as tx:
            call(tx)
    assert _counts(store) == before
    assert store.get_run("run-1")["status"] == "succeeded"


# --------------------------------------------------------------------------------------------------- hostile input


def test_sql_injection_shaped_strings_are_stored_verbatim(store):
    with store.transaction() as tx:
        tx.add_annotation_version(EVIL, EVIL[:64], {EVIL: 1}, _images(EVIL, "a.jpg"), description=EVIL)
        tx.add_training_version(EVIL + "t", EVIL, EVIL[:64], "r", 1, (1, 0, 0), {EVIL: EVIL},
                                {EVIL: "train", "a.jpg": "test"})
        tx.start_run(EVIL, {"label": EVIL}, EVIL)
        m = tx.add_model(EVIL, EVIL + "t", EVIL, EVIL, EVIL[:64], EVIL, 1, {EVIL: EVIL})
        tx.add_evaluation(m, "val", {EVIL: 1.0}, run=EVIL)
        tx.add_test_results(m, [{"file_name": EVIL, "truth": [EVIL], "reading": {"t": EVIL}, "exact": False}])
        tx.select_model(m, EVIL, 2.0)
        tx.finish_run(EVIL, "succeeded")
    assert TABLES <= set(sa.inspect(store.engine).get_table_names())
    av = store.get_annotation_version(EVIL)
    assert (av["name"], av["description"], av["class_counts"]) == (EVIL, EVIL, {EVIL: 1})
    assert store.annotation_images(EVIL)[-1]["file_name"] == EVIL
    assert store.training_splits(EVIL + "t") == {EVIL: "train", "a.jpg": "test"}
    assert store.find_training_version(EVIL, EVIL[:64])["counts"] == {EVIL: EVIL}
    assert store.get_run(EVIL)["parameters"] == {"label": EVIL} and store.get_run(EVIL)["host"] == EVIL
    model = store.latest_selected_model()
    assert (model["uri"], model["run"], model["selection_metric"], model["metrics"]) == (EVIL, EVIL, EVIL, {EVIL: 1.0})
    assert store.test_results(m)[0]["truth"] == [EVIL]
    assert store.model_lineage(m)["annotation_version"]["name"] == EVIL
    assert [x["id"] for x in store.models_of_annotation_version(EVIL)] == [m]
    assert _counts(store)["models"] == 1


def test_unicode_round_trip(store):
    with store.transaction() as tx:
        tx.add_annotation_version(f"v-{HANGUL}", "r", {HANGUL: 2}, _images(f"{HANGUL}.jpg"), description=HANGUL)
        tx.add_training_version(f"t-{HANGUL}", f"v-{HANGUL}", "h", "r", 0, (1, 0, 0), {"note": HANGUL},
                                {f"{HANGUL}.jpg": "train"})
        tx.start_run(f"r-{HANGUL}", {"who": HANGUL}, HANGUL)
        m = tx.add_model(f"gs://b/{HANGUL}", f"t-{HANGUL}", f"r-{HANGUL}", HANGUL, "h", HANGUL, 0, {HANGUL: HANGUL})
        tx.add_test_results(m, [{"file_name": f"{HANGUL}.jpg", "truth": ["12A3456"],
                                 "reading": {"plates": [{"text": HANGUL}]}, "exact": False}])
    av = store.get_annotation_version(f"v-{HANGUL}")
    assert (av["description"], av["class_counts"]) == (HANGUL, {HANGUL: 2})
    assert store.training_splits(f"t-{HANGUL}") == {f"{HANGUL}.jpg": "train"}
    assert store.get_run(f"r-{HANGUL}")["parameters"] == {"who": HANGUL}
    model = store.get_model(m)
    assert (model["uri"], model["checkpoint"], model["hyperparameters"]) == (
        f"gs://b/{HANGUL}", HANGUL, {HANGUL: HANGUL})
    assert store.test_results(m)[0]["reading"] == {"plates": [{"text": HANGUL}]}


# --------------------------------------------------------------------------------------------------- URL & CLI


def test_password_is_injected_but_never_shown(db_url, monkeypatch, caplog, capsys):
    secret = "s3cr3t-Pa55"
    monkeypatch.setenv("ALPR_DB_PASSWORD", secret)
    store = MetadataStore(db_url, echo=True)
    shown = [store.url_for_display, repr(store), str(store), repr(store.engine)]
    if db_url.startswith("sqlite"):
        assert store.engine.url.password is None  # nothing to inject into a file URL
        store.create_schema()
    else:
        assert store.engine.url.password == secret
        assert "***" in store.url_for_display
        # root has no password on the test server: the wrong one is refused; the error must not show it
        with caplog.at_level(logging.DEBUG), pytest.raises(MetadataConnectionError) as info:
            store.create_schema()
        assert store.url_for_display in str(info.value)
        shown += [str(info.value), repr(info.value), caplog.text]
    assert metadata.main(["show-url", "--url", db_url]) == 0
    shown.append(capsys.readouterr().out)
    inline = MetadataStore("mysql+pymysql://alpr:inline-pw@db.example:3306/alpr")
    shown += [inline.url_for_display, repr(inline)]
    assert inline.engine.url.password == secret  # the environment wins over the URL
    for text in shown:
        assert secret not in text and "inline-pw" not in text
    store.dispose()


def test_cli_init_and_show_url(db_url, monkeypatch, capsys):
    assert metadata.main(["init", "--url", db_url]) == 0
    assert "metadata schema ready" in capsys.readouterr().out
    assert metadata.main(["init", "--url", db_url]) == 0  # idempotent
    capsys.readouterr()
    store = MetadataStore(db_url)
    assert TABLES <= set(sa.inspect(store.engine).get_table_names())
    store.dispose()
    monkeypatch.setenv("ALPR_DB_URL", db_url)
    assert metadata.main(["show-url"]) == 0
    assert capsys.readouterr().out.strip() == MetadataStore(db_url).url_for_display
    monkeypatch.delenv("ALPR_DB_URL")
    assert metadata.main(["init"]) == 2
    assert "ALPR_DB_URL" in capsys.readouterr().err
    assert metadata.main(["init", "--url", "not a url"]) == 1
    # as a module, in a fresh interpreter, the URL taken from the environment
    env = {**os.environ, "ALPR_DB_URL": db_url}
    env.pop("ALPR_DB_PASSWORD", None)
    proc = subprocess.run([sys.executable, "-m", "alpr.metadata", "init"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "metadata schema ready" in proc.stdout


def test_cli_unreachable_database_fails_cleanly(db_url, tmp_path, capsys):
    if db_url.startswith("sqlite"):
        blocker = tmp_path / "file"
        blocker.write_text("")
        url = f"sqlite:///{blocker}/sub/m.db"  # the parent "folder" is a file
        with pytest.raises(OSError):
            MetadataStore(url)
        url = f"sqlite:///{tmp_path}/dir.db"
        (tmp_path / "dir.db").mkdir()  # a folder where the database file should be
    else:
        url = sa.engine.make_url(db_url).set(database="alpr_no_such_database_x").render_as_string(False)
    assert metadata.main(["init", "--url", url]) == 1
    assert "cannot connect" in capsys.readouterr().err


def test_timestamps_are_utc_and_ordered(store):
    with store.transaction() as tx:
        for i in range(3):
            tx.start_run(f"r{i}", {}, "h")
    starts = [store.get_run(f"r{i}")["started_at"] for i in range(3)]
    assert starts == sorted(starts)
    assert all(s.tzinfo is timezone.utc for s in starts)
    with pytest.raises(sa.exc.StatementError, match="naive"), store.transaction() as tx:
        tx.connection.execute(sa.update(metadata.pipeline_runs).values(finished_at=datetime(2024, 1, 1)))
