"""The metadata store: dataset versions, pipeline runs, models, evaluations and test results, with lineage.

One SQLAlchemy Core (2.x) schema, two backends chosen by the URL alone:

- ``sqlite:///path/to/metadata.db`` -- the embedded default (a laptop, CI); the parent folder is created,
  foreign keys are enforced (``PRAGMA foreign_keys=ON``) and SQLAlchemy, not the ``sqlite3`` driver, issues
  ``BEGIN`` so that a transaction really covers every statement in it.
- ``mysql+pymysql://user@host:3306/db`` -- production (MySQL or MariaDB, InnoDB, ``utf8mb4`` with a binary
  collation so that names compare exactly as on SQLite: case- and accent-sensitive).

The password never needs to be in the URL: when the ``ALPR_DB_PASSWORD`` environment variable is set (and not
empty) it is injected into a non-SQLite URL. The URL is only ever shown redacted
(:attr:`MetadataStore.url_for_display`, ``repr``, error messages, the CLI).

Usage::

    store = MetadataStore("sqlite:///.alpr/metadata.db")
    store.create_schema()
    with store.transaction() as tx:           # one transaction: commit on exit, ROLLBACK on any exception
        tx.add_annotation_version("annotations-v1", git_rev, class_counts, images)
        push_to_dvc()                         # if this raises, the rows above vanish
    store.get_annotation_version("annotations-v1")

Versions and runs are referred to by *name* (the git tag / the pipeline run name), models and evaluations by
their integer id. Every read method exists on both :class:`MetadataStore` (each call opens its own connection)
and :class:`MetadataTx` (reads inside the transaction, seeing its uncommitted rows); both run the same query
functions of this module. Timestamps are timezone-aware UTC :class:`datetime.datetime` values. JSON columns
hold plain JSON values (dicts, lists, str, int, float, bool, None); NaN and infinities are refused there, except in
evaluation metrics where a non-finite value is stored as NULL (read back as ``None``).

Errors: :class:`NotFound` (a :class:`LookupError`) when a named version/run or a model id does not exist,
:class:`AlreadyExists` for a duplicate name, :class:`ValueError` for malformed arguments (a string longer than
its column, an unknown split, a file name that is not part of the annotation version, ...),
:class:`MetadataConnectionError` when the database cannot be reached. All but ``ValueError`` derive from
:class:`MetadataError`.

CLI::

    python -m alpr.metadata init [--url URL]    # create the tables (idempotent); URL defaults to $ALPR_DB_URL
    python -m alpr.metadata show-url [--url URL]  # print the URL with its password hidden
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, Connection, Engine, make_url

__all__ = [
    "DEPLOY_ACTIONS",
    "SPLITS",
    "TUNING_STUDY_STATES",
    "TUNING_TRIAL_STATES",
    "AlreadyExists",
    "MetadataConnectionError",
    "MetadataError",
    "MetadataStore",
    "MetadataTx",
    "NotFound",
    "main",
    "metadata_obj",
]

#: Environment variable holding the database password (injected into the URL, never logged).
PASSWORD_ENV = "ALPR_DB_PASSWORD"
#: Environment variable holding the default store URL of the CLI.
URL_ENV = "ALPR_DB_URL"
#: The dataset splits an image, an evaluation or a test can belong to.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Status a run has between :meth:`MetadataTx.start_run` and :meth:`MetadataTx.finish_run`.
RUN_RUNNING = "running"

_SQLITE_BUSY_TIMEOUT_S = 30.0

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------- errors


class MetadataError(Exception):
    """Base class of the metadata store's own errors."""


class NotFound(MetadataError, LookupError):
    """A version, run or model named in a call does not exist; the message says which."""


class AlreadyExists(MetadataError):
    """A row with the same unique name (or the same unique key) exists; the message names the duplicate."""


class MetadataConnectionError(MetadataError):
    """The database could not be opened or reached; the message shows the URL with its password hidden."""


# --------------------------------------------------------------------------------------------------- schema


class UTCDateTime(sa.types.TypeDecorator):
    """A timestamp stored as naive UTC (microsecond precision on MySQL too) and read back as aware UTC."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.engine.Dialect) -> sa.types.TypeEngine:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: sa.engine.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.engine.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


_NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
#: The schema (SQLAlchemy Core ``MetaData``); :meth:`MetadataStore.create_schema` creates it.
metadata_obj = sa.MetaData(naming_convention=_NAMING)
# InnoDB for foreign keys and transactions; utf8mb4 for any unicode; a binary collation so that unique names and
# lookups are exact (case- and accent-sensitive), as on SQLite.
# (mysql_* options apply to mysql:// URLs, mariadb_* ones to mariadb:// URLs.)
_MYSQL = {
    f"{dialect}_{option}": value
    for dialect in ("mysql", "mariadb")
    for option, value in (("engine", "InnoDB"), ("charset", "utf8mb4"), ("collate", "utf8mb4_bin"))
}
_SPLIT_CHECK = "split IN ('train', 'val', 'test')"


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)


def _created() -> sa.Column:
    return sa.Column("created_at", UTCDateTime, nullable=False)


def _fk(name: str, target: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Integer, sa.ForeignKey(target), nullable=nullable, index=True)


annotation_versions = sa.Table(
    "annotation_versions",
    metadata_obj,
    _id(),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("git_rev", sa.String(64), nullable=False),
    sa.Column("image_count", sa.Integer, nullable=False),
    sa.Column("class_counts", sa.JSON, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    _created(),
    **_MYSQL,
)

images = sa.Table(
    "images",
    metadata_obj,
    _id(),
    _fk("annotation_version_id", "annotation_versions.id"),
    sa.Column("file_name", sa.String(512), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("md5", sa.String(32), nullable=False),
    sa.Column("plate_count", sa.Integer, nullable=False),
    sa.UniqueConstraint("annotation_version_id", "file_name"),
    **_MYSQL,
)

training_versions = sa.Table(
    "training_versions",
    metadata_obj,
    _id(),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    _fk("annotation_version_id", "annotation_versions.id"),
    sa.Column("params_hash", sa.String(64), nullable=False),
    sa.Column("git_rev", sa.String(64), nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("train_fraction", sa.Double, nullable=False),
    sa.Column("val_fraction", sa.Double, nullable=False),
    sa.Column("test_fraction", sa.Double, nullable=False),
    sa.Column("counts", sa.JSON, nullable=False),
    _created(),
    sa.UniqueConstraint("annotation_version_id", "params_hash"),
    **_MYSQL,
)

splits = sa.Table(
    "splits",
    metadata_obj,
    sa.Column("training_version_id", sa.Integer, sa.ForeignKey("training_versions.id"), primary_key=True),
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), primary_key=True, index=True),
    sa.Column("split", sa.String(8), nullable=False),
    sa.CheckConstraint(_SPLIT_CHECK, name="split"),
    **_MYSQL,
)

pipeline_runs = sa.Table(
    "pipeline_runs",
    metadata_obj,
    _id(),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("parameters", sa.JSON, nullable=False),
    sa.Column("host", sa.String(256), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    **_MYSQL,
)

models = sa.Table(
    "models",
    metadata_obj,
    _id(),
    sa.Column("uri", sa.String(1024), nullable=False),
    _fk("training_version_id", "training_versions.id"),
    _fk("run_id", "pipeline_runs.id", nullable=True),
    sa.Column("config_uri", sa.String(1024), nullable=False),
    sa.Column("config_hash", sa.String(64), nullable=False),
    sa.Column("checkpoint", sa.String(256), nullable=False),
    sa.Column("epoch", sa.Integer, nullable=True),
    sa.Column("hyperparameters", sa.JSON, nullable=False),
    sa.Column("selected", sa.Boolean, nullable=False, index=True),
    sa.Column("selection_metric", sa.String(64), nullable=True),
    sa.Column("selection_value", sa.Double, nullable=True),
    sa.Column("selected_at", UTCDateTime, nullable=True),
    _created(),
    **_MYSQL,
)

evaluations = sa.Table(
    "evaluations",
    metadata_obj,
    _id(),
    _fk("model_id", "models.id"),
    _fk("run_id", "pipeline_runs.id", nullable=True),
    sa.Column("split", sa.String(8), nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    _created(),
    sa.CheckConstraint(_SPLIT_CHECK, name="split"),
    **_MYSQL,
)

evaluation_metrics = sa.Table(
    "evaluation_metrics",
    metadata_obj,
    sa.Column("evaluation_id", sa.Integer, sa.ForeignKey("evaluations.id"), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True, index=True),
    sa.Column("value", sa.Double, nullable=True),
    **_MYSQL,
)

test_results = sa.Table(
    "test_results",
    metadata_obj,
    _id(),
    _fk("model_id", "models.id"),
    _fk("run_id", "pipeline_runs.id", nullable=True),
    sa.Column("file_name", sa.String(512), nullable=False),
    sa.Column("truth", sa.JSON, nullable=False),
    sa.Column("reading", sa.JSON, nullable=False),
    sa.Column("exact", sa.Boolean, nullable=False),
    _created(),
    **_MYSQL,
)

# -- deployments (the Deploy step): one row per decision to serve a model, or not, at a serving target ----------

#: What the Deploy step did: served the model, left the served one in place, or tried and failed.
DEPLOY_ACTIONS: tuple[str, ...] = ("deployed", "skipped", "failed")

deployments = sa.Table(
    "deployments",
    metadata_obj,
    _id(),
    _fk("model_id", "models.id"),
    _fk("run_id", "pipeline_runs.id", nullable=True),
    # "local", or "<namespace>/<InferenceService name>" on a cluster
    sa.Column("target", sa.String(256), nullable=False, index=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("new_eir", sa.Double, nullable=True),
    sa.Column("served_eir", sa.Double, nullable=True),
    _fk("served_model_id", "models.id", nullable=True),
    sa.Column("storage_uri", sa.String(1024), nullable=False),
    _created(),
    sa.CheckConstraint("action IN ('deployed', 'skipped', 'failed')", name="action"),
    **_MYSQL,
)


# -- hyperparameter tuning (alpr.tuning): Katib Experiments and their local Optuna twin, with their trials -------

#: States of a tuning study: running, finished (succeeded), failed (too many failed trials, or Katib's Failed),
#: timed out (gave up waiting; the best so far is kept).
TUNING_STUDY_STATES: tuple[str, ...] = ("running", "succeeded", "failed", "timeout")
#: States of a tuning trial (Katib's and Optuna's in one vocabulary: EarlyStopped / PRUNED are "pruned").
TUNING_TRIAL_STATES: tuple[str, ...] = ("running", "succeeded", "pruned", "failed")

tuning_studies = sa.Table(
    "tuning_studies",
    metadata_obj,
    _id(),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("backend", sa.String(16), nullable=False),  # "katib" | "optuna"
    sa.Column("algorithm", sa.String(64), nullable=False),
    sa.Column("objective", sa.String(64), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("search_space", sa.JSON, nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("best_trial", sa.String(128), nullable=True),
    sa.Column("best_value", sa.Double, nullable=True),
    sa.Column("best_params", sa.JSON, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.CheckConstraint("status IN ('running', 'succeeded', 'failed', 'timeout')", name="status"),
    sa.CheckConstraint("direction IN ('maximize', 'minimize')", name="direction"),
    **_MYSQL,
)

tuning_trials = sa.Table(
    "tuning_trials",
    metadata_obj,
    _id(),
    _fk("study_id", "tuning_studies.id"),
    sa.Column("name", sa.String(128), nullable=False),  # Katib's trial name, or "trial-<number>"
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("value", sa.Double, nullable=True),  # the objective (best observation), None if never reported
    sa.Column("metrics", sa.JSON, nullable=False),  # {name: value}: the objective's best, the others' latest
    sa.Column("intermediate", sa.JSON, nullable=False),  # [{"step": n, name: value, ...}] per validation
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("study_id", "name"),
    sa.CheckConstraint("state IN ('running', 'succeeded', 'pruned', 'failed')", name="state"),
    **_MYSQL,
)


# --------------------------------------------------------------------------------------------------- helpers


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _check_json(value: Any, what: str) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not storable as JSON: {exc}") from exc
    return value


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or value != value.strip():
        raise ValueError(f"{what} must be a non-empty string without surrounding whitespace, got {value!r}")
    return value


def _check_int(value: Any, what: str, *, minimum: int | None = 0, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return value


def _check_split(value: Any, what: str = "split") -> str:
    if value not in SPLITS:
        raise ValueError(f"{what} must be one of {', '.join(SPLITS)}; got {value!r}")
    return value


def _check_lengths(table: sa.Table, row: Mapping[str, Any]) -> None:
    """Refuse a string longer than its column (MySQL would refuse it, SQLite would silently store it)."""
    for col in table.c:
        length = getattr(col.type, "length", None)
        value = row.get(col.name)
        if length and isinstance(value, str) and len(value) > length:
            raise ValueError(
                f"{table.name}.{col.name} holds at most {length} characters, got {len(value)}: {value[:80]!r}..."
            )


def _is_duplicate_key(exc: sa.exc.IntegrityError) -> bool:
    orig = exc.orig
    args = getattr(orig, "args", ())
    if args and args[0] == 1062:  # MySQL/MariaDB ER_DUP_ENTRY
        return True
    errname = getattr(orig, "sqlite_errorname", "")
    if errname in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
        return True
    return "UNIQUE constraint failed" in str(orig) or "Duplicate entry" in str(orig)


@contextmanager
def _duplicates_as(message: str) -> Iterator[None]:
    """Translate a unique-key violation inside the block into :class:`AlreadyExists` with ``message``."""
    try:
        yield
    except sa.exc.IntegrityError as exc:
        if _is_duplicate_key(exc):
            raise AlreadyExists(message) from exc
        raise


def _insert(conn: Connection, table: sa.Table, row: Mapping[str, Any]) -> int:
    _check_lengths(table, row)
    result = conn.execute(sa.insert(table), dict(row))
    return int(result.inserted_primary_key[0])


def _insert_many(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    for row in rows:
        _check_lengths(table, row)
    if rows:  # executemany; an empty parameter list would insert one row of defaults
        conn.execute(sa.insert(table), [dict(r) for r in rows])


def _as_dict(row: sa.Row | None) -> dict | None:
    return None if row is None else dict(row._mapping)


# --------------------------------------------------------------------------------------------------- queries
# Every read is a function of a Connection; MetadataStore and MetadataTx both call these.


def _annotation_version_id(conn: Connection, name: str) -> int:
    found = conn.execute(sa.select(annotation_versions.c.id).where(annotation_versions.c.name == name)).scalar()
    if found is None:
        raise NotFound(f"annotation version {name!r} does not exist")
    return int(found)


def _training_version_id(conn: Connection, name: str) -> int:
    found = conn.execute(sa.select(training_versions.c.id).where(training_versions.c.name == name)).scalar()
    if found is None:
        raise NotFound(f"training version {name!r} does not exist")
    return int(found)


def _run_id(conn: Connection, name: str | None) -> int | None:
    if name is None:
        return None
    found = conn.execute(sa.select(pipeline_runs.c.id).where(pipeline_runs.c.name == name)).scalar()
    if found is None:
        raise NotFound(f"pipeline run {name!r} does not exist")
    return int(found)


def _require_model(conn: Connection, model_id: int) -> int:
    model_id = _check_int(model_id, "model_id", minimum=None)
    if conn.execute(sa.select(models.c.id).where(models.c.id == model_id)).scalar() is None:
        raise NotFound(f"model id {model_id} does not exist")
    return model_id


_AV_COLUMNS = [
    annotation_versions.c.id,
    annotation_versions.c.name,
    annotation_versions.c.git_rev,
    annotation_versions.c.image_count,
    annotation_versions.c.class_counts,
    annotation_versions.c.description,
    annotation_versions.c.created_at,
]


def _q_get_annotation_version(conn: Connection, name: str) -> dict | None:
    return _as_dict(conn.execute(sa.select(*_AV_COLUMNS).where(annotation_versions.c.name == name)).first())


def _q_list_annotation_versions(conn: Connection) -> list[dict]:
    query = sa.select(*_AV_COLUMNS).order_by(annotation_versions.c.created_at, annotation_versions.c.id)
    return [dict(r._mapping) for r in conn.execute(query)]


def _q_annotation_images(conn: Connection, name: str) -> list[dict]:
    av_id = _annotation_version_id(conn, name)
    query = (
        sa.select(images.c.id, images.c.file_name, images.c.width, images.c.height, images.c.md5,
                  images.c.plate_count)
        .where(images.c.annotation_version_id == av_id)
        .order_by(images.c.file_name)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def _tv_select() -> sa.Select:
    tv = training_versions
    return sa.select(
        tv.c.id, tv.c.name, annotation_versions.c.name.label("annotation_version"), tv.c.annotation_version_id,
        tv.c.params_hash, tv.c.git_rev, tv.c.seed, tv.c.train_fraction, tv.c.val_fraction, tv.c.test_fraction,
        tv.c.counts, tv.c.created_at,
    ).select_from(tv.join(annotation_versions, tv.c.annotation_version_id == annotation_versions.c.id))


def _tv_dict(row: sa.Row | None) -> dict | None:
    out = _as_dict(row)
    if out is not None:
        out["fractions"] = (out["train_fraction"], out["val_fraction"], out["test_fraction"])
    return out


def _q_get_training_version(conn: Connection, name: str) -> dict | None:
    return _tv_dict(conn.execute(_tv_select().where(training_versions.c.name == name)).first())


def _q_find_training_version(conn: Connection, annotation_version: str, params_hash: str) -> dict | None:
    query = _tv_select().where(
        annotation_versions.c.name == annotation_version, training_versions.c.params_hash == params_hash
    )
    return _tv_dict(conn.execute(query).first())


def _q_list_training_versions(conn: Connection, annotation_version: str | None = None) -> list[dict]:
    query = _tv_select().order_by(training_versions.c.created_at, training_versions.c.id)
    if annotation_version is not None:
        query = query.where(training_versions.c.annotation_version_id
                            == _annotation_version_id(conn, annotation_version))
    return [_tv_dict(r) for r in conn.execute(query)]


def _q_training_splits(conn: Connection, name: str) -> dict[str, str]:
    tv_id = _training_version_id(conn, name)
    query = (
        sa.select(images.c.file_name, splits.c.split)
        .select_from(splits.join(images, splits.c.image_id == images.c.id))
        .where(splits.c.training_version_id == tv_id)
        .order_by(images.c.file_name)
    )
    return {r.file_name: r.split for r in conn.execute(query)}


def _q_get_run(conn: Connection, name: str) -> dict | None:
    return _as_dict(conn.execute(sa.select(pipeline_runs).where(pipeline_runs.c.name == name)).first())


def _model_select() -> sa.Select:
    return sa.select(
        models,
        training_versions.c.name.label("training_version"),
        pipeline_runs.c.name.label("run"),
    ).select_from(
        models.join(training_versions, models.c.training_version_id == training_versions.c.id).outerjoin(
            pipeline_runs, models.c.run_id == pipeline_runs.c.id
        )
    )


def _q_get_model(conn: Connection, model_id: int) -> dict | None:
    return _as_dict(conn.execute(_model_select().where(models.c.id == model_id)).first())


def _evaluation_select() -> sa.Select:
    e = evaluations
    return sa.select(
        e.c.id, e.c.model_id, pipeline_runs.c.name.label("run"), e.c.split, e.c.metrics, e.c.created_at
    ).select_from(e.outerjoin(pipeline_runs, e.c.run_id == pipeline_runs.c.id))


def _q_evaluations(conn: Connection, model_id: int) -> list[dict]:
    model_id = _require_model(conn, model_id)
    query = (
        _evaluation_select()
        .where(evaluations.c.model_id == model_id)
        .order_by(evaluations.c.created_at, evaluations.c.id)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def _q_latest_selected_model(conn: Connection, split: str | None = None) -> dict | None:
    query = (
        _model_select()
        .where(models.c.selected == sa.true())
        .order_by(models.c.selected_at.desc(), models.c.id.desc())
        .limit(1)
    )
    model = _as_dict(conn.execute(query).first())
    if model is None:
        return None
    latest = _evaluation_select().where(evaluations.c.model_id == model["id"])
    if split is not None:
        latest = latest.where(evaluations.c.split == _check_split(split))
    latest = latest.order_by(evaluations.c.created_at.desc(), evaluations.c.id.desc()).limit(1)
    evaluation = _as_dict(conn.execute(latest).first())
    model["evaluation"] = evaluation
    model["metrics"] = dict(evaluation["metrics"]) if evaluation else {}
    return model


def _q_model_lineage(conn: Connection, model_id: int) -> dict:
    model = _q_get_model(conn, _require_model(conn, model_id))
    assert model is not None
    tv = _q_get_training_version(conn, model["training_version"])
    assert tv is not None
    av = _q_get_annotation_version(conn, tv["annotation_version"])
    run = _q_get_run(conn, model["run"]) if model["run"] is not None else None
    return {
        "model": model,
        "uri": model["uri"],
        "config_uri": model["config_uri"],
        "config_hash": model["config_hash"],
        "training_version": tv,
        "annotation_version": av,
        "git_revs": {"training_version": tv["git_rev"], "annotation_version": av["git_rev"]},
        "run": run,
    }


def _q_models_of_training_version(conn: Connection, name: str) -> list[dict]:
    tv_id = _training_version_id(conn, name)
    query = _model_select().where(models.c.training_version_id == tv_id).order_by(models.c.created_at, models.c.id)
    return [dict(r._mapping) for r in conn.execute(query)]


def _q_models_of_annotation_version(conn: Connection, name: str) -> list[dict]:
    av_id = _annotation_version_id(conn, name)
    query = (
        _model_select()
        .where(training_versions.c.annotation_version_id == av_id)
        .order_by(models.c.created_at, models.c.id)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def _q_test_results(conn: Connection, model_id: int) -> list[dict]:
    model_id = _require_model(conn, model_id)
    t = test_results
    query = (
        sa.select(t.c.id, t.c.model_id, pipeline_runs.c.name.label("run"), t.c.file_name, t.c.truth, t.c.reading,
                  t.c.exact, t.c.created_at)
        .select_from(t.outerjoin(pipeline_runs, t.c.run_id == pipeline_runs.c.id))
        .where(t.c.model_id == model_id)
        .order_by(t.c.id)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


# -- deployments


def _deployment_select() -> sa.Select:
    d = deployments
    return sa.select(
        d.c.id, d.c.model_id, pipeline_runs.c.name.label("run"), d.c.target, d.c.action, d.c.reason, d.c.new_eir,
        d.c.served_eir, d.c.served_model_id, d.c.storage_uri, d.c.created_at,
    ).select_from(d.outerjoin(pipeline_runs, d.c.run_id == pipeline_runs.c.id))


def _q_deployments(conn: Connection, target: str | None = None) -> list[dict]:
    query = _deployment_select().order_by(deployments.c.created_at, deployments.c.id)
    if target is not None:
        query = query.where(deployments.c.target == target)
    return [dict(r._mapping) for r in conn.execute(query)]


def _q_current_deployment(conn: Connection, target: str) -> dict | None:
    query = (
        _deployment_select()
        .where(deployments.c.target == target, deployments.c.action == "deployed")
        .order_by(deployments.c.created_at.desc(), deployments.c.id.desc())
        .limit(1)
    )
    return _as_dict(conn.execute(query).first())


# -- hyperparameter tuning


def _tuning_study_id(conn: Connection, name: str) -> int:
    found = conn.execute(sa.select(tuning_studies.c.id).where(tuning_studies.c.name == name)).scalar()
    if found is None:
        raise NotFound(f"tuning study {name!r} does not exist")
    return int(found)


def _q_get_tuning_study(conn: Connection, name: str) -> dict | None:
    return _as_dict(conn.execute(sa.select(tuning_studies).where(tuning_studies.c.name == name)).first())


def _q_latest_tuning_study(conn: Connection) -> dict | None:
    query = (
        sa.select(tuning_studies)
        .where(tuning_studies.c.best_trial.is_not(None))
        .order_by(tuning_studies.c.finished_at.desc(), tuning_studies.c.id.desc())
        .limit(1)
    )
    return _as_dict(conn.execute(query).first())


def _q_tuning_trials(conn: Connection, name: str) -> list[dict]:
    study_id = _tuning_study_id(conn, name)
    t = tuning_trials
    query = sa.select(t).where(t.c.study_id == study_id).order_by(t.c.number, t.c.id)
    return [dict(r._mapping) for r in conn.execute(query)]


def _finite_or_none(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    return number if math.isfinite(number) else None


def _finite_metrics(metrics: Mapping[str, Any], what: str) -> dict[str, float | None]:
    return {_check_name(k, f"{what} name"): _finite_or_none(v, f"{what} {k!r}") for k, v in metrics.items()}


# --------------------------------------------------------------------------------------------------- read API


class _Reads:
    """The read methods, shared by :class:`MetadataStore` and :class:`MetadataTx` (``_read`` differs)."""

    def _read(self, query: Callable[..., T], *args: Any) -> T:  # pragma: no cover - overridden
        raise NotImplementedError

    def get_annotation_version(self, name: str) -> dict | None:
        """Return annotation version ``name`` or None.

        Returns:
            ``{"id", "name", "git_rev", "image_count", "class_counts": {class: instances}, "description",
            "created_at"}``.
        """
        return self._read(_q_get_annotation_version, name)

    def list_annotation_versions(self) -> list[dict]:
        """Return every annotation version (dicts as :meth:`get_annotation_version`), oldest first."""
        return self._read(_q_list_annotation_versions)

    def annotation_images(self, name: str) -> list[dict]:
        """Return the images of annotation version ``name``, sorted by file name.

        Returns:
            ``[{"id", "file_name", "width", "height" (pixels), "md5", "plate_count"}, ...]``.

        Raises:
            NotFound: no annotation version ``name``.
        """
        return self._read(_q_annotation_images, name)

    def get_training_version(self, name: str) -> dict | None:
        """Return training version ``name`` or None.

        Returns:
            ``{"id", "name", "annotation_version" (name), "annotation_version_id", "params_hash", "git_rev",
            "seed", "train_fraction", "val_fraction", "test_fraction", "fractions" (the three as a tuple),
            "counts", "created_at"}``.
        """
        return self._read(_q_get_training_version, name)

    def find_training_version(self, annotation_version: str, params_hash: str) -> dict | None:
        """Return the training version made from ``annotation_version`` with ``params_hash``, or None.

        The dict is shaped as :meth:`get_training_version`'s. An unknown annotation version gives None.
        """
        return self._read(_q_find_training_version, annotation_version, params_hash)

    def list_training_versions(self, annotation_version: str | None = None) -> list[dict]:
        """Return the training versions (of ``annotation_version`` when given), oldest first.

        Raises:
            NotFound: ``annotation_version`` is given and does not exist.
        """
        return self._read(_q_list_training_versions, annotation_version)

    def training_splits(self, name: str) -> dict[str, str]:
        """Return ``{file_name: "train" | "val" | "test"}`` of training version ``name``.

        Raises:
            NotFound: no training version ``name``.
        """
        return self._read(_q_training_splits, name)

    def get_run(self, name: str) -> dict | None:
        """Return pipeline run ``name`` or None.

        Returns:
            ``{"id", "name", "status", "parameters", "host", "started_at", "finished_at" (None while running)}``.
        """
        return self._read(_q_get_run, name)

    def get_model(self, model_id: int) -> dict | None:
        """Return model ``model_id`` or None.

        Returns:
            the ``models`` columns (``id, uri, training_version_id, run_id, config_uri, config_hash, checkpoint,
            epoch, hyperparameters, selected, selection_metric, selection_value, selected_at, created_at``) plus
            ``"training_version"`` and ``"run"`` (names; ``run`` None when the model has no run).
        """
        return self._read(_q_get_model, model_id)

    def latest_selected_model(self, split: str | None = None) -> dict | None:
        """Return the most recently selected model (by selection time), or None if no model was selected.

        Args:
            split: take the latest evaluation on this split only (default: the latest of any split).

        Returns:
            a dict as :meth:`get_model`'s plus ``"evaluation"`` (the model's latest evaluation as
            :meth:`evaluations` gives it, or None) and ``"metrics"`` (that evaluation's metrics, ``{}`` if none).
        """
        return self._read(_q_latest_selected_model, split)

    def model_lineage(self, model_id: int) -> dict:
        """Return where model ``model_id`` came from.

        Returns:
            ``{"model": <get_model>, "uri", "config_uri", "config_hash",
            "training_version": <get_training_version>, "annotation_version": <get_annotation_version>,
            "git_revs": {"training_version": sha, "annotation_version": sha}, "run": <get_run> or None}``.

        Raises:
            NotFound: no model ``model_id``.
        """
        return self._read(_q_model_lineage, model_id)

    def models_of_training_version(self, name: str) -> list[dict]:
        """Return the models trained on training version ``name`` (dicts as :meth:`get_model`), oldest first.

        Raises:
            NotFound: no training version ``name``.
        """
        return self._read(_q_models_of_training_version, name)

    def models_of_annotation_version(self, name: str) -> list[dict]:
        """Return the models trained on any training version of annotation version ``name``, oldest first.

        Raises:
            NotFound: no annotation version ``name``.
        """
        return self._read(_q_models_of_annotation_version, name)

    def evaluations(self, model_id: int) -> list[dict]:
        """Return the evaluations of model ``model_id``, oldest first.

        Returns:
            ``[{"id", "model_id", "run" (name or None), "split", "metrics": {name: float or None}, "created_at"}]``.

        Raises:
            NotFound: no model ``model_id``.
        """
        return self._read(_q_evaluations, model_id)

    def test_results(self, model_id: int) -> list[dict]:
        """Return the per-image test results of model ``model_id`` in insertion order.

        Returns:
            ``[{"id", "model_id", "run", "file_name", "truth": [plate text, ...], "reading": <reading>,
            "exact": bool, "created_at"}]``.

        Raises:
            NotFound: no model ``model_id``.
        """
        return self._read(_q_test_results, model_id)

    # -- deployments

    def deployments(self, target: str | None = None) -> list[dict]:
        """Return the Deploy step's decisions (at ``target`` when given), oldest first.

        Returns:
            ``[{"id", "model_id", "run" (name or None), "target", "action" ("deployed" | "skipped" | "failed"),
            "reason", "new_eir", "served_eir" (None when unknown), "served_model_id" (None when nothing was
            served), "storage_uri", "created_at"}]``.
        """
        return self._read(_q_deployments, target)

    def current_deployment(self, target: str) -> dict | None:
        """Return the latest successful deployment at ``target`` (the model served there now), or None.

        ``target`` is ``"local"`` or ``"<namespace>/<InferenceService name>"``; the dict is shaped as a
        :meth:`deployments` item with ``action == "deployed"``.
        """
        return self._read(_q_current_deployment, target)

    # -- hyperparameter tuning

    def get_tuning_study(self, name: str) -> dict | None:
        """Return tuning study ``name`` or None.

        Returns:
            ``{"id", "name", "backend" ("katib" | "optuna"), "algorithm", "objective", "direction",
            "search_space" (the Katib parameter specs), "settings", "status" (see TUNING_STUDY_STATES), "message",
            "best_trial" (name or None), "best_value", "best_params" (the Hyperparameters to train with, or None),
            "started_at", "finished_at"}``.
        """
        return self._read(_q_get_tuning_study, name)

    def latest_tuning_study(self) -> dict | None:
        """Return the most recently finished tuning study that has a best trial (as :meth:`get_tuning_study`),
        or None."""
        return self._read(_q_latest_tuning_study)

    def tuning_trials(self, study: str) -> list[dict]:
        """Return the trials of tuning study ``study`` by number.

        Returns:
            ``[{"id", "study_id", "name", "number", "state" (see TUNING_TRIAL_STATES), "params", "value" (the
            objective, None if never reported), "metrics", "intermediate": [{"step", <metric>: value}], "message",
            "started_at", "finished_at"}]``.

        Raises:
            NotFound: no study ``study``.
        """
        return self._read(_q_tuning_trials, study)


# --------------------------------------------------------------------------------------------------- transaction


class MetadataTx(_Reads):
    """Writes (and reads) on one connection inside one transaction; made by :meth:`MetadataStore.transaction`.

    Every write method returns the id of the row it created (``add_test_results``: the number of rows). The
    transaction commits when the ``with`` block ends normally and rolls back when it raises; the object cannot
    be used after the block.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn: Connection | None = conn

    @property
    def connection(self) -> Connection:
        """The SQLAlchemy connection of the transaction (for queries this API lacks; keep them parameterized)."""
        if self._conn is None:
            raise MetadataError("the transaction has ended; open a new one with MetadataStore.transaction()")
        return self._conn

    def _read(self, query: Callable[..., T], *args: Any) -> T:
        return query(self.connection, *args)

    def _close(self) -> None:
        self._conn = None

    # -- dataset versions

    def add_annotation_version(
        self,
        name: str,
        git_rev: str,
        class_counts: Mapping[str, int],
        images: Sequence[Mapping[str, Any]],
        description: str = "",
    ) -> int:
        """Register annotation version ``name`` (its git tag) with its images; return its id.

        Args:
            name: version name, equal to the dataset repository's git tag (<= 128 characters).
            git_rev: commit SHA of the tag.
            class_counts: ``{class label: number of shapes}`` over the version.
            images: ``[{"file_name", "width", "height" (pixels), "md5" (hex), "plate_count"}]``; file names unique.
            description: free text.

        Raises:
            AlreadyExists: an annotation version ``name`` exists.
            ValueError: a malformed argument (duplicate file name, missing key, string too long, ...).
        """
        conn = self.connection
        _check_name(name, "annotation version name")
        _check_name(git_rev, "git_rev")
        _check_json(dict(class_counts), "class_counts")
        rows, seen = [], set()
        for i, image in enumerate(images):
            try:
                row = {k: image[k] for k in ("file_name", "width", "height", "md5", "plate_count")}
            except KeyError as exc:
                raise ValueError(f"images[{i}] lacks key {exc.args[0]!r}") from None
            _check_name(row["file_name"], f"images[{i}].file_name")
            if row["file_name"] in seen:
                raise ValueError(f"file name {row['file_name']!r} appears twice in images")
            seen.add(row["file_name"])
            for key in ("width", "height", "plate_count"):
                row[key] = _check_int(row[key], f"images[{i}].{key}")
            rows.append(row)
        if _q_get_annotation_version(conn, name) is not None:
            raise AlreadyExists(f"annotation version {name!r} already exists")
        with _duplicates_as(f"annotation version {name!r} already exists"):
            av_id = _insert(conn, annotation_versions, {
                "name": name, "git_rev": git_rev, "image_count": len(rows), "class_counts": dict(class_counts),
                "description": description or "", "created_at": _now(),
            })
            _insert_many(conn, metadata_obj.tables["images"], [{**r, "annotation_version_id": av_id} for r in rows])
        return av_id

    def add_training_version(
        self,
        name: str,
        annotation_version: str,
        params_hash: str,
        git_rev: str,
        seed: int,
        fractions: tuple[float, float, float],
        counts: Mapping[str, Any],
        splits: Mapping[str, str],
    ) -> int:
        """Register training version ``name`` of ``annotation_version`` with its split assignment; return its id.

        Args:
            name: version name, equal to its git tag (<= 128 characters).
            annotation_version: name of the annotation version it was made from.
            params_hash: hash of the parameters that made it (<= 64 characters); unique per annotation version.
            git_rev: commit SHA of the tag.
            seed: split seed.
            fractions: ``(train, val, test)`` fractions in [0, 1] summing to 1.
            counts: images per split and per-class counts (free JSON).
            splits: ``{file_name: "train" | "val" | "test"}``; file names of images of ``annotation_version``.

        Raises:
            NotFound: no annotation version ``annotation_version``.
            AlreadyExists: a training version ``name``, or one of that annotation version with ``params_hash``.
            ValueError: an unknown file name (named), an unknown split, fractions out of range, ...
        """
        conn = self.connection
        _check_name(name, "training version name")
        _check_name(params_hash, "params_hash")
        _check_name(git_rev, "git_rev")
        seed = _check_int(seed, "seed", minimum=None)
        fractions = tuple(float(f) for f in fractions)
        if len(fractions) != 3 or any(not 0.0 <= f <= 1.0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
            raise ValueError(f"fractions must be three numbers in [0, 1] summing to 1, got {fractions}")
        _check_json(dict(counts), "counts")
        for file_name, split in splits.items():
            _check_split(split, f"split of {file_name!r}")
        av_id = _annotation_version_id(conn, annotation_version)
        image_ids = {
            r.file_name: r.id
            for r in conn.execute(sa.select(images.c.id, images.c.file_name)
                                  .where(images.c.annotation_version_id == av_id))
        }
        unknown = sorted(f for f in splits if f not in image_ids)
        if unknown:
            shown = ", ".join(repr(f) for f in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5
                                                               else "")
            raise ValueError(f"file name(s) not in annotation version {annotation_version!r}: {shown}")
        if _q_get_training_version(conn, name) is not None:
            raise AlreadyExists(f"training version {name!r} already exists")
        existing = _q_find_training_version(conn, annotation_version, params_hash)
        if existing is not None:
            raise AlreadyExists(
                f"annotation version {annotation_version!r} already has a training version with params hash "
                f"{params_hash!r}: {existing['name']!r}"
            )
        with _duplicates_as(f"training version {name!r} (or its params hash {params_hash!r}) already exists"):
            tv_id = _insert(conn, training_versions, {
                "name": name, "annotation_version_id": av_id, "params_hash": params_hash, "git_rev": git_rev,
                "seed": seed, "train_fraction": fractions[0], "val_fraction": fractions[1],
                "test_fraction": fractions[2], "counts": dict(counts), "created_at": _now(),
            })
        _insert_many(conn, metadata_obj.tables["splits"], [
            {"training_version_id": tv_id, "image_id": image_ids[f], "split": s} for f, s in splits.items()
        ])
        return tv_id

    # -- runs

    def start_run(self, name: str, parameters: Mapping[str, Any], host: str) -> int:
        """Record the start of pipeline run ``name`` (status ``"running"``, started now); return its id.

        Args:
            name: the run's unique name (<= 128 characters).
            parameters: the run's parameters (JSON).
            host: where it runs (host name, cluster, ...; <= 256 characters).

        Raises:
            AlreadyExists: a run ``name`` exists.
        """
        conn = self.connection
        _check_name(name, "run name")
        _check_json(dict(parameters), "parameters")
        if _q_get_run(conn, name) is not None:
            raise AlreadyExists(f"pipeline run {name!r} already exists")
        with _duplicates_as(f"pipeline run {name!r} already exists"):
            return _insert(conn, pipeline_runs, {
                "name": name, "status": RUN_RUNNING, "parameters": dict(parameters), "host": host or "",
                "started_at": _now(), "finished_at": None,
            })

    def finish_run(self, name: str, status: str) -> int:
        """Set run ``name``'s final ``status`` (e.g. ``"succeeded"``, ``"failed"``; <= 16 characters) and
        its finish time (now); return its id.

        Raises:
            NotFound: no run ``name``.
        """
        conn = self.connection
        _check_name(status, "status")
        run_id = _run_id(conn, name)
        row = {"status": status, "finished_at": _now()}
        _check_lengths(pipeline_runs, row)
        conn.execute(sa.update(pipeline_runs).where(pipeline_runs.c.id == run_id).values(**row))
        return run_id

    # -- models

    def add_model(
        self,
        uri: str,
        training_version: str,
        run: str | None,
        config_uri: str,
        config_hash: str,
        checkpoint: str,
        epoch: int | None,
        hyperparameters: Mapping[str, Any],
    ) -> int:
        """Register a trained model; return its id.

        Args:
            uri: where the model lives (folder or ``gs://``; <= 1024 characters).
            training_version: name of the training version it was trained on.
            run: name of the pipeline run that trained it, or None.
            config_uri: where its merged mmdetection config lives.
            config_hash: hash of that config (<= 64 characters).
            checkpoint: checkpoint file name (<= 256 characters).
            epoch: the checkpoint's epoch, or None.
            hyperparameters: the training hyperparameters (JSON).

        Raises:
            NotFound: no training version ``training_version`` or no run ``run``.
        """
        conn = self.connection
        _check_name(uri, "uri")
        epoch = _check_int(epoch, "epoch", optional=True)
        _check_json(dict(hyperparameters), "hyperparameters")
        return _insert(conn, models, {
            "uri": uri, "training_version_id": _training_version_id(conn, training_version),
            "run_id": _run_id(conn, run), "config_uri": config_uri or "", "config_hash": config_hash or "",
            "checkpoint": checkpoint or "", "epoch": epoch, "hyperparameters": dict(hyperparameters),
            "selected": False, "selection_metric": None, "selection_value": None, "selected_at": None,
            "created_at": _now(),
        })

    def select_model(self, model_id: int, metric: str, value: float) -> int:
        """Mark model ``model_id`` selected (by ``metric`` = ``value``, selected now); return ``model_id``.

        Earlier selections stay marked; :meth:`latest_selected_model` returns the most recent one.

        Raises:
            NotFound: no model ``model_id``.
        """
        conn = self.connection
        _check_name(metric, "metric")
        model_id = _require_model(conn, model_id)
        value = float(value)
        row = {"selected": True, "selection_metric": metric,
               "selection_value": value if math.isfinite(value) else None, "selected_at": _now()}
        _check_lengths(models, row)
        conn.execute(sa.update(models).where(models.c.id == model_id).values(**row))
        return model_id

    def add_evaluation(self, model_id: int, split: str, metrics: Mapping[str, float], run: str | None = None) -> int:
        """Record an evaluation of model ``model_id`` on ``split``; return its id.

        The metrics go both into ``evaluations.metrics`` (JSON) and ``evaluation_metrics`` (one row per metric),
        in this transaction. A NaN or infinite value is stored as NULL (read back as None).

        Args:
            model_id: the model.
            split: ``"train"``, ``"val"`` or ``"test"``.
            metrics: ``{name (<= 64 characters): value}``, e.g. ``{"eir": 0.93, "bbox_mAP": 0.71}``.
            run: name of the pipeline run that evaluated it, or None.

        Raises:
            NotFound: no model ``model_id`` or no run ``run``.
            ValueError: an unknown split, a value that is not a number.
        """
        conn = self.connection
        _check_split(split)
        clean: dict[str, float | None] = {}
        for key, value in metrics.items():
            _check_name(key, "metric name")
            if isinstance(value, bool):
                raise ValueError(f"metric {key!r} must be a number, got {value!r}")
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"metric {key!r} must be a number, got {value!r}") from None
            clean[key] = number if math.isfinite(number) else None
        model_id = _require_model(conn, model_id)
        evaluation_id = _insert(conn, evaluations, {
            "model_id": model_id, "run_id": _run_id(conn, run), "split": split, "metrics": clean,
            "created_at": _now(),
        })
        _insert_many(conn, evaluation_metrics, [
            {"evaluation_id": evaluation_id, "name": k, "value": v} for k, v in clean.items()
        ])
        return evaluation_id

    def add_test_results(
        self, model_id: int, rows: Sequence[Mapping[str, Any]], run: str | None = None
    ) -> int:
        """Record per-image test results of model ``model_id``; return the number of rows written.

        Args:
            model_id: the model.
            rows: ``[{"file_name", "truth": [plate text, ...], "reading": <PLATE_SPEC reading>, "exact": bool}]``.
            run: name of the pipeline run that tested it, or None.

        Raises:
            NotFound: no model ``model_id`` or no run ``run``.
            ValueError: a row lacks a key or holds something that is not JSON.
        """
        conn = self.connection
        model_id = _require_model(conn, model_id)
        run_id = _run_id(conn, run)
        now = _now()
        out = []
        for i, r in enumerate(rows):
            try:
                row = {k: r[k] for k in ("file_name", "truth", "reading", "exact")}
            except KeyError as exc:
                raise ValueError(f"rows[{i}] lacks key {exc.args[0]!r}") from None
            _check_name(row["file_name"], f"rows[{i}].file_name")
            _check_json(row["truth"], f"rows[{i}].truth")
            _check_json(row["reading"], f"rows[{i}].reading")
            row.update(model_id=model_id, run_id=run_id, exact=bool(row["exact"]), created_at=now)
            out.append(row)
        _insert_many(conn, test_results, out)
        return len(out)

    # -- deployments

    def add_deployment(
        self,
        model_id: int,
        target: str,
        action: str,
        reason: str,
        *,
        new_eir: float | None,
        served_eir: float | None,
        served_model_id: int | None,
        storage_uri: str,
        run: str | None = None,
    ) -> int:
        """Record a Deploy decision for model ``model_id`` at ``target``; return its id.

        Args:
            model_id: the model the decision is about (the newly selected one).
            target: ``"local"`` or ``"<namespace>/<InferenceService name>"`` (<= 256 characters).
            action: ``"deployed"``, ``"skipped"`` or ``"failed"``.
            reason: human-readable reason, with both EIR figures (free text; for ``failed``, the error).
            new_eir: the model's EIR (None when unknown; NaN and infinities are stored as None).
            served_eir: the EIR of the model served at ``target`` before (None when nothing was served).
            served_model_id: that model's id, or None.
            storage_uri: where the model lives (what the server loads; <= 1024 characters).
            run: name of the pipeline run that decided, or None.

        Raises:
            NotFound: no model ``model_id`` / ``served_model_id``, or no run ``run``.
            ValueError: an unknown action, an empty target or reason, a string longer than its column.
        """
        conn = self.connection
        if action not in DEPLOY_ACTIONS:
            raise ValueError(f"action must be one of {', '.join(DEPLOY_ACTIONS)}; got {action!r}")
        _check_name(target, "target")
        _check_name(storage_uri, "storage_uri")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"reason must be a non-empty string, got {reason!r}")
        figures = {}
        for key, value in (("new_eir", new_eir), ("served_eir", served_eir)):
            number = None if value is None else float(value)
            figures[key] = number if number is not None and math.isfinite(number) else None
        return _insert(conn, deployments, {
            "model_id": _require_model(conn, model_id), "run_id": _run_id(conn, run), "target": target,
            "action": action, "reason": reason, **figures,
            "served_model_id": None if served_model_id is None else _require_model(conn, served_model_id),
            "storage_uri": storage_uri, "created_at": _now(),
        })

    # -- hyperparameter tuning

    def start_tuning_study(self, name: str, *, backend: str, algorithm: str, objective: str, direction: str,
                           search_space: Sequence[Mapping[str, Any]], settings: Mapping[str, Any]) -> int:
        """Record the start of tuning study ``name`` (status ``"running"``, started now); return its id.

        Args:
            name: the study's unique name (the Katib Experiment's name; <= 128 characters).
            backend: ``"katib"`` or ``"optuna"``.
            algorithm: the search algorithm (Katib's name: ``random``, ``tpe``, ``bayesianoptimization``).
            objective: the objective metric's name.
            direction: ``"maximize"`` or ``"minimize"``.
            search_space: the Katib parameter specs (JSON).
            settings: the study's other settings (trial counts, fixed hyperparameters, data; JSON).

        Raises:
            AlreadyExists: a study ``name`` exists.
            ValueError: an unknown direction or backend, something that is not JSON.
        """
        conn = self.connection
        _check_name(name, "tuning study name")
        if backend not in ("katib", "optuna"):
            raise ValueError(f"backend must be katib or optuna, got {backend!r}")
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction must be maximize or minimize, got {direction!r}")
        _check_name(algorithm, "algorithm")
        _check_name(objective, "objective")
        _check_json(list(search_space), "search_space")
        _check_json(dict(settings), "settings")
        if _q_get_tuning_study(conn, name) is not None:
            raise AlreadyExists(f"tuning study {name!r} already exists")
        with _duplicates_as(f"tuning study {name!r} already exists"):
            return _insert(conn, tuning_studies, {
                "name": name, "backend": backend, "algorithm": algorithm, "objective": objective,
                "direction": direction, "search_space": list(search_space), "settings": dict(settings),
                "status": "running", "message": "", "best_trial": None, "best_value": None, "best_params": None,
                "started_at": _now(), "finished_at": None,
            })

    def add_tuning_trial(self, study: str, name: str, *, number: int, state: str, params: Mapping[str, Any],
                         value: float | None = None, metrics: Mapping[str, Any] | None = None,
                         intermediate: Sequence[Mapping[str, Any]] = (), message: str = "",
                         started_at: datetime | None = None, finished_at: datetime | None = None) -> int:
        """Record trial ``name`` of tuning study ``study``; return its id.

        Args:
            study: the study's name.
            name: the trial's name, unique in the study (<= 128 characters).
            number: its number in the study (0-based).
            state: one of :data:`TUNING_TRIAL_STATES`.
            params: the searched parameters' values (JSON).
            value: the objective's value (NaN / infinities / None stored as NULL).
            metrics: ``{metric: value}`` (non-finite values stored as None).
            intermediate: ``[{"step": n, metric: value, ...}]``, one per validation (non-finite values as None).
            message: why it failed or was pruned (free text).
            started_at: when it started (timezone-aware), or None.
            finished_at: when it ended (timezone-aware), or None.

        Raises:
            NotFound: no study ``study``.
            AlreadyExists: the study has a trial ``name``.
            ValueError: an unknown state, a value that is not a number, something that is not JSON.
        """
        conn = self.connection
        _check_name(name, "trial name")
        if state not in TUNING_TRIAL_STATES:
            raise ValueError(f"state must be one of {', '.join(TUNING_TRIAL_STATES)}; got {state!r}")
        number = _check_int(number, "number")
        _check_json(dict(params), "params")
        steps = []
        for i, step in enumerate(intermediate):
            steps.append({k: (v if k == "step" else _finite_or_none(v, f"intermediate[{i}].{k}"))
                          for k, v in step.items()})
        _check_json(steps, "intermediate")
        study_id = _tuning_study_id(conn, study)
        with _duplicates_as(f"tuning study {study!r} already has a trial {name!r}"):
            return _insert(conn, tuning_trials, {
                "study_id": study_id, "name": name, "number": number, "state": state, "params": dict(params),
                "value": _finite_or_none(value, "value"), "metrics": _finite_metrics(metrics or {}, "metric"),
                "intermediate": steps, "message": message or "", "started_at": started_at,
                "finished_at": finished_at,
            })

    def finish_tuning_study(self, name: str, status: str, *, best_trial: str | None = None,
                            best_value: float | None = None, best_params: Mapping[str, Any] | None = None,
                            message: str = "") -> int:
        """Set tuning study ``name``'s final ``status`` and best trial (finished now); return its id.

        Args:
            name: the study.
            status: ``"succeeded"``, ``"failed"`` or ``"timeout"``.
            best_trial: the best trial's name (None when no trial reported the objective).
            best_value: its objective value.
            best_params: the hyperparameters to train with (the searched values and the fixed ones; JSON).
            message: what happened (free text; the error for ``failed``/``timeout``).

        Raises:
            NotFound: no study ``name``.
            ValueError: an unknown status, best parameters without a best trial, something that is not JSON.
        """
        conn = self.connection
        if status not in TUNING_STUDY_STATES or status == "running":
            raise ValueError(f"status must be one of succeeded, failed, timeout; got {status!r}")
        if best_params is not None and best_trial is None:
            raise ValueError("best_params given without best_trial")
        if best_params is not None:
            _check_json(dict(best_params), "best_params")
        study_id = _tuning_study_id(conn, name)
        row = {"status": status, "message": message or "", "best_trial": best_trial,
               "best_value": _finite_or_none(best_value, "best_value"),
               "best_params": None if best_params is None else dict(best_params), "finished_at": _now()}
        _check_lengths(tuning_studies, row)
        conn.execute(sa.update(tuning_studies).where(tuning_studies.c.id == study_id).values(**row))
        return study_id


# --------------------------------------------------------------------------------------------------- store


def _resolve_url(url: str | URL) -> URL:
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise ValueError("malformed metadata store URL (expected sqlite:///... or mysql+pymysql://...)") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "mysql", "mariadb"):
        raise ValueError(f"unsupported metadata store backend {backend!r}: use sqlite:/// or mysql+pymysql://")
    password = os.environ.get(PASSWORD_ENV)
    if password and backend != "sqlite":
        parsed = parsed.set(password=password)
    if backend != "sqlite" and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL; None for an in-memory database."""
    database = url.database or ""
    if database.startswith("file:"):  # a SQLite URI filename (uri=true)
        if url.query.get("mode") == "memory":
            return None
        database = database[len("file:"):]
    if not database or database == ":memory:":
        return None
    return Path(database)


class MetadataStore(_Reads):
    """The metadata store at ``url``; nothing is opened until the first call that needs the database.

    Args:
        url: ``sqlite:///path/to/metadata.db`` or ``mysql+pymysql://user@host:3306/db``. The password comes
            from ``$ALPR_DB_PASSWORD`` when set (it overrides one in the URL); ``charset=utf8mb4`` is added to a
            MySQL URL without a charset.
        echo: log every SQL statement (SQLAlchemy ``echo``; parameters are logged, the URL is not).

    Raises:
        ValueError: the URL is malformed, names another backend, or is an in-memory SQLite database (each pooled
            connection would see a different database; use a file, e.g. in ``tmp_path`` for tests).

    The read methods (see :class:`MetadataTx` for writes) each use their own short connection.
    """

    def __init__(self, url: str | URL, *, echo: bool = False) -> None:
        self._url = _resolve_url(url)
        self._display = self._url.render_as_string(hide_password=True)
        kwargs: dict[str, Any] = {
            "echo": echo,
            "json_serializer": _dumps,
            "json_deserializer": json.loads,
        }
        self._sqlite = self._url.get_backend_name() == "sqlite"
        if self._sqlite:
            path = _sqlite_file(self._url)
            if path is None:
                raise ValueError(
                    "an in-memory SQLite metadata store is not supported (every connection of the pool would see "
                    "another database, or share one transaction): use sqlite:///path/to/metadata.db"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            if "timeout" not in self._url.query:
                kwargs["connect_args"] = {"timeout": _SQLITE_BUSY_TIMEOUT_S}
        else:
            kwargs.update(pool_pre_ping=True, pool_recycle=3600)
        self._engine: Engine = sa.create_engine(self._url, **kwargs)
        if self._sqlite:
            event.listen(self._engine, "connect", _sqlite_on_connect)
            event.listen(self._engine, "begin", _sqlite_on_begin)

    def __repr__(self) -> str:
        return f"MetadataStore({self._display!r})"

    @property
    def url_for_display(self) -> str:
        """The URL with its password replaced by ``***`` (safe to log)."""
        return self._display

    @property
    def dialect(self) -> str:
        """The SQLAlchemy dialect name: ``"sqlite"``, ``"mysql"`` (also for MariaDB over mysql+pymysql) ..."""
        return self._engine.dialect.name

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tests and tools; prefer the methods)."""
        return self._engine

    def _connect(self, *, write: bool = False) -> Connection:
        try:
            conn = self._engine.connect()
        except sa.exc.DBAPIError as exc:
            raise MetadataConnectionError(
                f"cannot connect to the metadata store {self._display}: {exc.orig}"
            ) from None
        if write:
            conn.execution_options(alpr_write=True)
        return conn

    def _read(self, query: Callable[..., T], *args: Any) -> T:
        with self._connect() as conn:
            return query(conn, *args)

    def create_schema(self) -> None:
        """Create the tables that do not exist yet (idempotent; existing tables are left as they are).

        Raises:
            MetadataConnectionError: the database cannot be reached.
        """
        with self._connect(write=True) as conn, conn.begin():
            metadata_obj.create_all(conn, checkfirst=True)

    @contextmanager
    def transaction(self) -> Iterator[MetadataTx]:
        """Open a transaction; yield a :class:`MetadataTx` for its writes and reads.

        Commits when the block ends normally; on any exception rolls back every write of the block and re-raises.
        Use it to tie the rows of one step to external side effects (a DVC push, a git tag push): raise from the
        block and the rows vanish.

        Raises:
            MetadataConnectionError: the database cannot be reached.
        """
        with self._connect(write=True) as conn:
            tx = MetadataTx(conn)
            try:
                with conn.begin():
                    yield tx
            finally:
                tx._close()

    def dispose(self) -> None:
        """Close the pooled connections (the store can still be used; it reconnects when needed)."""
        self._engine.dispose()


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 driver, emit BEGIN (see _sqlite_on_begin), so that reads and DDL are
    # inside the transaction too; enforce foreign keys (a per-connection setting, off by default).
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # A writing transaction takes the write lock at once (waiting up to the busy timeout), so that its reads
    # and writes cannot be interleaved with another writer's; plain reads take no lock until they read.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("alpr_write") else "BEGIN")


# --------------------------------------------------------------------------------------------------- CLI


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m alpr.metadata", description="The ALPR metadata store.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("init", "create the tables (idempotent)"),
                            ("show-url", "print the store URL with its password hidden")):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--url", default=os.environ.get(URL_ENV, ""),
                         help=f"store URL (default: ${URL_ENV}); the password comes from ${PASSWORD_ENV}")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI (``init`` / ``show-url``); return the exit status (0 ok, 1 error, 2 no URL)."""
    args = _parse_args(argv)
    if not args.url:
        print(f"error: no store URL: pass --url or set {URL_ENV}", file=sys.stderr)
        return 2
    try:
        store = MetadataStore(args.url)
    except ValueError as exc:  # our own message: it never echoes the URL
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        if args.command == "show-url":
            print(store.url_for_display)
            return 0
        store.create_schema()
        print(f"metadata schema ready at {store.url_for_display}")
        return 0
    except MetadataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.dispose()


if __name__ == "__main__":
    sys.exit(main())
