"""The pipeline's embedded defaults: what ``python pipeline.py --run`` trains with when given no flags.

``pipeline.py`` turns each entry of :data:`TRAINING_DEFAULTS` into a pipeline parameter and a command-line flag;
``benchmarks/bench_train.py`` and the tuner read the same values. The figures behind these choices are in
``docs/detection_design.md`` and ``docs/bench_train.md``.
"""

from __future__ import annotations

from typing import Final

#: Annotation version created by the first local run (synthetic plates).
BOOTSTRAP_VERSION: Final = "annotations-v1"
#: Synthetic images in the bootstrap annotation version (80 % train, 10 % val, 10 % test).
BOOTSTRAP_IMAGES: Final = 2000

#: Record, Train and Evaluate parameters and their defaults.
TRAINING_DEFAULTS: Final[dict[str, object]] = {
    "annotation_version": BOOTSTRAP_VERSION,
    "train_fraction": 0.8,
    "val_fraction": 0.1,
    "test_fraction": 0.1,
    "split_seed": 0,
    "config": "rtmdet_tiny_alpr.py",
    "lr": 0.004,
    "epochs": 16,
    "batch_size": 8,
    "input_size": 320,
    "weight_decay": 0.05,
    "val_interval": 2,
    "seed": 0,
    "selection_metric": "eir",
}


def bootstrap(settings, n_images: int = BOOTSTRAP_IMAGES, *, progress: bool = True) -> bool:
    """Create the workspace and the first annotation version of synthetic plates, unless it exists.

    Draws ``n_images`` samples with :func:`alpr.synth.synthesize` (seed 0) into ``<workspace>/bootstrap/`` and
    registers them as :data:`BOOTSTRAP_VERSION` like any annotation version (DVC push, git tag, metadata rows).

    Returns:
        True when the annotation version was created now, False when it already existed.
    """
    from pathlib import Path

    from alpr.metadata import MetadataStore
    from alpr.synth import synthesize
    from alpr.versions import register_annotation_version

    store = MetadataStore(settings.db_url)
    store.create_schema()
    if store.get_annotation_version(BOOTSTRAP_VERSION) is not None:
        return False
    folder = Path(settings.workspace) / "bootstrap" / BOOTSTRAP_VERSION
    if len(list(folder.glob("*.json"))) != n_images:
        synthesize(folder, n_images, seed=0, progress=progress)
    register_annotation_version(settings, folder, BOOTSTRAP_VERSION,
                                description=f"{n_images} synthetic plates on scikit-image/matplotlib photographs",
                                progress=progress)
    return True
