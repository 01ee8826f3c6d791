"""The container tier (marker ``container``): the two images built with podman from this tree, then run.

``images`` runs ``make base-image`` (a no-op when the local base exists), ``make wheelhouse`` and ``make images``
on that base. The images carry a content-addressed tag (containers/context_tag.py), so an unchanged tree reuses
them: the first run on a fresh machine builds (cold), later ones take seconds (warm). Where podman is absent every
test of the tier is skipped, and the reason says so (``-ra`` prints it); CI installs podman (`.ci/run`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the tier's helpers: container_tools.py

from container_tools import CONTAINERS_CONF, ROOT, run


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    """Every test that uses podman (the ``podman`` fixture, directly or through ``images``) carries the
    ``container`` marker; the rest of this folder (alpr.kubeflow.local_runner's arguments) runs with the unit tiers."""
    for item in items:
        if "podman" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.container)


@pytest.fixture(scope="session")
def podman() -> str:
    """The podman executable, with CONTAINERS_CONF pointing at containers/containers.conf (runc, ulimits)."""
    exe = shutil.which("podman")
    if exe is None:
        pytest.skip("container tier: podman is not installed (apt-get install -y podman buildah debootstrap runc)")
    os.environ.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return exe


@pytest.fixture(scope="session")
def images(podman) -> dict[str, str]:
    """``{"components": name, "serving": name}``: the images built from this tree on the local base, by their
    content-addressed tags (``make images`` prints ``built <name>:<IMAGE_TAG> = <name>:src-…``)."""
    make = ["make", "--no-print-directory", "-C", str(ROOT)]
    run([*make, "base-image"], timeout=1800)
    run([*make, "wheelhouse"], timeout=3600)  # the CPU torch wheel + the mmcv wheel: no download, no compile
    proc = run([*make, "images", "PYTHON_IMAGE=$(LOCAL_BASE_IMAGE)"], timeout=3 * 3600)
    built = dict(re.findall(r"^built \S+/alpr-(\w+):\S+ = (\S+)$", proc.stdout, re.M))
    assert set(built) == {"components", "serving"}, proc.stdout[-3000:]
    return built


@pytest.fixture(scope="session")
def docker_host(podman, tmp_path_factory):
    """``podman system service`` on a unix socket (a Docker API for kfp.local.DockerRunner); yields DOCKER_HOST."""
    sock = tmp_path_factory.mktemp("podman_api") / "podman.sock"
    log = open(sock.parent / "service.log", "wb")  # noqa: SIM115 -- open while the service runs
    proc = subprocess.Popen(
        [podman, "system", "service", "--time=0", f"unix://{sock}"], stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 30
    while not sock.exists() and time.monotonic() < deadline:
        assert proc.poll() is None, (sock.parent / "service.log").read_text()
        time.sleep(0.1)
    assert sock.exists(), "podman system service did not create its socket in 30 s"
    try:
        yield f"unix://{sock}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture
def shared_tmp():
    """A fresh folder under /tmp that every user may enter (pytest's tmp folders are 0700 root here): what a
    container's uid 10001 reads or writes from the host lives there. Removed afterwards."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="alpr-container-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
