"""Entry point of ``python -m dataset_tools``: one sub-command per module listed in :data:`COMMAND_MODULES`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Final

#: Modules of the sub-commands, in ``--help`` order; each exposes ``add_parser(subparsers)`` and ``run(args)``.
COMMAND_MODULES: Final[tuple[str, ...]] = (
    "dataset_tools.synth",
    "dataset_tools.importer",
    "dataset_tools.register",
    "dataset_tools.versions",
    "dataset_tools.corrections",
)


def _command_modules() -> list[ModuleType]:
    """Import and return the sub-command modules."""
    return [importlib.import_module(name) for name in COMMAND_MODULES]


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every sub-command registered (each sets ``run`` as its default)."""
    parser = argparse.ArgumentParser(
        prog="python -m dataset_tools",
        description="Dataset tools of the ALPR project.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules():
        sub = module.add_parser(subparsers)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the chosen sub-command and return its exit code.

    Usage errors return argparse's code (2) after printing usage and the message; ``--help`` returns 0.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # argparse exits on --help and on usage errors; report the code instead
        return exc.code if isinstance(exc.code, int) else 1
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
