"""Tuning studies in the metadata store, and their best parameters as input of a pipeline run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from alpr.model.training import Hyperparameters
from alpr.tuning.options import TuningOptions
from alpr.tuning.space import SearchSpace


def _settings_json(options: TuningOptions) -> dict:
    """The options worth recording with a study (no image pull secrets or the like exist in them)."""
    keep = (
        "data",
        "max_trials",
        "parallel",
        "max_failed",
        "goal",
        "early_stopping",
        "min_trials_required",
        "start_step",
        "fixed",
        "config",
        "random_state",
        "timeout_s",
        "namespace",
        "image",
    )
    return {k: getattr(options, k) for k in keep}


def start_study(store, backend: str, space: SearchSpace, options: TuningOptions) -> int:
    """Record the start of the study of ``options`` (``tuning_studies`` row); return its id.

    Raises:
        alpr.metadata.AlreadyExists: a study of that name was recorded before.
    """
    with store.transaction() as tx:
        return tx.start_tuning_study(
            options.name,
            backend=backend,
            algorithm=options.algorithm,
            objective=options.objective,
            direction=options.direction,
            search_space=space.to_json(),
            settings=_settings_json(options),
        )


def finish_study(store, outcome) -> int:
    """Record how the study ended (:class:`alpr.tuning.local.TuningOutcome`); return its id."""
    with store.transaction() as tx:
        return tx.finish_tuning_study(
            outcome.name,
            outcome.status,
            best_trial=outcome.best_trial,
            best_value=outcome.best_value,
            best_params=outcome.best_params if outcome.best_trial else None,
            message=outcome.message,
        )


def record_trials(store, study: str, rows: list[dict]) -> int:
    """Record ``rows`` (trials of ``study`` as :func:`alpr.tuning.katib.list_trials` gives them) in one
    transaction; return how many."""
    with store.transaction() as tx:
        for row in rows:
            tx.add_tuning_trial(study, row["name"], **{k: v for k, v in row.items() if k != "name"})
    return len(rows)


def outcome_json(outcome) -> dict:
    """A JSON-able summary of a study's outcome (what ``--katib`` prints and the Tune step returns)."""
    return {
        "study": outcome.name,
        "backend": outcome.backend,
        "status": outcome.status,
        "best_trial": outcome.best_trial,
        "best_value": outcome.best_value,
        "hyperparameters": outcome.best_params,
        "metrics": outcome.best_metrics,
        "message": outcome.message,
    }


def load_tuned_params(ref: str, store=None) -> dict[str, Any]:
    """The hyperparameters a tuning study found, to train with.

    Args:
        ref: ``latest`` (the newest study with a best trial in ``store``), a study name, or a JSON file: either
            ``outcome_json``'s output (its ``hyperparameters``) or a plain ``{field: value}`` object.
        store: the metadata store (for ``latest`` and study names).

    Returns:
        ``{Hyperparameters field: value}``.

    Raises:
        LookupError: no such study, or it has no best trial (the message names it and the store).
        ValueError: the JSON holds keys that are not Hyperparameters fields, or values they refuse.
    """

    path = Path(ref)
    if ref.endswith(".json") or path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"tuned parameters file {ref}: {exc}") from None
        params = data.get("hyperparameters", data) if isinstance(data, dict) else None
        where = f"file {ref}"
    else:
        if store is None:
            raise LookupError(f"tuned parameters {ref!r}: no metadata store to look the study up in")
        study = store.latest_tuning_study() if ref == "latest" else store.get_tuning_study(ref)
        where = f"the metadata store {store.url_for_display}"
        if study is None:
            raise LookupError(
                f"tuned parameters {ref!r}: no {'finished tuning study' if ref == 'latest' else 'study'}"
                f" {'' if ref == 'latest' else repr(ref) + ' '}in {where}"
            )
        params = study["best_params"]
        if params is None:
            raise LookupError(f"tuning study {study['name']!r} ({study['status']}) has no best trial in {where}")
    if not isinstance(params, dict):
        raise ValueError(f"tuned parameters in {where}: expected an object of hyperparameters, got {params!r}")
    fields = {f.name for f in dataclasses.fields(Hyperparameters)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ValueError(
            f"tuned parameters in {where}: {', '.join(unknown)} not Hyperparameters fields "
            f"({', '.join(sorted(fields))})"
        )
    Hyperparameters(**params)  # refuses bad values, naming them
    return dict(params)
