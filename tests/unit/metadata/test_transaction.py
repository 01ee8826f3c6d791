"""Tests of alpr.metadata.transaction: the writes, all-or-nothing, their errors and hostile input, on both backends."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from alpr.metadata import AlreadyExists, MetadataError, NotFound

EVIL = "x'); DROP TABLE models; --"
HANGUL = "서울 12가3456 번호판 🚗"


def test_transaction_rolls_back_on_exception(store, make_images, row_counts):
    empty = row_counts(store)
    assert set(empty.values()) == {0}

    class PushFailed(RuntimeError):
        pass

    with pytest.raises(PushFailed, match="dvc push"), store.transaction() as tx:
        tx.add_annotation_version("annotations-v1", "a" * 40, {"A": 1}, make_images("a.jpg", "b.jpg"))
        tx.add_training_version(
            "training-a", "annotations-v1", "h", "b" * 40, 0, (0.5, 0.5, 0.0), {}, {"a.jpg": "train", "b.jpg": "val"}
        )
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
    assert row_counts(store) == empty
    assert store.get_annotation_version("annotations-v1") is None
    assert store.latest_selected_model() is None


def test_failed_write_rolls_back_earlier_writes_of_the_step(store, make_images, row_counts):
    with pytest.raises(ValueError, match="missing.jpg"), store.transaction() as tx:
        tx.add_annotation_version("annotations-v1", "a" * 40, {}, make_images("a.jpg"))
        tx.add_training_version(
            "training-a", "annotations-v1", "h", "b", 0, (1, 0, 0), {}, {"a.jpg": "train", "missing.jpg": "val"}
        )
    assert set(row_counts(store).values()) == {0}


def test_transaction_object_unusable_after_the_block(store):
    with store.transaction() as tx:
        pass
    with pytest.raises(MetadataError, match="ended"):
        tx.start_run("late", {}, "h")


def test_concurrent_transactions(store, row_counts):
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(4):
                with store.transaction() as tx:
                    if tx.get_run(f"run-{t}-{i}") is None:
                        tx.start_run(f"run-{t}-{i}", {"t": t}, "h")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert row_counts(store)["pipeline_runs"] == 16


def test_duplicate_names_raise_already_exists(store, populate, make_images):
    populate(store)
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
        tx.add_annotation_version("annotations-v9", "z", {}, make_images("a.jpg", "a.jpg"))
    assert [v["name"] for v in store.list_annotation_versions()] == ["annotations-v1"]
    assert store.get_annotation_version("annotations-v1")["git_rev"] == "a" * 40
    # names compare exactly on both backends (binary collation on MySQL): case differs -> another version
    with store.transaction() as tx:
        tx.add_annotation_version("Annotations-V1", "z", {}, [])
        tx.add_annotation_version("annotations-vı", "z", {}, [])  # dotless i
    assert len(store.list_annotation_versions()) == 3


def test_not_found(store, populate, row_counts):
    model = populate(store)["model"]
    cases = [
        (
            lambda tx: tx.add_training_version("t", "annotations-nope", "h", "r", 0, (1, 0, 0), {}, {}),
            "annotations-nope",
        ),
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
    assert row_counts(store)["models"] == 1


def test_invalid_arguments_raise_value_error_on_both_backends(store, populate, make_images, row_counts):
    model = populate(store)["model"]
    bad = [
        lambda tx: tx.add_annotation_version("x" * 129, "r", {}, []),  # longer than the column
        lambda tx: tx.add_annotation_version("", "r", {}, []),
        lambda tx: tx.add_annotation_version(" padded", "r", {}, []),
        lambda tx: tx.add_annotation_version("v", "r", {}, [{"file_name": "a.jpg"}]),
        lambda tx: tx.add_annotation_version("v", "r", {}, [dict(make_images("a")[0], width="640")]),
        lambda tx: tx.add_annotation_version("v", "r", {}, [dict(make_images("a")[0], file_name="f" * 513)]),
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
    before = row_counts(store)
    for call in bad:
        with pytest.raises(ValueError), store.transaction() as tx:
            call(tx)
    assert row_counts(store) == before
    assert store.get_run("run-1")["status"] == "succeeded"


def test_sql_injection_shaped_strings_are_stored_verbatim(store, make_images, row_counts, core_tables):
    with store.transaction() as tx:
        tx.add_annotation_version(EVIL, EVIL[:64], {EVIL: 1}, make_images(EVIL, "a.jpg"), description=EVIL)
        tx.add_training_version(
            EVIL + "t", EVIL, EVIL[:64], "r", 1, (1, 0, 0), {EVIL: EVIL}, {EVIL: "train", "a.jpg": "test"}
        )
        tx.start_run(EVIL, {"label": EVIL}, EVIL)
        m = tx.add_model(EVIL, EVIL + "t", EVIL, EVIL, EVIL[:64], EVIL, 1, {EVIL: EVIL})
        tx.add_evaluation(m, "val", {EVIL: 1.0}, run=EVIL)
        tx.add_test_results(m, [{"file_name": EVIL, "truth": [EVIL], "reading": {"t": EVIL}, "exact": False}])
        tx.select_model(m, EVIL, 2.0)
        tx.finish_run(EVIL, "succeeded")
    assert core_tables <= set(sa.inspect(store.engine).get_table_names())
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
    assert row_counts(store)["models"] == 1


def test_unicode_round_trip(store, make_images):
    with store.transaction() as tx:
        tx.add_annotation_version(f"v-{HANGUL}", "r", {HANGUL: 2}, make_images(f"{HANGUL}.jpg"), description=HANGUL)
        tx.add_training_version(
            f"t-{HANGUL}", f"v-{HANGUL}", "h", "r", 0, (1, 0, 0), {"note": HANGUL}, {f"{HANGUL}.jpg": "train"}
        )
        tx.start_run(f"r-{HANGUL}", {"who": HANGUL}, HANGUL)
        m = tx.add_model(f"gs://b/{HANGUL}", f"t-{HANGUL}", f"r-{HANGUL}", HANGUL, "h", HANGUL, 0, {HANGUL: HANGUL})
        tx.add_test_results(
            m,
            [
                {
                    "file_name": f"{HANGUL}.jpg",
                    "truth": ["12A3456"],
                    "reading": {"plates": [{"text": HANGUL}]},
                    "exact": False,
                }
            ],
        )
    av = store.get_annotation_version(f"v-{HANGUL}")
    assert (av["description"], av["class_counts"]) == (HANGUL, {HANGUL: 2})
    assert store.training_splits(f"t-{HANGUL}") == {f"{HANGUL}.jpg": "train"}
    assert store.get_run(f"r-{HANGUL}")["parameters"] == {"who": HANGUL}
    model = store.get_model(m)
    assert (model["uri"], model["checkpoint"], model["hyperparameters"]) == (
        f"gs://b/{HANGUL}",
        HANGUL,
        {HANGUL: HANGUL},
    )
    assert store.test_results(m)[0]["reading"] == {"plates": [{"text": HANGUL}]}
