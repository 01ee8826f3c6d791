"""Helpers of the container tier (tests/container/conftest.py puts this folder on sys.path)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = ROOT / "containers" / "containers.conf"
#: uid (and gid) of the images' user (Dockerfile, runtime stage).
IMAGE_UID = 10001


def run(cmd: list[str], *, timeout: float = 600, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run a command, text output captured; on failure the assertion shows its output."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check:
        assert proc.returncode == 0, (
            f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def inspect(podman: str, image: str) -> dict:
    """``podman image inspect`` of one image."""
    (info,) = json.loads(run([podman, "image", "inspect", image]).stdout)
    return info


def world_readable_copy(src: Path, dst: Path) -> Path:
    """Copy ``src`` to ``dst`` with files 0644 and folders 0755 (a model directory that a container's uid 10001
    reads through a read-only mount)."""
    shutil.copytree(src, dst)
    for path in [dst, *dst.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dst
