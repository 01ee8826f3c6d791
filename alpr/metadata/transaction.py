"""The writes of the metadata store: :class:`MetadataTx`, one transaction on one connection.

Made by :meth:`MetadataStore.transaction() <alpr.metadata.store.MetadataStore.transaction>`; it also has every
read of :mod:`~alpr.metadata.queries` as a method, run inside the transaction (seeing its uncommitted rows).
Each write validates its arguments before it touches the database (``ValueError`` names the argument), looks
up the versions and runs it refers to by name (:class:`~alpr.metadata.errors.NotFound`), and refuses a
duplicate name (:class:`~alpr.metadata.errors.AlreadyExists`). JSON values must be plain JSON (no NaN or
infinities), except metrics, where a non-finite value is stored as NULL.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alpr.metadata import queries, schema
from alpr.metadata.errors import AlreadyExists, MetadataError
from alpr.metadata.rows import (
    annotation_version_id,
    check_int,
    check_json,
    check_lengths,
    check_name,
    check_sha256,
    check_split,
    duplicates_as,
    finite_metrics,
    finite_or_none,
    insert,
    insert_many,
    require_model,
    run_id,
    training_version_id,
    tuning_study_id,
)
from alpr.metadata.schema import (
    DEPLOY_ACTIONS,
    RUN_RUNNING,
    TUNING_BACKENDS,
    TUNING_DIRECTIONS,
    TUNING_STUDY_STATES,
    TUNING_TRIAL_STATES,
    annotation_versions,
    deployments,
    evaluation_metrics,
    evaluations,
    model_baselines,
    models,
    pipeline_runs,
    test_results,
    training_versions,
    tuning_studies,
    tuning_trials,
)

__all__ = ["MetadataTx"]

T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


class MetadataTx(queries.Reads):
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

    def _read(self, query: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return query(self.connection, *args, **kwargs)

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
        check_name(name, "annotation version name")
        check_name(git_rev, "git_rev")
        check_json(dict(class_counts), "class_counts")
        rows, seen = [], set()
        for i, image in enumerate(images):
            try:
                row = {k: image[k] for k in ("file_name", "width", "height", "md5", "plate_count")}
            except KeyError as exc:
                raise ValueError(f"images[{i}] lacks key {exc.args[0]!r}") from None
            check_name(row["file_name"], f"images[{i}].file_name")
            if row["file_name"] in seen:
                raise ValueError(f"file name {row['file_name']!r} appears twice in images")
            seen.add(row["file_name"])
            for key in ("width", "height", "plate_count"):
                row[key] = check_int(row[key], f"images[{i}].{key}")
            rows.append(row)
        if queries.get_annotation_version(conn, name) is not None:
            raise AlreadyExists(f"annotation version {name!r} already exists")
        with duplicates_as(f"annotation version {name!r} already exists"):
            av_id = insert(
                conn,
                annotation_versions,
                {
                    "name": name,
                    "git_rev": git_rev,
                    "image_count": len(rows),
                    "class_counts": dict(class_counts),
                    "description": description or "",
                    "created_at": _now(),
                },
            )
            insert_many(conn, schema.images, [{**r, "annotation_version_id": av_id} for r in rows])
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
        check_name(name, "training version name")
        check_name(params_hash, "params_hash")
        check_name(git_rev, "git_rev")
        seed = check_int(seed, "seed", minimum=None)
        fractions = tuple(float(f) for f in fractions)
        if len(fractions) != 3 or any(not 0.0 <= f <= 1.0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
            raise ValueError(f"fractions must be three numbers in [0, 1] summing to 1, got {fractions}")
        check_json(dict(counts), "counts")
        for file_name, split in splits.items():
            check_split(split, f"split of {file_name!r}")
        av_id = annotation_version_id(conn, annotation_version)
        image_ids = {
            r.file_name: r.id
            for r in conn.execute(
                sa.select(schema.images.c.id, schema.images.c.file_name).where(
                    schema.images.c.annotation_version_id == av_id
                )
            )
        }
        unknown = sorted(f for f in splits if f not in image_ids)
        if unknown:
            shown = ", ".join(repr(f) for f in unknown[:5]) + (
                f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            )
            raise ValueError(f"file name(s) not in annotation version {annotation_version!r}: {shown}")
        if queries.get_training_version(conn, name) is not None:
            raise AlreadyExists(f"training version {name!r} already exists")
        existing = queries.find_training_version(conn, annotation_version, params_hash)
        if existing is not None:
            raise AlreadyExists(
                f"annotation version {annotation_version!r} already has a training version with params hash "
                f"{params_hash!r}: {existing['name']!r}"
            )
        with duplicates_as(f"training version {name!r} (or its params hash {params_hash!r}) already exists"):
            tv_id = insert(
                conn,
                training_versions,
                {
                    "name": name,
                    "annotation_version_id": av_id,
                    "params_hash": params_hash,
                    "git_rev": git_rev,
                    "seed": seed,
                    "train_fraction": fractions[0],
                    "val_fraction": fractions[1],
                    "test_fraction": fractions[2],
                    "counts": dict(counts),
                    "created_at": _now(),
                },
            )
        insert_many(
            conn,
            schema.splits,
            [{"training_version_id": tv_id, "image_id": image_ids[f], "split": s} for f, s in splits.items()],
        )
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
        check_name(name, "run name")
        check_json(dict(parameters), "parameters")
        if queries.get_run(conn, name) is not None:
            raise AlreadyExists(f"pipeline run {name!r} already exists")
        with duplicates_as(f"pipeline run {name!r} already exists"):
            return insert(
                conn,
                pipeline_runs,
                {
                    "name": name,
                    "status": RUN_RUNNING,
                    "parameters": dict(parameters),
                    "host": host or "",
                    "started_at": _now(),
                    "finished_at": None,
                },
            )

    def finish_run(self, name: str, status: str) -> int:
        """Set run ``name``'s final ``status`` (e.g. ``"succeeded"``, ``"failed"``; <= 16 characters) and
        its finish time (now); return its id.

        Raises:
            NotFound: no run ``name``.
        """
        conn = self.connection
        check_name(status, "status")
        run_pk = run_id(conn, name)
        row = {"status": status, "finished_at": _now()}
        check_lengths(pipeline_runs, row)
        conn.execute(sa.update(pipeline_runs).where(pipeline_runs.c.id == run_pk).values(**row))
        return run_pk

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
        check_name(uri, "uri")
        epoch = check_int(epoch, "epoch", optional=True)
        check_json(dict(hyperparameters), "hyperparameters")
        return insert(
            conn,
            models,
            {
                "uri": uri,
                "training_version_id": training_version_id(conn, training_version),
                "run_id": run_id(conn, run),
                "config_uri": config_uri or "",
                "config_hash": config_hash or "",
                "checkpoint": checkpoint or "",
                "epoch": epoch,
                "hyperparameters": dict(hyperparameters),
                "selected": False,
                "selection_metric": None,
                "selection_value": None,
                "selected_at": None,
                "created_at": _now(),
            },
        )

    def select_model(self, model_id: int, metric: str, value: float) -> int:
        """Mark model ``model_id`` selected (by ``metric`` = ``value``, selected now); return ``model_id``.

        Earlier selections stay marked; :meth:`latest_selected_model` returns the most recent one.

        Raises:
            NotFound: no model ``model_id``.
        """
        conn = self.connection
        check_name(metric, "metric")
        model_id = require_model(conn, model_id)
        value = float(value)
        row = {
            "selected": True,
            "selection_metric": metric,
            "selection_value": value if math.isfinite(value) else None,
            "selected_at": _now(),
        }
        check_lengths(models, row)
        conn.execute(sa.update(models).where(models.c.id == model_id).values(**row))
        return model_id

    def set_model_export(self, model_id: int, onnx_sha256: str) -> int:
        """Record the SHA-256 of model ``model_id``'s ONNX export (``models.onnx_sha256``); return ``model_id``.

        Raises:
            NotFound: no model ``model_id``.
            ValueError: ``onnx_sha256`` is not 64 lower-case hex digits.
        """
        conn = self.connection
        check_sha256(onnx_sha256, "onnx_sha256")
        model_id = require_model(conn, model_id)
        conn.execute(sa.update(models).where(models.c.id == model_id).values(onnx_sha256=onnx_sha256))
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
        check_split(split)
        clean: dict[str, float | None] = {}
        for key, value in metrics.items():
            check_name(key, "metric name")
            if value is None:  # refused here (a missing figure), unlike NaN
                raise ValueError(f"metric {key!r} must be a number, got {value!r}")
            clean[key] = finite_or_none(value, f"metric {key!r}")
        model_id = require_model(conn, model_id)
        evaluation_id = insert(
            conn,
            evaluations,
            {
                "model_id": model_id,
                "run_id": run_id(conn, run),
                "split": split,
                "metrics": clean,
                "created_at": _now(),
            },
        )
        insert_many(
            conn,
            evaluation_metrics,
            [{"evaluation_id": evaluation_id, "name": k, "value": v} for k, v in clean.items()],
        )
        return evaluation_id

    def add_test_results(self, model_id: int, rows: Sequence[Mapping[str, Any]], run: str | None = None) -> int:
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
        model_id = require_model(conn, model_id)
        run_pk = run_id(conn, run)
        now = _now()
        out = []
        for i, r in enumerate(rows):
            try:
                row = {k: r[k] for k in ("file_name", "truth", "reading", "exact")}
            except KeyError as exc:
                raise ValueError(f"rows[{i}] lacks key {exc.args[0]!r}") from None
            check_name(row["file_name"], f"rows[{i}].file_name")
            check_json(row["truth"], f"rows[{i}].truth")
            check_json(row["reading"], f"rows[{i}].reading")
            row.update(model_id=model_id, run_id=run_pk, exact=bool(row["exact"]), created_at=now)
            out.append(row)
        insert_many(conn, test_results, out)
        return len(out)

    def add_model_baseline(
        self,
        model_id: int,
        split: str,
        *,
        images: int,
        plates: int,
        valid_plates: int,
        score_edges: Sequence[float],
        score_counts: Sequence[int],
        run: str | None = None,
    ) -> int:
        """Record how model ``model_id`` read ``split`` (the Test step): the reference the monitor's drift gauges
        compare live readings with (:mod:`alpr.monitoring.baseline`); return its id.

        Args:
            model_id: the model.
            split: the split read (one of :data:`~alpr.spec.SPLITS`).
            images: images read.
            plates: plates read.
            valid_plates: plates whose text is valid (PLATE_SPEC's pattern), at most ``plates``.
            score_edges: the plate-score histogram's bin edges (K + 1 ascending finite numbers).
            score_counts: plates per bin (K non-negative integers adding up to ``plates``).
            run: name of the pipeline run that tested it, or None.

        Raises:
            NotFound: no model ``model_id`` or no run ``run``.
            ValueError: naming the argument: an unknown split, a negative count, ``valid_plates > plates``, edges
                not ascending, counts not one fewer than the edges or not adding up to ``plates``.
        """
        conn = self.connection
        check_split(split)
        images = check_int(images, "images")
        plates = check_int(plates, "plates")
        valid_plates = check_int(valid_plates, "valid_plates")
        if valid_plates > plates:  # type: ignore[operator]
            raise ValueError(f"valid_plates ({valid_plates}) exceeds plates ({plates})")
        edges = [finite_or_none(e, f"score_edges[{i}]") for i, e in enumerate(score_edges)]
        if len(edges) < 2 or None in edges or edges != sorted(set(edges)):  # type: ignore[type-var]
            raise ValueError(f"score_edges must be at least two ascending finite numbers, got {list(score_edges)!r}")
        counts = [check_int(c, f"score_counts[{i}]") for i, c in enumerate(score_counts)]
        if len(counts) != len(edges) - 1 or sum(counts) != plates:  # type: ignore[arg-type]
            raise ValueError(
                f"score_counts must have {len(edges) - 1} bins adding up to plates ({plates}), got {counts!r}"
            )
        model_id = require_model(conn, model_id)
        return insert(
            conn,
            model_baselines,
            {
                "model_id": model_id,
                "run_id": run_id(conn, run),
                "split": split,
                "images": images,
                "plates": plates,
                "valid_plates": valid_plates,
                "score_edges": edges,
                "score_counts": counts,
                "created_at": _now(),
            },
        )

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
        check_name(target, "target")
        check_name(storage_uri, "storage_uri")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"reason must be a non-empty string, got {reason!r}")
        figures = {}
        for key, value in (("new_eir", new_eir), ("served_eir", served_eir)):
            number = None if value is None else float(value)
            figures[key] = number if number is not None and math.isfinite(number) else None
        return insert(
            conn,
            deployments,
            {
                "model_id": require_model(conn, model_id),
                "run_id": run_id(conn, run),
                "target": target,
                "action": action,
                "reason": reason,
                **figures,
                "served_model_id": None if served_model_id is None else require_model(conn, served_model_id),
                "storage_uri": storage_uri,
                "created_at": _now(),
            },
        )

    # -- hyperparameter tuning

    def start_tuning_study(
        self,
        name: str,
        *,
        backend: str,
        algorithm: str,
        objective: str,
        direction: str,
        search_space: Sequence[Mapping[str, Any]],
        settings: Mapping[str, Any],
    ) -> int:
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
        check_name(name, "tuning study name")
        if backend not in TUNING_BACKENDS:
            raise ValueError(f"backend must be {' or '.join(TUNING_BACKENDS)}, got {backend!r}")
        if direction not in TUNING_DIRECTIONS:
            raise ValueError(f"direction must be {' or '.join(TUNING_DIRECTIONS)}, got {direction!r}")
        check_name(algorithm, "algorithm")
        check_name(objective, "objective")
        check_json(list(search_space), "search_space")
        check_json(dict(settings), "settings")
        if queries.get_tuning_study(conn, name) is not None:
            raise AlreadyExists(f"tuning study {name!r} already exists")
        with duplicates_as(f"tuning study {name!r} already exists"):
            return insert(
                conn,
                tuning_studies,
                {
                    "name": name,
                    "backend": backend,
                    "algorithm": algorithm,
                    "objective": objective,
                    "direction": direction,
                    "search_space": list(search_space),
                    "settings": dict(settings),
                    "status": "running",
                    "message": "",
                    "best_trial": None,
                    "best_value": None,
                    "best_params": None,
                    "started_at": _now(),
                    "finished_at": None,
                },
            )

    def add_tuning_trial(
        self,
        study: str,
        name: str,
        *,
        number: int,
        state: str,
        params: Mapping[str, Any],
        value: float | None = None,
        metrics: Mapping[str, Any] | None = None,
        intermediate: Sequence[Mapping[str, Any]] = (),
        message: str = "",
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
    ) -> int:
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
        check_name(name, "trial name")
        if state not in TUNING_TRIAL_STATES:
            raise ValueError(f"state must be one of {', '.join(TUNING_TRIAL_STATES)}; got {state!r}")
        number = check_int(number, "number")
        check_json(dict(params), "params")
        steps = []
        for i, step in enumerate(intermediate):
            steps.append(
                {k: (v if k == "step" else finite_or_none(v, f"intermediate[{i}].{k}")) for k, v in step.items()}
            )
        check_json(steps, "intermediate")
        study_id = tuning_study_id(conn, study)
        with duplicates_as(f"tuning study {study!r} already has a trial {name!r}"):
            return insert(
                conn,
                tuning_trials,
                {
                    "study_id": study_id,
                    "name": name,
                    "number": number,
                    "state": state,
                    "params": dict(params),
                    "value": finite_or_none(value, "value"),
                    "metrics": finite_metrics(metrics or {}, "metric"),
                    "intermediate": steps,
                    "message": message or "",
                    "started_at": started_at,
                    "finished_at": finished_at,
                },
            )

    def finish_tuning_study(
        self,
        name: str,
        status: str,
        *,
        best_trial: str | None = None,
        best_value: float | None = None,
        best_params: Mapping[str, Any] | None = None,
        message: str = "",
    ) -> int:
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
        final = [state for state in TUNING_STUDY_STATES if state != "running"]
        if status not in final:
            raise ValueError(f"status must be one of {', '.join(final)}; got {status!r}")
        if best_params is not None and best_trial is None:
            raise ValueError("best_params given without best_trial")
        if best_params is not None:
            check_json(dict(best_params), "best_params")
        study_id = tuning_study_id(conn, name)
        row = {
            "status": status,
            "message": message or "",
            "best_trial": best_trial,
            "best_value": finite_or_none(best_value, "best_value"),
            "best_params": None if best_params is None else dict(best_params),
            "finished_at": _now(),
        }
        check_lengths(tuning_studies, row)
        conn.execute(sa.update(tuning_studies).where(tuning_studies.c.id == study_id).values(**row))
        return study_id
