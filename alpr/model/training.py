"""mmdetection training through the mmengine Runner.

:func:`build_config` loads a config from ``configs/`` (``_base_/`` + leaf) and applies the pipeline's
hyperparameters; :func:`train` runs it and returns the candidate checkpoints, the merged config and the
TensorBoard log folder. Resuming: when ``work_dir`` already holds a ``last_checkpoint`` from a run with the same
config, training continues from it (mmengine ``resume=True``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from alpr import spec
from alpr.defaults import TRAINING_DEFAULTS
from alpr.model.checkpoints import trusted_checkpoint_loading
from alpr.model.metrics import complete_metrics

log = logging.getLogger(__name__)

#: The project's config folder (``configs/`` beside the ``alpr`` package).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
#: The default leaf config (the pipeline's ``config`` parameter, :data:`alpr.defaults.TRAINING_DEFAULTS`).
DEFAULT_CONFIG = TRAINING_DEFAULTS.config
#: The plate detector's leaf config (the first stage of the two-stage design, :func:`build_plate_config`).
PLATE_CONFIG = "rtmdet_plate_alpr.py"
#: The cosine schedule decays the learning rate to this fraction of ``lr``.
FINAL_LR_FACTOR = 0.05


@dataclass(frozen=True)
class Hyperparameters:
    """Training hyperparameters exposed as pipeline parameters; the defaults are the pipeline's
    (:data:`alpr.defaults.TRAINING_DEFAULTS`).

    Attributes:
        lr: AdamW base learning rate.
        epochs: training epochs.
        batch_size: images per iteration.
        input_size: square network input, pixels (images are resized keeping aspect ratio, then padded).
        weight_decay: AdamW weight decay.
        val_interval: validate (COCO mAP + EIR) every this many epochs; also the checkpoint interval.
        seed: random seed of mmengine (weights, sampling, augmentation).
        plate_input_size: the plate detector's input (long side, pixels; a multiple of 32, at least
            ``input_size``); 0 trains no plate detector (the one-detector design).
        plate_epochs: the plate detector's training epochs. It is trained on ``input_size`` square crops of frames
            resized around ``plate_input_size`` (:func:`build_plate_config`), with ``lr``, ``weight_decay``,
            ``batch_size`` and ``seed``.

    Raises:
        ValueError: a value out of range (``lr`` <= 0, ``epochs`` < 1, ``input_size`` not a multiple of 32 of at
            least 64, …), naming each.
    """

    lr: float = TRAINING_DEFAULTS.lr
    epochs: int = TRAINING_DEFAULTS.epochs
    batch_size: int = TRAINING_DEFAULTS.batch_size
    input_size: int = TRAINING_DEFAULTS.input_size
    weight_decay: float = TRAINING_DEFAULTS.weight_decay
    val_interval: int = TRAINING_DEFAULTS.val_interval
    seed: int = TRAINING_DEFAULTS.seed
    plate_input_size: int = TRAINING_DEFAULTS.plate_input_size
    plate_epochs: int = TRAINING_DEFAULTS.plate_epochs

    def __post_init__(self) -> None:
        checks = {
            "lr": self.lr > 0,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "input_size": self.input_size >= 64 and self.input_size % 32 == 0,
            "weight_decay": self.weight_decay >= 0,
            "val_interval": self.val_interval >= 1,
            "plate_input_size": self.plate_input_size == 0
            or (self.plate_input_size % 32 == 0 and self.plate_input_size >= self.input_size),
            "plate_epochs": self.plate_epochs >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"invalid hyperparameter(s) {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)} "
                "(input_size must be a multiple of 32, at least 64; plate_input_size 0 or a multiple of 32, at least "
                "input_size)"
            )


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes:
        work_dir: mmengine work dir.
        config_path: the merged config (``config.py``) saved next to the checkpoints.
        checkpoints: candidate checkpoint files (periodic, best-by-EIR and last), oldest first.
        tensorboard_dir: folder of the TensorBoard event files.
        val_metrics: the last validation metrics (``coco/bbox_mAP``, ``plate/eir``, …).
        config_hash: SHA-256 of the merged config text.
    """

    work_dir: Path
    config_path: Path
    checkpoints: list[Path]
    tensorboard_dir: Path | None
    val_metrics: dict[str, float] = field(default_factory=dict)
    config_hash: str = ""


def _set_input_size(pipeline: list[dict], size: tuple[int, int], crop: tuple[int, int] | None = None) -> None:
    """Set the square input ``size`` (pixels) on the resizing, cropping and padding steps of a data pipeline (the
    configs leave it out): ``Resize``/``RandomResize`` ``scale``, and ``crop`` (default ``size``) as ``RandomCrop``
    ``crop_size`` and ``Pad`` ``size`` unless the step pads to a divisor or to a square instead."""
    crop = size if crop is None else crop
    for step in pipeline:
        kind = step.get("type")
        if kind in ("Resize", "RandomResize"):
            step["scale"] = size
        elif kind == "RandomCrop":
            step["crop_size"] = crop
        elif kind == "Pad" and not (step.get("size_divisor") or step.get("pad_to_square")):
            step["size"] = crop


def _set_schedule(cfg, hp: Hyperparameters, *, epochs: int, val_interval: int, save_best: str) -> None:
    """The schedule of ``configs/_base_/schedules/``: ``epochs``, validation and checkpoint interval, AdamW's lr
    and weight decay, and the cosine decay (after the first epoch, down to ``FINAL_LR_FACTOR * lr``) that follows
    the config's warm-up; the checkpoint hook keeps the best by ``save_best`` (greater is better)."""
    interval = min(val_interval, epochs)
    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_interval = interval
    cfg.optim_wrapper.optimizer.lr = hp.lr
    cfg.optim_wrapper.optimizer.weight_decay = hp.weight_decay
    _warmup, cosine = cfg.param_scheduler
    cosine.eta_min = hp.lr * FINAL_LR_FACTOR
    cosine.begin = min(1, epochs - 1)
    cosine.end = epochs
    cosine.T_max = max(1, epochs - cosine.begin)
    ckpt = cfg.default_hooks.checkpoint
    ckpt.interval = interval
    ckpt.save_best = save_best
    ckpt.rule = "greater"


def build_config(
    data_root: Path, work_dir: Path, hp: Hyperparameters, *, config: str = DEFAULT_CONFIG, num_workers: int = 1
):
    """Load ``configs/<config>`` and apply the classes, the data location and the hyperparameters.

    The configs hold none of what is set here (the comments there name this function): the classes
    (:data:`alpr.spec.CLASSES` as every dataset's ``metainfo`` and the ``num_classes`` of ``model.bbox_head``; an
    mmengine config file cannot import :mod:`alpr`), the data root and annotation files, the input size, the
    training batch size, dataloader workers, the schedule (epochs, validation and checkpoint interval, lr, weight
    decay, the cosine decay's range), the random seed and the visualizer's name.

    Args:
        data_root: COCO training version (``annotations/{train,val,test}.json`` + ``images/``).
        work_dir: where checkpoints, logs and TensorBoard events go.
        hp: hyperparameters.
        config: leaf config file name in ``configs/`` (or a path); its model must be a single-stage detector
            (a ``model.bbox_head``).
        num_workers: dataloader worker processes (0 runs loading in the main process).

    Returns:
        mmengine.Config ready for ``Runner.from_cfg``.

    Raises:
        FileNotFoundError: the config or a split's COCO file is missing.
    """
    cfg = _load_config(config, data_root, work_dir, hp, spec.CLASSES, num_workers)
    size = (hp.input_size, hp.input_size)
    cfg.input_size = size
    for loader_name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        _set_input_size(cfg[loader_name].dataset.pipeline, size)
    _set_schedule(cfg, hp, epochs=hp.epochs, val_interval=hp.val_interval, save_best="plate/eir")
    return cfg


def build_plate_config(data_root: Path, work_dir: Path, hp: Hyperparameters, *, num_workers: int = 1):
    """Load the plate detector's config (:data:`PLATE_CONFIG`) and apply the plate classes, the data location and
    the hyperparameters: the first stage of the two-stage design (docs/detection_design.md).

    The detector predicts the two plate outlines (:data:`alpr.spec.PLATE_LABELS`; mmdetection's ``CocoDataset``
    keeps only the annotations of the classes in its ``metainfo``). Its input is ``hp.plate_input_size`` (the test
    pipeline's ``Resize``); it trains on ``hp.input_size`` square crops (``RandomCrop``) of frames resized around
    that input (``RandomResize``), i.e. on plates at the scale it sees them at inference, for ``hp.plate_epochs``
    epochs, validating (COCO mAP) and keeping the best checkpoint by ``coco/bbox_mAP_50`` at the end.

    Args:
        data_root, work_dir, num_workers: as :func:`build_config`.
        hp: hyperparameters with ``plate_input_size`` > 0.

    Returns:
        mmengine.Config ready for ``Runner.from_cfg``.

    Raises:
        ValueError: ``hp.plate_input_size`` is 0 (no plate detector asked for).
        FileNotFoundError: the config or a split's COCO file is missing.
    """
    if not hp.plate_input_size:
        raise ValueError("build_plate_config: hp.plate_input_size is 0 (the one-detector design trains no plates)")
    cfg = _load_config(PLATE_CONFIG, data_root, work_dir, hp, spec.PLATE_LABELS, num_workers)
    frame, crop = (hp.plate_input_size, hp.plate_input_size), (hp.input_size, hp.input_size)
    cfg.input_size = frame
    _set_input_size(cfg.train_dataloader.dataset.pipeline, frame, crop)
    for loader_name in ("val_dataloader", "test_dataloader"):
        _set_input_size(cfg[loader_name].dataset.pipeline, frame)
    _set_schedule(cfg, hp, epochs=hp.plate_epochs, val_interval=hp.plate_epochs, save_best="coco/bbox_mAP_50")
    return cfg


def leaf_config(config: str):
    """The mmengine config of ``configs/<config>`` (or a path) as written, with its ``_base_`` files merged and
    nothing of the pipeline's applied (:func:`build_config` applies it).

    Raises:
        FileNotFoundError: no such config file.
    """
    from mmengine.config import Config

    path = Path(config) if Path(config).is_absolute() else CONFIG_DIR / config
    if not path.is_file():
        raise FileNotFoundError(f"mmdetection config {path} not found")
    return Config.fromfile(str(path))


def _load_config(config: str, data_root: Path, work_dir: Path, hp: Hyperparameters, classes, num_workers: int):
    """Load ``configs/<config>`` (or a path) and set what every ALPR config leaves out but the input size and the
    schedule: classes and ``num_classes``, data root and annotation files, workers, batch size, seed, work dir,
    visualizer name and the evaluators' annotation file (see :func:`build_config`)."""
    cfg = leaf_config(config)
    data_root = Path(data_root).absolute()
    for split in ("train", "val"):
        if not (data_root / "annotations" / f"{split}.json").is_file():
            raise FileNotFoundError(f"{data_root / 'annotations' / f'{split}.json'} missing: not a training version")
    cfg.work_dir = str(Path(work_dir).absolute())
    cfg.randomness = dict(seed=hp.seed)
    cfg.model.bbox_head.num_classes = len(classes)
    for loader_name, split in (("train_dataloader", "train"), ("val_dataloader", "val"), ("test_dataloader", "val")):
        loader = cfg[loader_name]
        loader.dataset.metainfo = dict(classes=tuple(classes))
        loader.dataset.data_root = str(data_root) + "/"
        loader.dataset.ann_file = f"annotations/{split}.json"
        loader.num_workers = num_workers
        loader.persistent_workers = num_workers > 0
    cfg.train_dataloader.batch_size = hp.batch_size
    # mmengine keeps visualizers in a process-wide registry by name: a fresh name per run keeps a second run in
    # the same process (tests, the local tuner) from writing into the first run's TensorBoard folder.
    cfg.visualizer.name = f"visualizer-{uuid.uuid4().hex[:12]}"
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        for metric in evaluator:
            metric["ann_file"] = str(data_root / "annotations" / "val.json")
    return cfg


def config_hash(cfg) -> str:
    """SHA-256 (hex) of the config's text without the per-run parts (work dir, visualizer instance name, the local
    path of a warm start's checkpoint), so the same model configuration hashes the same wherever and whenever it is
    trained."""
    text = cfg.pretty_text.replace(str(cfg.work_dir), "<work_dir>").replace(str(cfg.visualizer.name), "<visualizer>")
    if cfg.get("load_from"):  # as if from random weights: the warm start is lineage (its model's URI), not config
        text = text.replace(f"load_from = '{cfg.load_from}'", "load_from = None")
    return hashlib.sha256(text.encode()).hexdigest()


def train(cfg, *, resume: bool = True) -> TrainResult:
    """Train with mmengine's Runner in this process and collect the results.

    Args:
        cfg: from :func:`build_config`.
        resume: continue from ``work_dir/last_checkpoint`` when present (after a kill).

    Returns:
        :class:`TrainResult`.
    """
    return collect_train_result(cfg, run_runner(cfg, resume=resume))


def run_runner(cfg, *, resume: bool = True) -> dict[str, float]:
    """Build mmengine's Runner from ``cfg`` and train; return the last validation metrics (names without the
    ``val/`` prefix, completed by :func:`alpr.model.metrics.complete_metrics`).

    ``cfg.resume`` is set when ``resume`` and the work dir holds a ``last_checkpoint``, so a restarted training (a
    re-run step, a restarted torchrun group) continues from it; a warm start's ``cfg.load_from``
    (:mod:`alpr.model.warm_start`) is then dropped, its weights being in that checkpoint already. One rank of a distributed training
    (:mod:`alpr.model.distributed`) runs this too, with ``cfg.launcher = "pytorch"``.
    """
    from mmengine.runner import Runner

    work_dir = Path(cfg.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    cfg.resume = bool(resume and (work_dir / "last_checkpoint").is_file())
    if cfg.resume:
        log.info("resuming from %s", (work_dir / "last_checkpoint").read_text().strip())
        # mmengine resumes from load_from when both are set: a warm start's weights are already in the checkpoint.
        cfg.load_from = None
    elif cfg.get("load_from"):
        log.info("warm start: weights from %s", cfg.load_from)
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    runner = Runner.from_cfg(cfg)
    with trusted_checkpoint_loading():
        runner.train()
    last = runner.message_hub.log_scalars
    return complete_metrics({k[4:]: float(v.current()) for k, v in last.items() if k.startswith("val/")})


def collect_train_result(cfg, metrics: dict[str, float]) -> TrainResult:
    """The :class:`TrainResult` of a finished training of ``cfg``: dumps the merged config to
    ``<work_dir>/config.py`` and lists the checkpoints (oldest first) and the newest TensorBoard folder there."""
    work_dir = Path(cfg.work_dir)
    config_path = work_dir / "config.py"
    cfg.dump(str(config_path))
    checkpoints = sorted(work_dir.glob("*.pth"), key=lambda p: p.stat().st_mtime)
    tb = sorted(work_dir.glob("*/vis_data"))
    return TrainResult(work_dir, config_path, checkpoints, tb[-1] if tb else None, metrics, config_hash(cfg))
