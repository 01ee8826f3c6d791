"""Fixtures of the metadata store's tests: a store per test module and backend (SQLite file, MariaDB/MySQL),
emptied before each test, and the helpers that fill it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from alpr.metadata import MetadataStore
from alpr.metadata.schema import metadata_obj

#: Tables every store has (the dataset-version, run, model and result tables).
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


@pytest.fixture
def core_tables() -> set[str]:
    """The names of the tables every store has (:data:`TABLES`)."""
    return set(TABLES)


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
        for table in reversed(metadata_obj.sorted_tables):
            conn.execute(sa.delete(table))
    return _module_store


def _images(*names: str) -> list[dict]:
    return [
        {"file_name": n, "width": 640 + i, "height": 480, "md5": f"{i:032x}", "plate_count": i % 3}
        for i, n in enumerate(names)
    ]


@pytest.fixture
def make_images() -> Callable[..., list[dict]]:
    """``make_images("a.jpg", ...)``: image rows for ``add_annotation_version`` (sizes, md5 and plate counts
    derived from the position)."""
    return _images


@pytest.fixture
def row_counts() -> Callable[[MetadataStore], dict[str, int]]:
    """``row_counts(store)``: ``{table: number of rows}`` over :data:`TABLES`."""

    def count(store: MetadataStore) -> dict[str, int]:
        with store.engine.connect() as conn:
            return {
                t: conn.execute(sa.select(sa.func.count()).select_from(metadata_obj.tables[t])).scalar()
                for t in sorted(TABLES)
            }

    return count


@pytest.fixture
def populate() -> Callable[[MetadataStore], dict]:
    """``populate(store)``: annotations-v1 (3 images) -> training-a -> run-1 -> model (evaluated on val, not
    selected); returns the ids ``{"av", "tv", "run", "model", "evaluation"}``."""

    def fill(store: MetadataStore) -> dict:
        with store.transaction() as tx:
            av = tx.add_annotation_version(
                "annotations-v1",
                "a" * 40,
                {"A": 3, "plate_one_line": 2},
                _images("a.jpg", "b.jpg", "c.jpg"),
                description="first",
            )
            tv = tx.add_training_version(
                "training-a",
                "annotations-v1",
                params_hash="h" * 64,
                git_rev="b" * 40,
                seed=7,
                fractions=(0.6, 0.2, 0.2),
                counts={"train": 1, "val": 1, "test": 1, "classes": {"A": 3}},
                splits={"a.jpg": "train", "b.jpg": "val", "c.jpg": "test"},
            )
            run = tx.start_run("run-1", {"epochs": 2, "lr": 0.01}, "laptop")
            model = tx.add_model(
                "file:///m/1",
                "training-a",
                "run-1",
                "file:///m/1/config.py",
                "c" * 64,
                "epoch_2.pth",
                2,
                {"lr": 0.01, "batch": 8},
            )
            ev = tx.add_evaluation(model, "val", {"eir": 0.5, "bbox_mAP": 0.25}, run="run-1")
            tx.finish_run("run-1", "succeeded")
        return {"av": av, "tv": tv, "run": run, "model": model, "evaluation": ev}

    return fill


@pytest.fixture
def assert_utc_recent() -> Callable[[datetime], None]:
    """``assert_utc_recent(ts)``: ``ts`` is timezone-aware UTC and within five minutes of now."""

    def check(ts: datetime) -> None:
        assert ts.tzinfo is not None and ts.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - ts) < timedelta(minutes=5)

    return check
