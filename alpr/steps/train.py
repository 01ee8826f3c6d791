"""The Train step: a training version → candidate checkpoints, the merged config and their lineage."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alpr import storage
from alpr.kubeflow.trainjob import LABEL_PREFIX, TrainJobRequest, run_trainjob, trainjob_name
from alpr.model import distributed
from alpr.model.distributed import TrainScale
from alpr.model.inference import CHECKPOINT_FILE, CONFIG_FILE, PLATE_DETECTOR_DIR, trained_crop_geometry
from alpr.model.reader_data import write_reader_dataset
from alpr.model.training import (
    Hyperparameters,
    TrainResult,
    build_config,
    build_plate_config,
    leaf_config,
    train,
)
from alpr.model.warm_start import WarmStart, fetch_warm_start, set_load_from
from alpr.settings import Settings
from alpr.steps.lineage import LINEAGE_FILE, CandidatesLineage, DatasetLineage, read_lineage
from alpr.steps.runs import marks_run_failed

log = logging.getLogger(__name__)

#: Where a distributed training (``TrainScale.distributed``) runs: ``local`` (torchrun on this machine), ``trainjob``
#: (a Kubeflow Trainer TrainJob on the cluster), ``auto`` (``trainjob`` in a pod of a cluster, else ``local``).
TRAIN_LAUNCHERS = ("auto", "local", "trainjob")
#: The environment variable that chooses among :data:`TRAIN_LAUNCHERS` (default ``auto``).
TRAIN_LAUNCHER_ENV = "ALPR_TRAIN_LAUNCHER"


def train_launcher(environ: Mapping[str, str] | None = None) -> str:
    """``local`` or ``trainjob``: ``$ALPR_TRAIN_LAUNCHER`` when set to one of them; with ``auto`` or unset,
    ``trainjob`` in a pod of a cluster (``KUBERNETES_SERVICE_HOST`` set, as Kubernetes sets it in every pod), else
    ``local``.

    Raises:
        ValueError: ``$ALPR_TRAIN_LAUNCHER`` is not one of :data:`TRAIN_LAUNCHERS`.
    """
    env = os.environ if environ is None else environ
    chosen = env.get(TRAIN_LAUNCHER_ENV, "auto") or "auto"
    if chosen not in TRAIN_LAUNCHERS:
        raise ValueError(f"{TRAIN_LAUNCHER_ENV}={chosen!r}: not one of {', '.join(TRAIN_LAUNCHERS)}")
    if chosen == "auto":
        return "trainjob" if env.get("KUBERNETES_SERVICE_HOST") else "local"
    return chosen


def resolve_hyperparameters(hp: Hyperparameters | Mapping[str, Any], hp_override: str = "") -> Hyperparameters:
    """The hyperparameters to train with: ``hp``, with the fields of ``hp_override`` replacing its own.

    Args:
        hp: the pipeline's hyperparameters, or a mapping of :class:`~alpr.model.training.Hyperparameters` fields.
        hp_override: a JSON object of hyperparameters (the Tune step's output, :attr:`TuneResult.hp_override
            <alpr.steps.lineage.TuneResult.hp_override>`); ``""``: none.

    Raises:
        ValueError: ``hp_override`` is not a JSON object, or names a field that is not a hyperparameter (the
            message starts with ``hp_override:``); a value out of range (see ``Hyperparameters``).
    """
    given = dataclasses.asdict(hp) if isinstance(hp, Hyperparameters) else dict(hp)
    if hp_override:
        try:
            override = json.loads(hp_override)
        except ValueError as exc:
            raise ValueError(f"hp_override: not JSON ({exc}): {hp_override[:200]!r}") from None
        if not isinstance(override, dict):
            raise ValueError(f"hp_override: not a JSON object: {hp_override[:200]!r}")
        unknown = sorted(set(override) - {f.name for f in dataclasses.fields(Hyperparameters)})
        if unknown:
            raise ValueError(f"hp_override: {', '.join(unknown)} are not hyperparameters")
        log.info("hyperparameters from Tune: %s", override)
        given.update(override)
    return Hyperparameters(**given)


def train_step(
    settings: Settings,
    *,
    data_root: Path,
    out_dir: Path,
    run_name: str,
    hp: Hyperparameters | Mapping[str, Any],
    config: str,
    hp_override: str = "",
    load_from: str = "",
    num_workers: int = 1,
    extra_hooks: list[dict] | None = None,
    scale: TrainScale | None = None,
) -> CandidatesLineage:
    """Train on the training version in ``data_root``; put candidate checkpoints + config into ``out_dir``.

    With ``hp.plate_input_size`` set (the two-stage design), the reader trains on the crops of the readable plates
    (:func:`alpr.model.reader_data.write_reader_dataset`, cut once into the work dir in the crop geometry of the
    ``config``'s ``PlateZoomCrop``, :func:`alpr.model.inference.trained_crop_geometry`; crops at most twice the
    input size), and a plate detector is trained after it (:func:`alpr.model.training.build_plate_config`) on the
    whole frames; its best checkpoint by val ``mAP@0.5`` and its config go to ``out_dir/plate_detector/``
    (``model.pth``, ``config.py``), and Evaluate puts them into every model directory.

    With ``load_from`` (a warm start, :mod:`alpr.model.warm_start`) the reader starts from that model's weights and
    the plate detector from its plate detector's (from random weights when it has none); each is checked to fit
    its config before it trains.

    The hyperparameters are checked first (:func:`resolve_hyperparameters`) and ``load_from`` fetched (into
    ``<cache>/warm-start/<run_name>``), before any work. The mmengine work
    dir lives in the workspace cache (``<cache>/train/<run_name>``) so that a killed step resumes from its last
    checkpoint when re-run. Checkpoints, merged config and TensorBoard logs are published to
    ``<storage>/runs/<run_name>/train`` and ``<storage>/tensorboard/<run_name>``. ``extra_hooks`` (mmengine hook
    configs) are appended to the config's ``custom_hooks`` (the training benchmark's timed snapshots, the tuner's
    metric reporter). A failure after the check marks the run failed.

    Args:
        data_root: Record's folder (a :class:`~alpr.steps.lineage.DatasetLineage`).
        out_dir: receives ``config.py``, the candidate ``*.pth`` and ``lineage.json``.
        run_name: the pipeline run.
        hp: the hyperparameters (or a mapping of their fields); ``hp_override`` replaces some of them.
        config: leaf config file in ``configs/``.
        hp_override: see :func:`resolve_hyperparameters`.
        load_from: a model directory, storage URI or ``latest`` to start from; ``""``: random weights.
        num_workers: dataloader workers.
        extra_hooks: mmengine hook configs added to the config.
        scale: workers and GPUs per worker (default one process, in this one).

    Returns:
        the lineage of the candidates: training version, hyperparameters, config hash, storage URIs, val metrics.

    Raises:
        ValueError: bad hyperparameters or ``$ALPR_TRAIN_LAUNCHER`` (nothing done, the run is not marked); a warm
            start's checkpoint that does not fit the config (marks the run failed).
        alpr.model.inference.ModelError: ``load_from`` is ``latest`` and no model was selected yet, or names no
            model directory (nothing done, the run is not marked).
        FileNotFoundError, alpr.steps.lineage.LineageError: ``data_root`` is not Record's output.
        alpr.kubeflow.trainjob.TrainJobError: a distributed training's TrainJob failed (with the operator's reason),
            was cancelled or could not be created; RuntimeError: a local torchrun failed. Either marks the run failed.
    """
    hp = resolve_hyperparameters(hp, hp_override)
    scale = scale or TrainScale()
    launcher = train_launcher() if scale.distributed else "local"
    warm = None
    if load_from:
        warm = fetch_warm_start(load_from, Path(settings.cache_dir) / "warm-start" / run_name, db_url=settings.db_url)
        log.info("warm start from %s", warm.uri)
    return _train(
        settings,
        data_root=data_root,
        out_dir=out_dir,
        run_name=run_name,
        hp=hp,
        config=config,
        num_workers=num_workers,
        extra_hooks=extra_hooks,
        scale=scale,
        launcher=launcher,
        warm=warm,
    )


@marks_run_failed
def _train(
    settings: Settings,
    *,
    data_root: Path,
    out_dir: Path,
    run_name: str,
    hp: Hyperparameters,
    config: str,
    num_workers: int,
    extra_hooks: list[dict] | None,
    scale: TrainScale,
    launcher: str,
    warm: WarmStart | None,
) -> CandidatesLineage:
    data = read_lineage(data_root, DatasetLineage)
    work_dir = Path(settings.cache_dir) / "train" / run_name
    if scale.distributed and launcher == "trainjob":
        data_root = _shared_copy(data_root, work_dir.with_name(f"{work_dir.name}.data"))
    reader_root = data_root
    if hp.plate_input_size:
        reader = write_reader_dataset(
            data_root,
            work_dir.with_name(f"{work_dir.name}.reader-data"),
            max_side=2 * hp.input_size,
            geometry=trained_crop_geometry(leaf_config(config)),
        )
        log.info("reader dataset %s: crops %s, plates left out %s", reader.root, reader.crops, reader.skipped)
        reader_root = reader.root
    cfg = build_config(reader_root, work_dir, hp, config=config, num_workers=num_workers)
    plate_cfg = None
    if hp.plate_input_size:  # built (and a warm start checked) before the reader trains for an hour
        plate_cfg = build_plate_config(
            data_root, work_dir.with_name(f"{work_dir.name}.plate"), hp, num_workers=num_workers
        )
    if warm is not None:
        set_load_from(cfg, warm.reader)
        if plate_cfg is not None and warm.plate_detector is not None:
            set_load_from(plate_cfg, warm.plate_detector)
        elif plate_cfg is not None:
            log.warning("warm start: %s has no plate detector; the plate detector starts from random weights", warm.uri)
    if extra_hooks:
        cfg.custom_hooks = [*cfg.get("custom_hooks", []), *extra_hooks]
    result = _fit(cfg, scale, launcher=launcher, run_name=run_name, part="train")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.config_path, out_dir / "config.py")
    candidates = []
    for ckpt in result.checkpoints:
        shutil.copyfile(ckpt, out_dir / ckpt.name)
        candidates.append(ckpt.name)
    plate_detector = ""
    if plate_cfg is not None:
        plate = _fit(plate_cfg, scale, launcher=launcher, run_name=run_name, part="plate")
        best = [c for c in plate.checkpoints if c.name.startswith("best_")] or plate.checkpoints[-1:]
        if not best:
            raise RuntimeError(f"plate detector training in {plate.work_dir} saved no checkpoint")
        plate_dir = out_dir / PLATE_DETECTOR_DIR
        plate_dir.mkdir(exist_ok=True)
        shutil.copyfile(plate.config_path, plate_dir / CONFIG_FILE)
        shutil.copyfile(best[-1], plate_dir / CHECKPOINT_FILE)
        plate_detector = PLATE_DETECTOR_DIR
        log.info("plate detector %s (val %s)", best[-1].name, plate.val_metrics)
    store = storage.open_storage(settings.storage_uri)
    train_uri = store.join("runs", run_name, "train")
    storage.publish(out_dir, train_uri)
    tb_uri = None
    if result.tensorboard_dir is not None:
        tb_uri = store.join("tensorboard", run_name)
        storage.publish(result.tensorboard_dir, tb_uri)
    lineage = CandidatesLineage(
        annotation_version=data.annotation_version,
        training_version=data.training_version,
        git_rev=data.git_rev,
        hyperparameters=dataclasses.asdict(hp),
        config=config,
        config_hash=result.config_hash,
        candidates=candidates,
        train_uri=train_uri,
        tensorboard_uri=tb_uri,
        val_metrics=result.val_metrics,
        run_name=run_name,
        plate_detector=plate_detector,
        load_from=warm.uri if warm is not None else "",
    )
    lineage.write(out_dir)
    return lineage


def _fit(cfg, scale: TrainScale, *, launcher: str, run_name: str, part: str) -> TrainResult:
    """Train ``cfg``: in this process (one process), under torchrun here (``local``), or in a TrainJob named after
    the run and ``part`` (the same name on a retry of the step, which then follows the TrainJob it created)."""
    if not scale.distributed:
        return train(cfg)
    if launcher == "local":
        return distributed.run_local(cfg, scale)
    config_path = distributed.prepare_config(cfg, scale)
    command = distributed.torchrun_command(config_path, scale, standalone=False)
    outcome = run_trainjob(
        TrainJobRequest(
            name=trainjob_name(run_name, part),
            command=command,
            workers=scale.workers,
            gpus_per_worker=scale.gpus_per_worker,
        ),
        labels={f"{LABEL_PREFIX}/run": run_name},
    )
    log.info("TrainJob %s/%s: %s after %.0f s", outcome.namespace, outcome.name, outcome.condition, outcome.duration_s)
    return distributed.collect_result(cfg)


def _shared_copy(data_root: Path, target: Path) -> Path:
    """Copy Record's folder to ``target`` (on the workspace PVC, which a TrainJob's pods mount) once; a complete
    copy of an earlier attempt (with its ``lineage.json``) is reused. Returns ``target``."""
    if (target / LINEAGE_FILE).is_file():
        return target
    partial = target.with_name(f"{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(data_root, partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target
