"""Tests of alpr.metadata.queries: the reads return what the writes stored, and every query is a method of the
store and of a transaction (the read registry)."""

from __future__ import annotations

import inspect
import pydoc

import pytest
import sqlalchemy as sa

from alpr.metadata import MetadataStore, MetadataTx, queries, schema


def test_annotation_version_round_trip(store, populate, make_images, assert_utc_recent):
    assert store.get_annotation_version("annotations-v1") is None
    assert store.list_annotation_versions() == []
    ids = populate(store)
    with store.transaction() as tx:
        tx.add_annotation_version("annotations-v2", "d" * 40, {}, [], description="")
    av = store.get_annotation_version("annotations-v1")
    assert av["id"] == ids["av"]
    assert (av["name"], av["git_rev"], av["image_count"], av["description"]) == ("annotations-v1", "a" * 40, 3, "first")
    assert av["class_counts"] == {"A": 3, "plate_one_line": 2}
    assert_utc_recent(av["created_at"])
    assert [v["name"] for v in store.list_annotation_versions()] == ["annotations-v1", "annotations-v2"]
    imgs = store.annotation_images("annotations-v1")
    assert [{k: v for k, v in i.items() if k != "id"} for i in imgs] == make_images("a.jpg", "b.jpg", "c.jpg")
    assert store.annotation_images("annotations-v2") == []
    assert store.get_annotation_version("annotations-v2")["image_count"] == 0


def test_training_version_round_trip(store, populate, make_images, assert_utc_recent):
    ids = populate(store)
    tv = store.get_training_version("training-a")
    assert tv["id"] == ids["tv"]
    assert tv["annotation_version"] == "annotations-v1"
    assert (tv["params_hash"], tv["git_rev"], tv["seed"]) == ("h" * 64, "b" * 40, 7)
    assert tv["fractions"] == (0.6, 0.2, 0.2)
    assert tv["counts"] == {"train": 1, "val": 1, "test": 1, "classes": {"A": 3}}
    assert_utc_recent(tv["created_at"])
    assert store.find_training_version("annotations-v1", "h" * 64)["name"] == "training-a"
    assert store.find_training_version("annotations-v1", "other") is None
    assert store.find_training_version("nope", "h" * 64) is None
    assert store.training_splits("training-a") == {"a.jpg": "train", "b.jpg": "val", "c.jpg": "test"}
    with store.transaction() as tx:
        tx.add_annotation_version("annotations-v2", "e" * 40, {}, make_images("z.jpg"))
        tx.add_training_version(
            "training-b", "annotations-v2", "h" * 64, "f" * 40, 2**40, (1, 0, 0), {}, {"z.jpg": "train"}
        )
        assert tx.get_training_version("training-b")["seed"] == 2**40  # visible inside the transaction
    assert [t["name"] for t in store.list_training_versions()] == ["training-a", "training-b"]
    assert [t["name"] for t in store.list_training_versions("annotations-v2")] == ["training-b"]


def test_run_round_trip(store, assert_utc_recent):
    with store.transaction() as tx:
        run_id = tx.start_run("run-x", {"epochs": 3, "nested": {"a": [1, 2]}}, "node-7")
    run = store.get_run("run-x")
    assert run["id"] == run_id
    assert (run["status"], run["host"], run["finished_at"]) == ("running", "node-7", None)
    assert run["parameters"] == {"epochs": 3, "nested": {"a": [1, 2]}}
    assert_utc_recent(run["started_at"])
    with store.transaction() as tx:
        assert tx.finish_run("run-x", "failed") == run_id
    run = store.get_run("run-x")
    assert run["status"] == "failed"
    assert run["finished_at"] >= run["started_at"]
    assert store.get_run("run-y") is None


def test_model_evaluation_and_test_results_round_trip(store, populate, assert_utc_recent):
    ids = populate(store)
    model = store.get_model(ids["model"])
    assert model["uri"] == "file:///m/1"
    assert (model["training_version"], model["run"], model["epoch"], model["checkpoint"]) == (
        "training-a",
        "run-1",
        2,
        "epoch_2.pth",
    )
    assert (model["config_uri"], model["config_hash"]) == ("file:///m/1/config.py", "c" * 64)
    assert model["hyperparameters"] == {"lr": 0.01, "batch": 8}
    assert model["selected"] is False and model["selection_metric"] is None
    assert store.get_model(ids["model"] + 1000) is None

    with store.transaction() as tx:
        no_run = tx.add_model("gs://b/m2", "training-a", None, "", "", "latest.pth", None, {})
        ev2 = tx.add_evaluation(ids["model"], "test", {"eir": 0.75, "char_acc": float("nan"), "n": 3})
        assert (
            tx.add_test_results(
                ids["model"],
                [
                    {
                        "file_name": "c.jpg",
                        "truth": ["12A3456"],
                        "reading": {"plates": [{"text": "12A3456"}]},
                        "exact": True,
                    },
                    {"file_name": "b.jpg", "truth": [], "reading": {"plates": []}, "exact": False},
                ],
                run="run-1",
            )
            == 2
        )
        assert tx.add_test_results(ids["model"], []) == 0
    m2 = store.get_model(no_run)
    assert (m2["run"], m2["epoch"], m2["uri"]) == (None, None, "gs://b/m2")

    evs = store.evaluations(ids["model"])
    assert [e["id"] for e in evs] == [ids["evaluation"], ev2]
    assert evs[0]["metrics"] == {"eir": 0.5, "bbox_mAP": 0.25} and evs[0]["run"] == "run-1"
    assert evs[1]["metrics"] == {"eir": 0.75, "char_acc": None, "n": 3.0} and evs[1]["split"] == "test"
    assert store.evaluations(no_run) == []
    # the long form answers SQL queries over metrics
    em = schema.evaluation_metrics
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(em.c.evaluation_id, em.c.value).where(em.c.name == "eir").order_by(em.c.value.desc())
        ).all()
        nan_row = conn.execute(sa.select(em.c.value).where(em.c.name == "char_acc")).scalar_one()
    assert [tuple(r) for r in rows] == [(ev2, 0.75), (ids["evaluation"], 0.5)]
    assert nan_row is None

    results = store.test_results(ids["model"])
    assert [(r["file_name"], r["truth"], r["exact"], r["run"]) for r in results] == [
        ("c.jpg", ["12A3456"], True, "run-1"),
        ("b.jpg", [], False, "run-1"),
    ]
    assert results[0]["reading"] == {"plates": [{"text": "12A3456"}]}
    assert_utc_recent(results[0]["created_at"])


def test_latest_selected_model(store, populate, assert_utc_recent):
    assert store.latest_selected_model() is None
    ids = populate(store)
    assert store.latest_selected_model() is None  # nothing selected yet
    with store.transaction() as tx:
        m2 = tx.add_model("gs://b/m2", "training-a", "run-1", "cfg", "h2", "best.pth", 5, {})
        tx.select_model(ids["model"], "eir", 0.5)
    latest = store.latest_selected_model()
    assert latest["id"] == ids["model"] and latest["uri"] == "file:///m/1"
    assert (latest["selected"], latest["selection_metric"], latest["selection_value"]) == (True, "eir", 0.5)
    assert latest["metrics"] == {"eir": 0.5, "bbox_mAP": 0.25}
    assert latest["evaluation"]["split"] == "val"
    assert_utc_recent(latest["selected_at"])

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


def test_lineage_both_directions(store, populate, make_images):
    ids = populate(store)
    with store.transaction() as tx:
        tx.add_training_version(
            "training-b", "annotations-v1", "p" * 64, "9" * 40, 1, (0.8, 0.1, 0.1), {}, {"a.jpg": "val"}
        )
        mb = tx.add_model("gs://b/mb", "training-b", None, "gs://b/mb/cfg.py", "k" * 64, "e.pth", 1, {})
        tx.add_annotation_version("annotations-v2", "2" * 40, {}, make_images("q.jpg"))
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
        "training-a",
        "training-b",
    ]
    assert store.models_of_annotation_version("annotations-v2") == []


# --------------------------------------------------------------------------------------------------- the read registry


def _fill_every_table(store, populate) -> dict:
    """``populate`` plus a selection, test results, a baseline, a deployment and a finished tuning study with a
    trial."""
    ids = populate(store)
    with store.transaction() as tx:
        tx.select_model(ids["model"], "eir", 0.5)
        tx.add_test_results(ids["model"], [{"file_name": "c.jpg", "truth": ["12A3456"], "reading": {}, "exact": True}])
        tx.add_model_baseline(
            ids["model"], "test", images=1, plates=1, valid_plates=1, score_edges=[0.0, 1.0], score_counts=[1]
        )
        tx.add_deployment(
            ids["model"],
            "local",
            "deployed",
            "first model",
            new_eir=0.5,
            served_eir=None,
            served_model_id=None,
            storage_uri="file:///m/1",
        )
        tx.start_tuning_study(
            "study-1",
            backend="optuna",
            algorithm="random",
            objective="eir",
            direction="maximize",
            search_space=[{"name": "lr"}],
            settings={"trials": 1},
        )
        tx.add_tuning_trial("study-1", "trial-0", number=0, state="succeeded", params={"lr": 0.01}, value=0.5)
        tx.finish_tuning_study("study-1", "succeeded", best_trial="trial-0", best_value=0.5, best_params={"lr": 0.01})
    return ids


#: Arguments for each read (given the ids of ``_fill_every_table``); every read must have an entry.
READ_ARGS = {
    "get_annotation_version": lambda ids: ("annotations-v1",),
    "list_annotation_versions": lambda ids: (),
    "annotation_images": lambda ids: ("annotations-v1",),
    "get_training_version": lambda ids: ("training-a",),
    "find_training_version": lambda ids: ("annotations-v1", "h" * 64),
    "list_training_versions": lambda ids: ("annotations-v1",),
    "training_splits": lambda ids: ("training-a",),
    "get_run": lambda ids: ("run-1",),
    "get_model": lambda ids: (ids["model"],),
    "evaluations": lambda ids: (ids["model"],),
    "latest_selected_model": lambda ids: ("val",),
    "model_lineage": lambda ids: (ids["model"],),
    "models_of_training_version": lambda ids: ("training-a",),
    "models_of_annotation_version": lambda ids: ("annotations-v1",),
    "test_results": lambda ids: (ids["model"],),
    "model_baseline": lambda ids: (ids["model"],),
    "deployments": lambda ids: ("local",),
    "current_deployment": lambda ids: ("local",),
    "get_tuning_study": lambda ids: ("study-1",),
    "latest_tuning_study": lambda ids: (),
    "tuning_trials": lambda ids: ("study-1",),
}


def test_every_query_is_registered_once_without_a_prefix():
    defined = {
        name
        for name, obj in vars(queries).items()
        if inspect.isfunction(obj)
        and obj.__module__ == queries.__name__
        and not name.startswith("_")
        and next(iter(inspect.signature(obj).parameters), None) == "conn"
    }
    assert defined == set(queries.READS)
    assert all(queries.READS[name].__name__ == name for name in defined)
    assert not [name for name in vars(queries) if name.startswith("_q_")]
    assert set(READ_ARGS) == set(queries.READS)  # every read is exercised below
    with pytest.raises(ValueError, match="two reads"):
        queries.read(queries.get_run)


def test_every_read_is_a_method_of_the_store_and_of_a_transaction(store, populate):
    ids = _fill_every_table(store, populate)
    for name, query in queries.READS.items():
        expected_params = list(inspect.signature(query).parameters.values())[1:]  # without conn
        for cls in (MetadataStore, MetadataTx):
            method = getattr(cls, name)
            assert method.__doc__ == query.__doc__ and method.__doc__, name
            assert list(inspect.signature(getattr(cls, name)).parameters)[0] == "self"
            assert "conn" not in inspect.signature(method).parameters
        assert list(inspect.signature(getattr(store, name)).parameters.values()) == expected_params, name
        args = READ_ARGS[name](ids)
        with store.engine.connect() as conn:
            expected = query(conn, *args)
        assert expected not in (None, [], {}), name  # the data really exercises the read
        assert getattr(store, name)(*args) == expected, name
        with store.transaction() as tx:
            assert list(inspect.signature(getattr(tx, name)).parameters.values()) == expected_params, name
            assert getattr(tx, name)(*args) == expected, name
    # keyword arguments pass through, on both
    assert store.list_training_versions(annotation_version="annotations-v1")[0]["name"] == "training-a"
    with store.transaction() as tx:
        assert tx.deployments(target="elsewhere") == []


def test_help_shows_each_read_with_its_signature_and_docstring():
    text = pydoc.render_doc(MetadataStore, renderer=pydoc.plaintext)
    assert "get_run(self, name" in text and "Return pipeline run ``name`` or None." in text
    assert "tuning_trials(self, study" in text
    assert {name for name in dir(MetadataTx) if not name.startswith("_")} >= set(queries.READS)
