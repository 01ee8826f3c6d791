"""The Train step: a training version → candidate checkpoints, the merged config and their lineage."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alpr import storage
from alpr.model.inference import CHECKPOINT_FILE, CONFIG_FILE, PLATE_DETECTOR_DIR
from alpr.model.reader_data import write_reader_dataset
from alpr.model.training import Hyperparameters, build_config, build_plate_config, train
from alpr.settings import Settings
from alpr.steps.lineage import CandidatesLineage, DatasetLineage, read_lineage
from alpr.steps.runs import marks_run_failed

log = logging.getLogger(__name__)


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
    num_workers: int = 1,
    extra_hooks: list[dict] | None = None,
) -> CandidatesLineage:
    """Train on the training version in ``data_root``; put candidate checkpoints + config into ``out_dir``.

    With ``hp.plate_input_size`` set (the two-stage design), the reader trains on the crops of the readable plates
    (:func:`alpr.model.reader_data.write_reader_dataset`, cut once into the work dir; crops at most twice the
    input size), and a plate detector is trained after it (:func:`alpr.model.training.build_plate_config`) on the
    whole frames; its best checkpoint by val ``mAP@0.5`` and its config go to ``out_dir/plate_detector/``
    (``model.pth``, ``config.py``), and Evaluate puts them into every model directory.

    The hyperparameters are checked first (:func:`resolve_hyperparameters`), before any work. The mmengine work
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
        num_workers: dataloader workers.
        extra_hooks: mmengine hook configs added to the config.

    Returns:
        the lineage of the candidates: training version, hyperparameters, config hash, storage URIs, val metrics.

    Raises:
        ValueError: bad hyperparameters (nothing done, the run is not marked).
        FileNotFoundError, alpr.steps.lineage.LineageError: ``data_root`` is not Record's output.
    """
    return _train(
        settings,
        data_root=data_root,
        out_dir=out_dir,
        run_name=run_name,
        hp=resolve_hyperparameters(hp, hp_override),
        config=config,
        num_workers=num_workers,
        extra_hooks=extra_hooks,
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
) -> CandidatesLineage:
    data = read_lineage(data_root, DatasetLineage)
    work_dir = Path(settings.cache_dir) / "train" / run_name
    reader_root = data_root
    if hp.plate_input_size:
        reader = write_reader_dataset(
            data_root, work_dir.with_name(f"{work_dir.name}.reader-data"), max_side=2 * hp.input_size
        )
        log.info("reader dataset %s: crops %s, plates left out %s", reader.root, reader.crops, reader.skipped)
        reader_root = reader.root
    cfg = build_config(reader_root, work_dir, hp, config=config, num_workers=num_workers)
    if extra_hooks:
        cfg.custom_hooks = [*cfg.get("custom_hooks", []), *extra_hooks]
    result = train(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.config_path, out_dir / "config.py")
    candidates = []
    for ckpt in result.checkpoints:
        shutil.copyfile(ckpt, out_dir / ckpt.name)
        candidates.append(ckpt.name)
    plate_detector = ""
    if hp.plate_input_size:
        plate_cfg = build_plate_config(
            data_root, work_dir.with_name(f"{work_dir.name}.plate"), hp, num_workers=num_workers
        )
        plate = train(plate_cfg)
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
    )
    lineage.write(out_dir)
    return lineage
