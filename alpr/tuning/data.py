"""Which training data a tuning trial trains on: a folder, a training version or an annotation version."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from alpr.data.versions import record_training_version
from alpr.defaults import TRAINING_DEFAULTS
from alpr.metadata import MetadataStore
from alpr.settings import Settings

log = logging.getLogger(__name__)

#: The pipeline's default split of an annotation version (:data:`alpr.defaults.TRAINING_DEFAULTS`).
DEFAULT_FRACTIONS = TRAINING_DEFAULTS.split_fractions


def resolve_training_data(
    settings: Settings,
    ref: str,
    out_dir: Path,
    *,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    split_seed: int = TRAINING_DEFAULTS.split_seed,
    progress: bool = False,
) -> tuple[Path, str | None]:
    """The COCO folder to train on for ``ref``, resolved the way the pipeline's Record step does.

    ``ref`` is, in this order:

    1. a folder holding a training version (``annotations/{train,val}.json`` + ``images/``, e.g. Record's
       output or a KFP Dataset artifact): used in place;
    2. the name of a recorded training version: fetched from the dataset repository (git tag + DVC) with
       :func:`alpr.data.versions.record_training_version`, which finds the recorded version of the same inputs;
    3. the name of a registered annotation version: its training version with ``fractions`` and ``split_seed``
       (the pipeline's defaults unless given), recorded first if it does not exist yet -- exactly what Record does.

    Args:
        settings: the backends (metadata store, dataset repository, DVC remote).
        ref: see above.
        out_dir: where a fetched version is copied (cases 2 and 3).
        fractions: train/val/test split of an annotation version (case 3).
        split_seed: split seed of an annotation version (case 3).
        progress: show progress bars while fetching.

    Returns:
        (folder, training version name or None when the folder carries no lineage).

    Raises:
        FileNotFoundError: ``ref`` is a folder without ``annotations/train.json`` and ``annotations/val.json``.
        LookupError: ``ref`` is neither a folder nor a version known to the metadata store (the message names the
            store, with its password hidden).
        alpr.data.repo.DatasetRepoError: fetching from the dataset repository failed.
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        missing = [s for s in ("train", "val") if not (path / "annotations" / f"{s}.json").is_file()]
        if missing:
            raise FileNotFoundError(
                f"training data {ref!r}: folder without annotations/{missing[0]}.json: not a training version"
            )
        lineage = path / "lineage.json"
        name = json.loads(lineage.read_text()).get("training_version") if lineage.is_file() else None
        return path.absolute(), name

    store = MetadataStore(settings.db_url)
    store.create_schema()
    tv = store.get_training_version(ref)
    if tv is not None:
        version = record_training_version(
            settings,
            tv["annotation_version"],
            fractions=tuple(tv["fractions"]),
            seed=int(tv["seed"]),
            out_dir=Path(out_dir),
            progress=progress,
        )
        if version.name != ref:
            log.warning(
                "training version %s was converted by an older converter; training on %s, the same "
                "annotations converted by the current one",
                ref,
                version.name,
            )
        return version.path, version.name
    if store.get_annotation_version(ref) is not None:
        version = record_training_version(
            settings, ref, fractions=tuple(fractions), seed=split_seed, out_dir=Path(out_dir), progress=progress
        )
        return version.path, version.name
    raise LookupError(
        f"training data {ref!r}: not a folder, and neither a training version nor an annotation "
        f"version in the metadata store {store.url_for_display}"
    )
