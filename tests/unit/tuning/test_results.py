"""Tuning studies and trials in the metadata store, against an SQLite file and the real MariaDB/MySQL server."""

from datetime import UTC, datetime

import pytest

from alpr.metadata import AlreadyExists, MetadataStore, NotFound

SPACE = [
    {
        "name": "lr",
        "parameterType": "double",
        "feasibleSpace": {"min": "0.0005", "max": "0.01", "distribution": "logUniform"},
    }
]


@pytest.fixture
def store(db_url):
    s = MetadataStore(db_url)
    s.create_schema()
    yield s
    s.dispose()


def _start(store, name="study-1", backend="optuna"):
    with store.transaction() as tx:
        return tx.start_tuning_study(
            name,
            backend=backend,
            algorithm="tpe",
            objective="eir",
            direction="maximize",
            search_space=SPACE,
            settings={"max_trials": 3, "fixed": {"epochs": 2}},
        )


def test_a_study_with_its_trials_and_best(store):
    study_id = _start(store)
    t0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    with store.transaction() as tx:
        tx.add_tuning_trial(
            "study-1",
            "trial-0",
            number=0,
            state="succeeded",
            params={"lr": 0.003},
            value=0.7,
            metrics={"eir": 0.7, "mAP": 0.5, "loss": 1.25},
            intermediate=[{"step": 1, "eir": 0.4, "loss": float("nan")}, {"step": 2, "eir": 0.7}],
            started_at=t0,
            finished_at=t0,
        )
        tx.add_tuning_trial(
            "study-1",
            "trial-1",
            number=1,
            state="pruned",
            params={"lr": 0.0006},
            value=float("nan"),
            metrics={"eir": None},
            message="worse than the median",
        )
    study = store.get_tuning_study("study-1")
    assert study["id"] == study_id and study["status"] == "running" and study["finished_at"] is None
    assert study["search_space"] == SPACE and study["settings"]["fixed"] == {"epochs": 2}
    assert store.latest_tuning_study() is None  # no best trial yet
    with store.transaction() as tx:
        tx.finish_tuning_study(
            "study-1",
            "succeeded",
            best_trial="trial-0",
            best_value=0.7,
            best_params={"lr": 0.003, "epochs": 2},
            message="2 trials",
        )
    study = store.get_tuning_study("study-1")
    assert (study["status"], study["best_trial"], study["best_value"]) == ("succeeded", "trial-0", 0.7)
    assert study["best_params"] == {"lr": 0.003, "epochs": 2} and study["finished_at"] is not None
    assert store.latest_tuning_study()["name"] == "study-1"
    rows = store.tuning_trials("study-1")
    assert [(r["name"], r["state"], r["value"]) for r in rows] == [
        ("trial-0", "succeeded", 0.7),
        ("trial-1", "pruned", None),
    ]
    assert rows[0]["intermediate"] == [{"step": 1, "eir": 0.4, "loss": None}, {"step": 2, "eir": 0.7}]
    assert rows[0]["started_at"] == t0 and rows[1]["message"] == "worse than the median"


def test_the_latest_study_is_the_last_finished_with_a_best_trial(store):
    for name, best in (("a", "t"), ("b", "t"), ("c", None)):
        _start(store, name)
        with store.transaction() as tx:
            tx.finish_tuning_study(
                name, "succeeded" if best else "failed", best_trial=best, best_params={"lr": 0.1} if best else None
            )
    assert store.latest_tuning_study()["name"] == "b"


def test_bad_writes_are_refused_and_leave_nothing(store):
    _start(store)
    with pytest.raises(AlreadyExists, match="tuning study 'study-1' already exists"):
        _start(store)
    with pytest.raises(NotFound, match="tuning study 'nope'"), store.transaction() as tx:
        tx.add_tuning_trial("nope", "t", number=0, state="succeeded", params={})
    with pytest.raises(ValueError, match="state must be one of"), store.transaction() as tx:
        tx.add_tuning_trial("study-1", "t", number=0, state="COMPLETE", params={})
    with pytest.raises(ValueError, match="metric 'eir' must be a number"), store.transaction() as tx:
        tx.add_tuning_trial("study-1", "t", number=0, state="succeeded", params={}, metrics={"eir": "high"})
    with pytest.raises(ValueError, match="direction must be"), store.transaction() as tx:
        tx.start_tuning_study(
            "s2", backend="optuna", algorithm="tpe", objective="eir", direction="up", search_space=[], settings={}
        )
    with pytest.raises(ValueError, match="status must be one of"), store.transaction() as tx:
        tx.finish_tuning_study("study-1", "running")
    with pytest.raises(ValueError, match="best_params given without best_trial"), store.transaction() as tx:
        tx.finish_tuning_study("study-1", "succeeded", best_params={"lr": 1})
    with store.transaction() as tx:
        tx.add_tuning_trial("study-1", "t", number=0, state="failed", params={})
    with pytest.raises(AlreadyExists, match="already has a trial 't'"), store.transaction() as tx:
        tx.add_tuning_trial("study-1", "t", number=1, state="failed", params={})
    # One transaction: a failure after a trial was written rolls the trial back too.
    with pytest.raises(ValueError), store.transaction() as tx:
        tx.add_tuning_trial("study-1", "u", number=2, state="failed", params={})
        tx.finish_tuning_study("study-1", "bogus")
    assert [r["name"] for r in store.tuning_trials("study-1")] == ["t"]
    assert store.get_tuning_study("study-1")["status"] == "running"
