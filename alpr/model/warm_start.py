"""Warm start: train from an earlier model's weights instead of random ones (mmengine's ``load_from``).

A pipeline run with ``load_from`` (a model directory, a storage URI or ``latest``, the latest selected model of the
metadata store) starts its reader from that model's ``model.pth`` and, for the two-stage design, its plate detector
from the model's ``plate_detector/model.pth``. Only the weights are taken: the optimizer, the learning-rate
schedule (warm-up, then cosine) and the epoch count start afresh, as mmengine does for ``load_from`` without
``resume``. So each run of the 60-minute budget continues the training of the one before it, on the new annotation
version.

- :func:`fetch_warm_start`: resolve and download the model, name its checkpoints (:class:`WarmStart`).
- :func:`check_fits`: refuse a checkpoint whose weights do not fit the config's model, before any training (mmengine
  itself loads ``load_from`` non-strictly: a mismatch would only be logged, and the model would train from random
  weights where it did not fit).
- :func:`set_load_from`: both, on a config from :func:`alpr.model.training.build_config`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from alpr.model.inference import CHECKPOINT_FILE, PLATE_DETECTOR_DIR, fetch_model, resolve_model_uri

#: How many mismatched weights the error of :func:`check_fits` names.
SHOWN_MISMATCHES: Final = 5


@dataclass(frozen=True)
class WarmStart:
    """The model a training starts from.

    Attributes:
        uri: the model's storage URI (``latest`` resolved), recorded in the trained model's lineage.
        reader: its reader's checkpoint (the one detector's, for the one-detector design), a local file.
        plate_detector: its plate detector's checkpoint (a local file), or None when the model has none.
    """

    uri: str
    reader: Path
    plate_detector: Path | None


def fetch_warm_start(ref: str, cache_dir: Path, *, db_url: str | None = None) -> WarmStart:
    """Resolve ``ref`` and fetch the model into ``cache_dir``.

    Args:
        ref: a model directory, a storage URI (``file://``, ``gs://``) or ``latest`` (the latest selected model in
            the metadata store at ``db_url``, :func:`alpr.model.inference.resolve_model_uri`).
        cache_dir: where a remote model is downloaded.
        db_url: the metadata store (default: the settings').

    Raises:
        ValueError: ``ref`` is empty.
        alpr.model.inference.ModelError: ``latest`` and no model has been selected yet, or the model directory lacks
            ``config.py`` or ``model.pth``.
    """
    if not ref.strip():
        raise ValueError("load_from is empty: name a model directory, a storage URI or 'latest'")
    uri = resolve_model_uri(ref, db_url=db_url)
    local = fetch_model(uri, cache_dir)
    plate = local / PLATE_DETECTOR_DIR / CHECKPOINT_FILE
    return WarmStart(uri=uri, reader=local / CHECKPOINT_FILE, plate_detector=plate if plate.is_file() else None)


def check_fits(model_cfg, checkpoint: Path) -> None:
    """Check that ``checkpoint`` holds a weight of the same shape for every weight (parameter and buffer) of the
    detector that ``model_cfg`` (an mmdetection ``model`` config) builds, and no other.

    Raises:
        FileNotFoundError: no file at ``checkpoint``.
        ValueError: weights missing, left over or of another shape; the message names the checkpoint, the count of
            each and the first :data:`SHOWN_MISMATCHES` of them with both shapes.
    """
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"load_from: checkpoint {checkpoint} not found")
    register_all_modules(init_default_scope=True)
    # A copy: mmdetection's detectors write train_cfg / test_cfg into the head's config they are given.
    wanted = {k: tuple(v.shape) for k, v in MODELS.build(copy.deepcopy(model_cfg)).state_dict().items()}
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    saved = saved.get("state_dict", saved)
    given = {k.removeprefix("module."): tuple(v.shape) for k, v in saved.items()}
    missing = sorted(set(wanted) - set(given))
    extra = sorted(set(given) - set(wanted))
    shapes = sorted(k for k in set(wanted) & set(given) if wanted[k] != given[k])
    if missing or extra or shapes:
        shown = [f"{k}: {given[k]} in the checkpoint, {wanted[k]} in the model" for k in shapes[:SHOWN_MISMATCHES]]
        shown += [f"{k}: missing" for k in missing[:SHOWN_MISMATCHES]]
        shown += [f"{k}: not in the model" for k in extra[:SHOWN_MISMATCHES]]
        raise ValueError(
            f"load_from: {checkpoint} does not fit the config's model ({len(shapes)} weights of another shape, "
            f"{len(missing)} missing, {len(extra)} not in the model; a model of another design or class list?): "
            + "; ".join(shown)
        )


def set_load_from(cfg, checkpoint: Path) -> None:
    """Start the training of ``cfg`` from the weights of ``checkpoint`` (``cfg.load_from``) after
    :func:`check_fits`; raises as it does, leaving ``cfg`` unchanged."""
    check_fits(cfg.model, checkpoint)
    cfg.load_from = str(Path(checkpoint).absolute())
