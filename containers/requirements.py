"""Print the runtime requirements of pyproject.toml, one per line: what the images install.

    python containers/requirements.py [--serving] pyproject.toml

Without ``--serving``: ``[project] dependencies`` (the components image). With it: those among them whose names
``[tool.alpr] serving-packages`` lists, with the specifiers of ``dependencies`` (the serving image: no torch, mmcv
or mmdet). Runs in the Dockerfile's ``requirements`` stage on the base image's bare Python (standard library only).

Exit status 2 names a serving package that is not a dependency.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    """A distribution name normalised as PEP 503 does (``Foo_Bar.baz`` -> ``foo-bar-baz``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The canonical distribution name of a PEP 508 requirement string (``"kserve==0.21.0"`` -> ``kserve``).

    Raises:
        ValueError: the string does not start with a name.
    """
    m = _NAME.match(requirement)
    if m is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return canonical(m.group(1))


def requirements(pyproject: dict, *, serving: bool = False) -> list[str]:
    """The requirement strings the image installs (see the module docstring).

    Raises:
        KeyError: a serving package is not among ``dependencies`` (the message names it).
    """
    deps = list(pyproject["project"]["dependencies"])
    if not serving:
        return deps
    wanted = [canonical(n) for n in pyproject["tool"]["alpr"]["serving-packages"]]
    by_name = {requirement_name(d): d for d in deps}
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise KeyError(f"[tool.alpr] serving-packages not in [project] dependencies: {', '.join(missing)}")
    return [by_name[n] for n in wanted]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("pyproject", type=Path)
    p.add_argument("--serving", action="store_true", help="the serving image's subset")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Print the requirements; 2 when a serving package is not a dependency."""
    args = _parse_args(argv)
    try:
        lines = requirements(tomllib.loads(args.pyproject.read_text(encoding="utf-8")), serving=args.serving)
    except KeyError as exc:
        print(f"{args.pyproject}: {exc.args[0]}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
