"""Loading what this project saved: its training checkpoints under torch >= 2.6 (weights-only by default), and the
merged mmdetection configs saved next to candidates and models, including those saved before a module moved."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

#: Modules a saved config may name in ``custom_imports`` that have moved since, mapped to their current names
#: (``alpr.mmdet_plugins`` became ``alpr.model.plugins`` when the library was split into packages).
MOVED_MODULES: Final[dict[str, str]] = {"alpr.mmdet_plugins": "alpr.model.plugins"}


@contextlib.contextmanager
def trusted_checkpoint_loading() -> Iterator[None]:
    """Let mmengine load full training checkpoints written by this project's own Train step.

    mmengine 0.10 loads checkpoints with a bare ``torch.load``; torch >= 2.6 then refuses the message hub
    (``HistoryBuffer``) and numpy state inside resume/candidate checkpoints. Only for files this pipeline wrote
    itself (resume in its own work dir, Evaluate on Train's candidates); model directories served to users hold
    weights-only checkpoints (:func:`alpr.model.inference.write_model_dir`) and load without this.
    """
    key = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
    old = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def load_saved_config(path: Path | str) -> Any:
    """Read a merged config this project saved (``config.py`` of a model directory or of Train's candidates).

    ``custom_imports`` that name a module of :data:`MOVED_MODULES` are renamed before they are imported, so a model
    trained before the move still loads. mmengine executes the file's Python (as it does for every config); only
    load configs from storage you trust.

    Returns:
        the ``mmengine.config.Config``, its ``custom_imports`` imported.

    Raises:
        FileNotFoundError: nothing at ``path``.
        ImportError: a ``custom_imports`` module does not exist (and is not a moved one).
    """
    from mmengine.config import Config
    from mmengine.utils import import_modules_from_strings

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} not found")
    cfg = Config.fromfile(str(path), import_custom_modules=False)
    custom = cfg.get("custom_imports")
    if custom:
        imports = [MOVED_MODULES.get(name, name) for name in custom.get("imports", [])]
        cfg.custom_imports = {**custom, "imports": imports}
        import_modules_from_strings(**cfg.custom_imports)
    return cfg
