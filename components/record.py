"""Record: annotation version → versioned COCO training set (Dataset artifact)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def record(
    annotation_version: str,
    train_fraction: float,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    dataset: Output[Dataset],
):
    """Build (or fetch) the COCO training version of an annotation version.

    Checks out the dataset repository at the annotation tag, pulls the images with DVC, validates every labelme
    file, converts to COCO train/val/test with a seeded deterministic split, and publishes it as a training
    version (metadata rows + DVC push + git tag, all or nothing). Re-running with the same inputs returns the
    same training version. The run is the task's ``ALPR_RUN_NAME`` (not an input, so that KFP's cache can hit):
    its ``pipeline_runs`` row is created here when no one made it yet.

    Args:
        annotation_version: tag of the dataset repository (e.g. ``annotations-v1``).
        train_fraction: share of images in the train split.
        val_fraction: share in the val split (model selection).
        test_fraction: share in the test split (held out for the Test step).
        split_seed: seed of the split.
        dataset: output folder: ``annotations/{train,val,test}.json``, ``images/``, ``lineage.json``; its metadata
            carries the lineage (annotation/training versions, git revision, image and per-class counts).
    """
    from pathlib import Path

    from alpr import logs
    from alpr.settings import load_settings
    from alpr.steps.record import record_step
    from alpr.steps.runs import current_run_name

    logs.setup()
    lineage = record_step(
        load_settings(),
        annotation_version=annotation_version,
        fractions=(train_fraction, val_fraction, test_fraction),
        seed=split_seed,
        run_name=current_run_name(),
        out_dir=Path(dataset.path),
    )
    dataset.metadata.update(
        {
            "annotation_version": lineage.annotation_version,
            "training_version": lineage.training_version,
            "git_rev": lineage.git_rev,
            "images": lineage.images,
            "class_counts": lineage.class_counts,
        }
    )
