"""The reads of the metadata store: one pure function per query, over a SQLAlchemy ``Connection``.

Each query is defined once, here, and registered in :data:`READS` by :func:`read`; :class:`Reads` turns every
registered query into a method of the same name, signature (without ``conn``) and docstring, so that
``store.get_run(name)`` (:class:`~alpr.metadata.store.MetadataStore`: a short connection per call) and
``tx.get_run(name)`` (:class:`~alpr.metadata.transaction.MetadataTx`: inside the transaction, seeing its uncommitted
rows) both run :func:`get_run`.

Rows come back as plain dicts (keys listed in each docstring). Versions and runs are referred to by *name*, models
and evaluations by their integer id. Timestamps are timezone-aware UTC :class:`datetime.datetime` values; a
non-finite evaluation metric reads back as ``None``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alpr.metadata import schema
from alpr.metadata.rows import (
    annotation_version_id,
    as_dict,
    check_split,
    fetch_all,
    fetch_one,
    require_model,
    training_version_id,
    tuning_study_id,
)

__all__ = [
    "READS",
    "Reads",
    "annotation_images",
    "current_deployment",
    "deployments",
    "evaluations",
    "find_training_version",
    "get_annotation_version",
    "get_model",
    "get_run",
    "get_training_version",
    "get_tuning_study",
    "latest_selected_model",
    "latest_tuning_study",
    "list_annotation_versions",
    "list_training_versions",
    "model_baseline",
    "model_lineage",
    "models_of_annotation_version",
    "models_of_training_version",
    "read",
    "test_results",
    "training_splits",
    "tuning_trials",
]

Q = TypeVar("Q", bound=Callable[..., Any])
T = TypeVar("T")

#: Every read by name: the query function, and the method of that name on the store and on a transaction.
READS: dict[str, Callable[..., Any]] = {}


def read(query: Q) -> Q:
    """Register ``query`` (a function whose first parameter is the ``Connection``) in :data:`READS`."""
    if query.__name__ in READS:
        raise ValueError(f"two reads named {query.__name__!r}")
    READS[query.__name__] = query
    return query


# --------------------------------------------------------------------------------------------------- dataset versions

_AV_COLUMNS = [
    schema.annotation_versions.c.id,
    schema.annotation_versions.c.name,
    schema.annotation_versions.c.git_rev,
    schema.annotation_versions.c.image_count,
    schema.annotation_versions.c.class_counts,
    schema.annotation_versions.c.description,
    schema.annotation_versions.c.created_at,
]


@read
def get_annotation_version(conn: Connection, name: str) -> dict | None:
    """Return annotation version ``name`` or None.

    Returns:
        ``{"id", "name", "git_rev", "image_count", "class_counts": {class: instances}, "description",
        "created_at"}``.
    """
    av = schema.annotation_versions
    return fetch_one(conn, sa.select(*_AV_COLUMNS).where(av.c.name == name))


@read
def list_annotation_versions(conn: Connection) -> list[dict]:
    """Return every annotation version (dicts as :func:`get_annotation_version`'s), oldest first."""
    av = schema.annotation_versions
    query = sa.select(*_AV_COLUMNS).order_by(av.c.created_at, av.c.id)
    return fetch_all(conn, query)


@read
def annotation_images(conn: Connection, name: str) -> list[dict]:
    """Return the images of annotation version ``name``, sorted by file name.

    Returns:
        ``[{"id", "file_name", "width", "height" (pixels), "md5", "plate_count"}, ...]``.

    Raises:
        NotFound: no annotation version ``name``.
    """
    av_id = annotation_version_id(conn, name)
    im = schema.images
    query = (
        sa.select(im.c.id, im.c.file_name, im.c.width, im.c.height, im.c.md5, im.c.plate_count)
        .where(im.c.annotation_version_id == av_id)
        .order_by(im.c.file_name)
    )
    return fetch_all(conn, query)


def _tv_select() -> sa.Select:
    tv, av = schema.training_versions, schema.annotation_versions
    return sa.select(
        tv.c.id,
        tv.c.name,
        av.c.name.label("annotation_version"),
        tv.c.annotation_version_id,
        tv.c.params_hash,
        tv.c.git_rev,
        tv.c.seed,
        tv.c.train_fraction,
        tv.c.val_fraction,
        tv.c.test_fraction,
        tv.c.counts,
        tv.c.created_at,
    ).select_from(tv.join(av, tv.c.annotation_version_id == av.c.id))


def _tv_dict(row: sa.Row | None) -> dict | None:
    out = as_dict(row)
    if out is not None:
        out["fractions"] = (out["train_fraction"], out["val_fraction"], out["test_fraction"])
    return out


@read
def get_training_version(conn: Connection, name: str) -> dict | None:
    """Return training version ``name`` or None.

    Returns:
        ``{"id", "name", "annotation_version" (name), "annotation_version_id", "params_hash", "git_rev",
        "seed", "train_fraction", "val_fraction", "test_fraction", "fractions" (the three as a tuple),
        "counts", "created_at"}``.
    """
    return _tv_dict(conn.execute(_tv_select().where(schema.training_versions.c.name == name)).first())


@read
def find_training_version(conn: Connection, annotation_version: str, params_hash: str) -> dict | None:
    """Return the training version made from ``annotation_version`` with ``params_hash``, or None.

    The dict is shaped as :func:`get_training_version`'s. An unknown annotation version gives None.
    """
    query = _tv_select().where(
        schema.annotation_versions.c.name == annotation_version,
        schema.training_versions.c.params_hash == params_hash,
    )
    return _tv_dict(conn.execute(query).first())


@read
def list_training_versions(conn: Connection, annotation_version: str | None = None) -> list[dict]:
    """Return the training versions (of ``annotation_version`` when given), oldest first.

    Returns:
        dicts as :func:`get_training_version`'s.

    Raises:
        NotFound: ``annotation_version`` is given and does not exist.
    """
    tv = schema.training_versions
    query = _tv_select().order_by(tv.c.created_at, tv.c.id)
    if annotation_version is not None:
        query = query.where(tv.c.annotation_version_id == annotation_version_id(conn, annotation_version))
    return [_tv_dict(r) for r in conn.execute(query)]


@read
def training_splits(conn: Connection, name: str) -> dict[str, str]:
    """Return ``{file_name: "train" | "val" | "test"}`` of training version ``name``.

    Raises:
        NotFound: no training version ``name``.
    """
    tv_id = training_version_id(conn, name)
    im, sp = schema.images, schema.splits
    query = (
        sa.select(im.c.file_name, sp.c.split)
        .select_from(sp.join(im, sp.c.image_id == im.c.id))
        .where(sp.c.training_version_id == tv_id)
        .order_by(im.c.file_name)
    )
    return {r.file_name: r.split for r in conn.execute(query)}


# --------------------------------------------------------------------------------------------------- runs and models


@read
def get_run(conn: Connection, name: str) -> dict | None:
    """Return pipeline run ``name`` or None.

    Returns:
        ``{"id", "name", "status", "parameters", "host", "started_at", "finished_at" (None while running)}``.
    """
    runs = schema.pipeline_runs
    return fetch_one(conn, sa.select(runs).where(runs.c.name == name))


def _model_select() -> sa.Select:
    m, tv, runs = schema.models, schema.training_versions, schema.pipeline_runs
    return sa.select(m, tv.c.name.label("training_version"), runs.c.name.label("run")).select_from(
        m.join(tv, m.c.training_version_id == tv.c.id).outerjoin(runs, m.c.run_id == runs.c.id)
    )


@read
def get_model(conn: Connection, model_id: int) -> dict | None:
    """Return model ``model_id`` or None.

    Returns:
        the ``models`` columns (``id, uri, training_version_id, run_id, config_uri, config_hash, checkpoint,
        epoch, hyperparameters, selected, selection_metric, selection_value, selected_at, created_at,
        onnx_sha256``) plus
        ``"training_version"`` and ``"run"`` (names; ``run`` None when the model has no run).
    """
    return fetch_one(conn, _model_select().where(schema.models.c.id == model_id))


def _evaluation_select() -> sa.Select:
    e, runs = schema.evaluations, schema.pipeline_runs
    return sa.select(
        e.c.id, e.c.model_id, runs.c.name.label("run"), e.c.split, e.c.metrics, e.c.created_at
    ).select_from(e.outerjoin(runs, e.c.run_id == runs.c.id))


@read
def evaluations(conn: Connection, model_id: int) -> list[dict]:
    """Return the evaluations of model ``model_id``, oldest first.

    Returns:
        ``[{"id", "model_id", "run" (name or None), "split", "metrics": {name: float or None}, "created_at"}]``.

    Raises:
        NotFound: no model ``model_id``.
    """
    model_id = require_model(conn, model_id)
    e = schema.evaluations
    query = _evaluation_select().where(e.c.model_id == model_id).order_by(e.c.created_at, e.c.id)
    return fetch_all(conn, query)


@read
def latest_selected_model(conn: Connection, split: str | None = None) -> dict | None:
    """Return the most recently selected model (by selection time), or None if no model was selected.

    Args:
        conn: the connection.
        split: take the latest evaluation on this split only (default: the latest of any split).

    Returns:
        a dict as :func:`get_model`'s plus ``"evaluation"`` (the model's latest evaluation as
        :func:`evaluations` gives it, or None) and ``"metrics"`` (that evaluation's metrics, ``{}`` if none).

    Raises:
        ValueError: ``split`` is not one of :data:`~alpr.spec.SPLITS`.
    """
    m, e = schema.models, schema.evaluations
    query = _model_select().where(m.c.selected == sa.true()).order_by(m.c.selected_at.desc(), m.c.id.desc()).limit(1)
    model = fetch_one(conn, query)
    if model is None:
        return None
    latest = _evaluation_select().where(e.c.model_id == model["id"])
    if split is not None:
        latest = latest.where(e.c.split == check_split(split))
    latest = latest.order_by(e.c.created_at.desc(), e.c.id.desc()).limit(1)
    evaluation = fetch_one(conn, latest)
    model["evaluation"] = evaluation
    model["metrics"] = dict(evaluation["metrics"]) if evaluation else {}
    return model


@read
def model_lineage(conn: Connection, model_id: int) -> dict:
    """Return where model ``model_id`` came from.

    Returns:
        ``{"model": <get_model>, "uri", "config_uri", "config_hash",
        "training_version": <get_training_version>, "annotation_version": <get_annotation_version>,
        "git_revs": {"training_version": sha, "annotation_version": sha}, "run": <get_run> or None}``.

    Raises:
        NotFound: no model ``model_id``.
    """
    model = get_model(conn, require_model(conn, model_id))
    assert model is not None
    tv = get_training_version(conn, model["training_version"])
    assert tv is not None
    av = get_annotation_version(conn, tv["annotation_version"])
    run = get_run(conn, model["run"]) if model["run"] is not None else None
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


@read
def models_of_training_version(conn: Connection, name: str) -> list[dict]:
    """Return the models trained on training version ``name`` (dicts as :func:`get_model`'s), oldest first.

    Raises:
        NotFound: no training version ``name``.
    """
    tv_id = training_version_id(conn, name)
    m = schema.models
    query = _model_select().where(m.c.training_version_id == tv_id).order_by(m.c.created_at, m.c.id)
    return fetch_all(conn, query)


@read
def models_of_annotation_version(conn: Connection, name: str) -> list[dict]:
    """Return the models trained on any training version of annotation version ``name`` (dicts as
    :func:`get_model`'s), oldest first.

    Raises:
        NotFound: no annotation version ``name``.
    """
    av_id = annotation_version_id(conn, name)
    m = schema.models
    query = (
        _model_select()
        .where(schema.training_versions.c.annotation_version_id == av_id)
        .order_by(m.c.created_at, m.c.id)
    )
    return fetch_all(conn, query)


@read
def test_results(conn: Connection, model_id: int) -> list[dict]:
    """Return the per-image test results of model ``model_id`` in insertion order.

    Returns:
        ``[{"id", "model_id", "run", "file_name", "truth": [plate text, ...], "reading": <reading>,
        "exact": bool, "created_at"}]``.

    Raises:
        NotFound: no model ``model_id``.
    """
    model_id = require_model(conn, model_id)
    t, runs = schema.test_results, schema.pipeline_runs
    query = (
        sa.select(
            t.c.id,
            t.c.model_id,
            runs.c.name.label("run"),
            t.c.file_name,
            t.c.truth,
            t.c.reading,
            t.c.exact,
            t.c.created_at,
        )
        .select_from(t.outerjoin(runs, t.c.run_id == runs.c.id))
        .where(t.c.model_id == model_id)
        .order_by(t.c.id)
    )
    return fetch_all(conn, query)


# --------------------------------------------------------------------------------------------------- deployments


def _deployment_select() -> sa.Select:
    d, runs = schema.deployments, schema.pipeline_runs
    return sa.select(
        d.c.id,
        d.c.model_id,
        runs.c.name.label("run"),
        d.c.target,
        d.c.action,
        d.c.reason,
        d.c.new_eir,
        d.c.served_eir,
        d.c.served_model_id,
        d.c.storage_uri,
        d.c.created_at,
    ).select_from(d.outerjoin(runs, d.c.run_id == runs.c.id))


@read
def deployments(conn: Connection, target: str | None = None) -> list[dict]:
    """Return the Deploy step's decisions (at ``target`` when given), oldest first.

    Returns:
        ``[{"id", "model_id", "run" (name or None), "target", "action" ("deployed" | "skipped" | "failed"),
        "reason", "new_eir", "served_eir" (None when unknown), "served_model_id" (None when nothing was
        served), "storage_uri", "created_at"}]``.
    """
    d = schema.deployments
    query = _deployment_select().order_by(d.c.created_at, d.c.id)
    if target is not None:
        query = query.where(d.c.target == target)
    return fetch_all(conn, query)


@read
def current_deployment(conn: Connection, target: str) -> dict | None:
    """Return the latest successful deployment at ``target`` (the model served there now), or None.

    ``target`` is ``"local"`` or ``"<namespace>/<InferenceService name>"``; the dict is shaped as a
    :func:`deployments` item with ``action == "deployed"``.
    """
    d = schema.deployments
    query = (
        _deployment_select()
        .where(d.c.target == target, d.c.action == "deployed")
        .order_by(d.c.created_at.desc(), d.c.id.desc())
        .limit(1)
    )
    return fetch_one(conn, query)


@read
def model_baseline(conn: Connection, model_id: int) -> dict | None:
    """Return the newest Test-step baseline of model ``model_id`` (see :meth:`MetadataTx.add_model_baseline`), or
    None when none was recorded (or there is no such model).

    Returns:
        ``{"id", "model_id", "run_id", "split", "images", "plates", "valid_plates", "score_edges": [K + 1 floats],
        "score_counts": [K ints], "created_at"}``.
    """
    mb = schema.model_baselines
    query = sa.select(mb).where(mb.c.model_id == model_id).order_by(mb.c.created_at.desc(), mb.c.id.desc()).limit(1)
    return fetch_one(conn, query)


# --------------------------------------------------------------------------------------------------- tuning


@read
def get_tuning_study(conn: Connection, name: str) -> dict | None:
    """Return tuning study ``name`` or None.

    Returns:
        ``{"id", "name", "backend" ("katib" | "optuna"), "algorithm", "objective", "direction",
        "search_space" (the Katib parameter specs), "settings", "status" (see TUNING_STUDY_STATES), "message",
        "best_trial" (name or None), "best_value", "best_params" (the Hyperparameters to train with, or None),
        "started_at", "finished_at"}``.
    """
    studies = schema.tuning_studies
    return fetch_one(conn, sa.select(studies).where(studies.c.name == name))


@read
def latest_tuning_study(conn: Connection) -> dict | None:
    """Return the most recently finished tuning study that has a best trial (as :func:`get_tuning_study`'s),
    or None."""
    studies = schema.tuning_studies
    query = (
        sa.select(studies)
        .where(studies.c.best_trial.is_not(None))
        .order_by(studies.c.finished_at.desc(), studies.c.id.desc())
        .limit(1)
    )
    return fetch_one(conn, query)


@read
def tuning_trials(conn: Connection, study: str) -> list[dict]:
    """Return the trials of tuning study ``study`` by number.

    Returns:
        ``[{"id", "study_id", "name", "number", "state" (see TUNING_TRIAL_STATES), "params", "value" (the
        objective, None if never reported), "metrics", "intermediate": [{"step", <metric>: value}], "message",
        "started_at", "finished_at"}]``.

    Raises:
        NotFound: no study ``study``.
    """
    study_id = tuning_study_id(conn, study)
    t = schema.tuning_trials
    query = sa.select(t).where(t.c.study_id == study_id).order_by(t.c.number, t.c.id)
    return fetch_all(conn, query)


# --------------------------------------------------------------------------------------------------- as methods


def _method(query: Callable[..., T]) -> Callable[..., T]:
    """``query`` as a method: ``self._read(query, *args, **kwargs)``, with its name, docstring and signature
    (``self`` in place of ``conn``)."""

    @functools.wraps(query)
    def method(self: Reads, /, *args: Any, **kwargs: Any) -> T:
        return self._read(query, *args, **kwargs)

    signature = inspect.signature(query)
    params = list(signature.parameters.values())
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__signature__ = signature.replace(parameters=[self_param, *params[1:]])  # type: ignore[attr-defined]
    method.__qualname__ = f"Reads.{query.__name__}"
    return method


def _with_reads(cls: type[Reads]) -> type[Reads]:
    for name, query in READS.items():
        setattr(cls, name, _method(query))
    return cls


@_with_reads
class Reads:
    """Every query of :data:`READS` as a method of the same name (``store.get_run(name)``, ``tx.get_model(id)``).

    A subclass says how a query gets its connection by defining ``_read(query, *args, **kwargs)``. The methods
    are made from the registry (when this module is imported), so that each read is declared once -- the query
    function -- and its method still has its name, signature and docstring for ``help()``, ``dir()``, ``inspect``.
    """

    def _read(self, query: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:  # pragma: no cover - overridden
        raise NotImplementedError
