"""Logging for every entry point of the project: one format, one call.

Components, command lines and the model server call :func:`setup` once, at their start (never at import time), so
that a pipeline step's log, a trial's log and the server's log read alike.
"""

from __future__ import annotations

import logging
import sys
from typing import Final, TextIO

#: The one log line format: time, process id (the model server runs several), level, logger, message.
LOG_FORMAT: Final = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def setup(level: int = logging.INFO, *, stream: TextIO | None = None) -> None:
    """Configure the root logger with :data:`LOG_FORMAT` at ``level``, on ``stream`` (default: standard error).

    ``force=True``: a second call (a component run in-process by ``kfp.local`` after another) replaces the handler
    instead of stacking a second one, which would print every line twice.
    """
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=stream or sys.stderr, force=True)
