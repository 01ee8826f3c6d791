"""Print the content-addressed tag of the images: ``src-`` and 16 hex digits of a SHA-256.

    python containers/context_tag.py [--engine podman|docker] [--base IMAGE]

The hash covers everything a build reads: the Dockerfile, the files of the build context that ``.dockerignore``
lets in (the project's code, ``pyproject.toml``, the constraints, the wheelhouse ``build/wheels/*.whl``), and
the base image -- its name and, when the engine has it locally, its image id (a rebuilt ``make base-image`` gives
new images). An unchanged tree therefore gives the same tag, and ``make images`` reuses the images that carry it
instead of building again. Standard library only: it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A ``.dockerignore`` pattern (Go filepath.Match plus ``**``) as a regular expression over ``/`` paths."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                out = out[:-2] + "(?:.*/)?"
                i += 1
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c) if c != "[" else "[")
        if c == "[":
            end = pattern.index("]", i)
            out += pattern[i + 1 : end] + "]"
            i = end
        i += 1
    return re.compile(out + "(?:/.*)?")  # a pattern that names a folder covers what lies inside it


def _literal_prefix(pattern: str) -> str:
    """The folders (or file) a pattern starts with before its first wildcard: where to look for its files."""
    parts = []
    for part in pattern.split("/"):
        if any(c in part for c in "*?["):
            break
        parts.append(part)
    return "/".join(parts) or "."


def context_files(root: Path = ROOT) -> list[str]:
    """The files of the build context, as ``.dockerignore`` filters them (the last matching rule wins)."""
    rules = []
    for line in (root / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        rules.append((keep, pattern, _pattern_regex(pattern)))
    tops = {_literal_prefix(pattern) for keep, pattern, _ in rules if keep}
    found = []
    for top in sorted(tops):
        path = root / top
        if not path.exists():
            continue  # e.g. no wheelhouse yet
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for p in candidates:
            rel = p.relative_to(root).as_posix()
            included = True
            for keep, _, regex in rules:
                if regex.fullmatch(rel):
                    included = keep
            if included:
                found.append(rel)
    return found


def base_image_id(engine: str | None, base: str) -> str:
    """The local image id of ``base`` under ``engine`` ('' when the engine or the image is not there)."""
    if not engine or not base:
        return ""
    try:
        proc = subprocess.run(
            [engine, "image", "inspect", "--format", "{{.Id}}", base], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def context_tag(engine: str | None = None, base: str = "", root: Path = ROOT) -> str:
    """``src-<16 hex>``: the SHA-256 of the Dockerfile, the context's files (paths and bytes) and the base image."""
    digest = hashlib.sha256()
    for rel in ["Dockerfile", *context_files(root)]:
        digest.update(rel.encode() + b"\0")
        with open(root / rel, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    digest.update(f"base={base}\0{base_image_id(engine, base)}".encode())
    return "src-" + digest.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    """Print the tag (``--list``: the context's files instead)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", default=os.environ.get("CONTAINER_ENGINE"), help="docker or podman")
    p.add_argument("--base", default="", help="the PYTHON_IMAGE build argument ('' = the Dockerfile's default)")
    p.add_argument("--list", action="store_true", help="print the files of the build context and exit")
    args = p.parse_args(argv)
    if args.list:
        print("\n".join(context_files()))
    else:
        print(context_tag(args.engine, args.base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
