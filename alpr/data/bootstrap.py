"""The first annotation version of a new workspace: synthetic plates, registered like any other version."""

from __future__ import annotations

from pathlib import Path

from alpr.data.synth import mixture, synthesize
from alpr.data.versions import register_annotation_version
from alpr.defaults import BOOTSTRAP_CONDITIONS, BOOTSTRAP_IMAGES, BOOTSTRAP_VERSION
from alpr.metadata import MetadataStore
from alpr.settings import Settings


def bootstrap(
    settings: Settings,
    n_images: int = BOOTSTRAP_IMAGES,
    *,
    conditions: str = BOOTSTRAP_CONDITIONS,
    progress: bool = True,
) -> bool:
    """Create the workspace and the first annotation version of synthetic plates, unless it exists.

    Draws ``n_images`` samples with :func:`alpr.data.synth.synthesize` (seed 0, the ``conditions`` preset of
    :data:`alpr.data.synth.PRESETS`, or several joined by ``+``, e.g. ``classic+road``, which share the images
    evenly: :func:`alpr.data.synth.mixture`) into ``<workspace>/bootstrap/`` and registers them as
    :data:`BOOTSTRAP_VERSION` like any annotation version (DVC push, git tag, metadata rows).

    Raises:
        ValueError: an unknown ``conditions`` name, or one named twice (before anything is written).

    Returns:
        True when the annotation version was created now, False when it already existed.
    """
    parts = mixture(conditions, n_images)
    store = MetadataStore(settings.db_url)
    store.create_schema()
    if store.get_annotation_version(BOOTSTRAP_VERSION) is not None:
        return False
    folder = Path(settings.workspace) / "bootstrap" / BOOTSTRAP_VERSION
    if len(list(folder.glob("*.json"))) != n_images:
        for _name, drawn_with, first, count in parts:
            synthesize(folder, count, seed=0, progress=progress, conditions=drawn_with, first=first)
    register_annotation_version(
        settings,
        folder,
        BOOTSTRAP_VERSION,
        description=f"{n_images} synthetic plates ({conditions} conditions) on scikit-image/matplotlib photographs",
        progress=progress,
    )
    return True
