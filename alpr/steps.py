"""The pipeline's steps as plain functions: Record, Train, Evaluate, Test.

The KFP components in ``components/`` are thin wrappers around these (typed signature, artifacts); the work,
the metadata rows and the lineage live here so they can be tested directly. Each step writes a ``lineage.json``
into its output folder, which the next step reads: the chain annotation version → training version → model.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from alpr.settings import Settings

log = logging.getLogger(__name__)

LINEAGE_FILE = "lineage.json"
#: Status a run gets when one of its steps raises (see :func:`marks_run_failed`).
RUN_FAILED = "failed"

StepFn = TypeVar("StepFn", bound=Callable)


def read_lineage(folder: Path) -> dict:
    """The ``lineage.json`` of an artifact folder.

    Raises:
        FileNotFoundError: ``folder`` is not an artifact written by a step of this pipeline.
    """
    path = Path(folder) / LINEAGE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: {folder} was not written by this pipeline")
    return json.loads(path.read_text())


def _write_lineage(folder: Path, lineage: dict) -> None:
    (Path(folder) / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2, sort_keys=True, default=str))


def finite_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics with NaN replaced by 0.0 for sinks that reject NaN (KFP Metrics); the DB keeps NaN as NULL."""
    return {k: (0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)) for k, v in metrics.items()}


def _store(settings: Settings):
    from alpr.metadata import MetadataStore

    store = MetadataStore(settings.db_url)
    store.create_schema()
    return store


def ensure_run(settings: Settings, run_name: str, parameters: dict, host: str = "local") -> None:
    """Create the ``pipeline_runs`` row of ``run_name`` unless it exists (steps may be retried)."""
    store = _store(settings)
    if store.get_run(run_name) is None:
        from alpr.metadata import AlreadyExists

        try:
            with store.transaction() as tx:
                tx.start_run(run_name, parameters, host)
        except AlreadyExists:
            pass


def mark_run_failed(settings: Settings, run_name: str | None) -> bool:
    """Set run ``run_name``'s status to :data:`RUN_FAILED` (with its finish time) if it is recorded and still
    running; return whether it was changed.

    Never raises: a store that cannot be reached is logged as a warning, so the step's own error is what the
    user sees.
    """
    if not run_name:
        return False
    try:
        from alpr.metadata import RUN_RUNNING

        store = _store(settings)
        run = store.get_run(run_name)
        if run is None or run["status"] != RUN_RUNNING:
            return False
        with store.transaction() as tx:
            tx.finish_run(run_name, RUN_FAILED)
        log.info("run %s marked %s", run_name, RUN_FAILED)
        return True
    except Exception as exc:  # the step's own error matters more than this bookkeeping
        log.warning("could not mark run %s %s: %s", run_name, RUN_FAILED, exc)
        return False


def marks_run_failed(step: StepFn) -> StepFn:
    """Decorate a step ``step(settings, *, run_name=..., ...)``: when it raises (an interrupt included), its
    ``pipeline_runs`` row is set to :data:`RUN_FAILED` by :func:`mark_run_failed`, then the error propagates.

    Without it a failed run would stay ``running`` in the metadata store forever. A step retried later (KFP
    retries) that succeeds still ends the run ``succeeded``: Test's :meth:`finish_run` is the last word.
    """

    @functools.wraps(step)
    def wrapper(settings: Settings, *args, **kwargs):
        try:
            return step(settings, *args, **kwargs)
        except BaseException:
            mark_run_failed(settings, kwargs.get("run_name"))
            raise

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------- Record
@marks_run_failed
def record_step(settings: Settings, *, annotation_version: str, fractions: tuple[float, float, float], seed: int,
                run_name: str, out_dir: Path, progress: bool = False) -> dict:
    """Record the training version of ``annotation_version`` and copy it (COCO + images) into ``out_dir``.

    Returns:
        lineage: annotation/training versions, git revision, image and per-class counts.
    """
    from alpr.versions import record_training_version

    ensure_run(settings, run_name, {"annotation_version": annotation_version, "fractions": list(fractions),
                                    "seed": seed})
    tv = record_training_version(settings, annotation_version, fractions=fractions, seed=seed, out_dir=Path(out_dir),
                                 progress=progress)
    lineage = {
        "annotation_version": tv.annotation_version,
        "training_version": tv.name,
        "git_rev": tv.git_rev,
        "dataset_repo": settings.dataset_repo,
        "counts": tv.counts,
        "created": tv.created,
        "run_name": run_name,
    }
    _write_lineage(out_dir, lineage)
    return lineage


# --------------------------------------------------------------------------------------------- Train
@marks_run_failed
def train_step(settings: Settings, *, data_root: Path, out_dir: Path, run_name: str, hp, config: str,
               num_workers: int = 1, extra_hooks: list[dict] | None = None) -> dict:
    """Train on the training version in ``data_root``; put candidate checkpoints + config into ``out_dir``.

    The mmengine work dir lives in the workspace cache (``<cache>/train/<run_name>``) so that a killed step
    resumes from its last checkpoint when re-run. Checkpoints, merged config and TensorBoard logs are published
    to ``<storage>/runs/<run_name>/train`` and ``<storage>/tensorboard/<run_name>``. ``extra_hooks`` (mmengine
    hook configs) are appended to the config's ``custom_hooks`` (the training benchmark's timed snapshots, the
    tuner's metric reporter).

    Returns:
        lineage of the candidates: training version, hyperparameters, config hash, storage URIs, val metrics.
    """
    from dataclasses import asdict

    from alpr import storage
    from alpr.training import build_config, train

    data_lineage = read_lineage(data_root)
    work_dir = Path(settings.cache_dir) / "train" / run_name
    cfg = build_config(data_root, work_dir, hp, config=config, num_workers=num_workers)
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
    store = storage.open_storage(settings.storage_uri)
    train_uri = store.join("runs", run_name, "train")
    storage.publish(out_dir, train_uri)
    tb_uri = None
    if result.tensorboard_dir is not None:
        tb_uri = store.join("tensorboard", run_name)
        storage.publish(result.tensorboard_dir, tb_uri)
    lineage = {
        **{k: data_lineage[k] for k in ("annotation_version", "training_version", "git_rev")},
        "hyperparameters": asdict(hp),
        "config": config,
        "config_hash": result.config_hash,
        "candidates": candidates,
        "train_uri": train_uri,
        "tensorboard_uri": tb_uri,
        "val_metrics": result.val_metrics,
        "run_name": run_name,
    }
    _write_lineage(out_dir, lineage)
    return lineage


# --------------------------------------------------------------------------------------------- Evaluate
@marks_run_failed
def evaluate_step(settings: Settings, *, data_root: Path, candidates_dir: Path, out_dir: Path, run_name: str,
                  selection_metric: str = "eir") -> dict:
    """Evaluate every candidate checkpoint on the val split, select one, publish and record it.

    Every candidate becomes a ``models`` row with its evaluation; the selected one gets its reading thresholds
    chosen on the val split (:func:`tune_reading`; its val reading metrics are those at the chosen thresholds), is
    marked selected and published as a model directory (:mod:`alpr.inference`) to ``<storage>/runs/<run_name>/model``, which is also
    copied into ``out_dir``.

    Returns:
        {"metrics": val metrics of the selected checkpoint, "candidates": {name: metrics}, "model_uri": …,
        "model_id": …, "checkpoint": …} and the lineage keys.
    """
    from alpr import storage
    from alpr.evaluation import evaluate_checkpoint, select_best
    from alpr.inference import write_model_dir

    candidates_dir = Path(candidates_dir)
    lineage = read_lineage(candidates_dir)
    config_path = candidates_dir / "config.py"
    results = {name: evaluate_checkpoint(config_path, candidates_dir / name, data_root, "val")
               for name in lineage["candidates"]}
    best = select_best(results, selection_metric)
    store = _store(settings)
    root = storage.open_storage(settings.storage_uri)
    model_uri = root.join("runs", run_name, "model")
    out_dir = Path(out_dir)
    meta = {"lineage": {k: v for k, v in lineage.items() if k != "candidates"}, "checkpoint": best,
            "val_metrics": results[best], "selection_metric": selection_metric}
    write_model_dir(out_dir, config_path, candidates_dir / best, meta)
    thresholds, tuned = tune_reading(out_dir, data_root, "val")
    results[best] = {**results[best], **tuned}
    with store.transaction() as tx:
        ids = {}
        for name, metrics in results.items():
            ids[name] = tx.add_model(
                uri=model_uri if name == best else f"{lineage['train_uri']}/{name}",
                training_version=lineage["training_version"], run=run_name,
                config_uri=f"{lineage['train_uri']}/config.py", config_hash=lineage["config_hash"],
                checkpoint=name, epoch=_epoch_of(name), hyperparameters=lineage["hyperparameters"],
            )
            tx.add_evaluation(ids[name], "val", metrics, run=run_name)
        tx.select_model(ids[best], selection_metric, results[best].get(selection_metric))
        storage.publish(out_dir, model_uri)
    out = {**lineage, "metrics": results[best], "candidates": results, "model_uri": model_uri,
           "model_id": ids[best], "checkpoint": best, "selection_metric": selection_metric}
    out.pop("val_metrics", None)
    _write_lineage(out_dir, out)
    return out


#: Zoom settings Evaluate tries on val (:class:`alpr.inference.PlateReader` ``zoom_below_px``; 0 = one pass).
ZOOM_CHOICES = (0, 96, 160, 320)


def tune_reading(model_dir: Path, data_root: Path, split: str = "val") -> tuple[dict, dict]:
    """Choose the model's reading settings on ``split`` and store them in its ``model.json``.

    The detector runs once over the split for all of :data:`ZOOM_CHOICES`
    (:meth:`alpr.inference.PlateReader.detect_files_zoom_choices`); for each,
    :func:`alpr.evaluation.sweep_reading_thresholds` sweeps :data:`alpr.evaluation.THRESHOLD_GRID` on those
    detections; the best EIR wins (ties: plate precision, character accuracy, then the cheaper zoom). Writes
    ``thresholds``, ``zoom_below_px`` and the sweep tables (``threshold_sweep``) into ``model.json`` and updates its
    ``val_metrics``.

    Returns:
        ``(settings {"plate_score_thr", "char_score_thr", "zoom_below_px"}, reading metrics at those settings:
        eir, plate_precision, char_accuracy)``; two empty dicts when the split has no images.
    """
    from alpr.evaluation import sweep_reading_thresholds
    from alpr.inference import METADATA_FILE, PlateReader

    model_dir, data_root = Path(model_dir), Path(data_root)
    images = json.loads((data_root / "annotations" / f"{split}.json").read_text())["images"]
    if not images:
        return {}, {}
    reader = PlateReader(model_dir)
    paths = [data_root / img["file_name"] for img in images]
    truths = [img.get("plates", []) for img in images]
    tables, best = {}, None
    by_zoom = reader.detect_files_zoom_choices(paths, ZOOM_CHOICES)  # one first pass for all choices
    for zoom in ZOOM_CHOICES:
        thresholds, table = sweep_reading_thresholds(by_zoom[zoom], truths)
        row = next(r for r in table if r["plate_score_thr"] == thresholds["plate_score_thr"]
                   and r["char_score_thr"] == thresholds["char_score_thr"])
        tables[str(zoom)] = table
        key = tuple(-math.inf if math.isnan(row[k]) else row[k] for k in ("eir", "plate_precision", "char_accuracy"))
        log.info("zoom_below_px=%d on %s: %s → %s", zoom, split, thresholds, row)
        if best is None or key > best[0]:
            best = (key, {**thresholds, "zoom_below_px": zoom}, row)
    _, settings, row = best
    tuned = {k: row[k] for k in ("eir", "plate_precision", "char_accuracy")}
    meta_path = model_dir / METADATA_FILE
    meta = json.loads(meta_path.read_text())
    meta["thresholds"] = {k: settings[k] for k in ("plate_score_thr", "char_score_thr")}
    meta["zoom_below_px"] = settings["zoom_below_px"]
    meta["threshold_sweep"] = {"split": split, "by_zoom_below_px": tables}
    meta["val_metrics"] = {**meta.get("val_metrics", {}), **tuned}
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    log.info("reading settings chosen on %s: %s → %s", split, settings, tuned)
    return settings, tuned


def _epoch_of(checkpoint: str) -> int | None:
    import re

    m = re.search(r"epoch_(\d+)", checkpoint)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------------------------- Test
@marks_run_failed
def test_step(settings: Settings, *, data_root: Path, model_dir: Path, report_dir: Path, run_name: str,
              split: str = "test") -> dict:
    """Read the ``split`` images with the selected model, write the HTML report (also published to
    ``<storage>/runs/<run_name>/report``), record the results.

    Returns:
        {"metrics": {eir, plate_precision, char_accuracy, mAP, mAP_50}, "images": n, "report": path,
        "report_uri": storage URI of the report folder}.
    """
    from alpr.evaluation import evaluate_checkpoint
    from alpr.inference import CHECKPOINT_FILE, CONFIG_FILE, PlateReader
    from alpr.metrics import PlateMetrics
    from alpr.reading import plate_texts
    from alpr.report import ReportEntry, write_report

    model_dir, data_root = Path(model_dir), Path(data_root)
    lineage = read_lineage(model_dir)
    ann = json.loads((data_root / "annotations" / f"{split}.json").read_text())
    images = ann["images"]
    reader = PlateReader(model_dir)
    paths = [data_root / img["file_name"] for img in images]
    readings = reader.read_files(paths) if paths else []
    acc = PlateMetrics()
    entries, rows = [], []
    for img, path, reading in zip(images, paths, readings):
        truth = img.get("plates", [])
        acc.add(truth, reading)
        truth_texts = sorted(p["text"] for p in truth)
        exact = truth_texts == sorted(plate_texts(reading))
        entries.append(ReportEntry(image_path=path, truth=truth, reading=reading))
        rows.append({"file_name": Path(img["file_name"]).name, "truth": truth_texts, "reading": reading,
                     "exact": exact})
    reading_metrics = acc.result()
    detection = evaluate_checkpoint(model_dir / CONFIG_FILE, model_dir / CHECKPOINT_FILE, data_root, split) \
        if images else {}
    metrics = {**{k: detection[k] for k in ("mAP", "mAP_50") if k in detection},
               **{k: float(reading_metrics[k]) for k in ("eir", "plate_precision", "char_accuracy")}}
    report = write_report(Path(report_dir), entries, finite_metrics(metrics), title=f"ALPR test report — {run_name}",
                          lineage={k: lineage.get(k) for k in ("annotation_version", "training_version", "git_rev",
                                                               "model_uri", "checkpoint", "config_hash")})
    from alpr import storage

    report_root = storage.open_storage(settings.storage_uri).join("runs", run_name, "report")
    report_uri = storage.publish(Path(report_dir), report_root)
    store = _store(settings)
    with store.transaction() as tx:
        tx.add_evaluation(lineage["model_id"], split, metrics, run=run_name)
        tx.add_test_results(lineage["model_id"], rows, run=run_name)
        tx.finish_run(run_name, "succeeded")
    return {"metrics": metrics, "images": len(images), "exact_images": sum(r["exact"] for r in rows),
            "report": str(report), "report_uri": report_uri, "model_uri": lineage.get("model_uri")}
