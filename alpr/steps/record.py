"""The Record step: an annotation version → a recorded training version, copied into the step's folder."""

from __future__ import annotations

from pathlib import Path

from alpr.data.versions import record_training_version
from alpr.settings import Settings
from alpr.steps.lineage import DatasetLineage
from alpr.steps.runs import ensure_run, marks_run_failed


@marks_run_failed
def record_step(
    settings: Settings,
    *,
    annotation_version: str,
    fractions: tuple[float, float, float],
    seed: int,
    run_name: str,
    out_dir: Path,
    progress: bool = False,
) -> DatasetLineage:
    """Record the training version of ``annotation_version`` and copy it (COCO + images) into ``out_dir``.

    Creates the run's ``pipeline_runs`` row (if it does not exist yet); a failure marks the run failed.

    Args:
        annotation_version: tag of the dataset repository.
        fractions: (train, val, test) shares of the images.
        seed: seed of the split.
        run_name: the pipeline run.
        out_dir: receives ``annotations/{train,val,test}.json``, ``images/`` and ``lineage.json``.
        progress: show progress bars.

    Returns:
        the lineage written to ``out_dir``: annotation/training versions, git revision, image and per-class counts.
    """
    ensure_run(
        settings, run_name, {"annotation_version": annotation_version, "fractions": list(fractions), "seed": seed}
    )
    tv = record_training_version(
        settings, annotation_version, fractions=fractions, seed=seed, out_dir=Path(out_dir), progress=progress
    )
    lineage = DatasetLineage(
        annotation_version=tv.annotation_version,
        training_version=tv.name,
        git_rev=tv.git_rev,
        dataset_repo=settings.dataset_repo,
        counts=tv.counts,
        created=tv.created,
        run_name=run_name,
    )
    lineage.write(out_dir)
    return lineage
