"""A live ``python -m alpr.serving`` on a free 127.0.0.1 port, for the tests of the served API over real HTTP (a
plain module: test files import it by name, like ``readings``)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Seconds a live server may take to load the tiny model and answer its readiness route.
SERVER_START_TIMEOUT_S = 90


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(
    client: httpx.Client, path: str, timeout_s: float, proc: subprocess.Popen | None = None, log_path=None
) -> None:
    """Poll ``GET path`` until it answers 200; fail the test (with the server's log) when ``proc`` exits first or
    ``timeout_s`` pass."""
    deadline = time.monotonic() + timeout_s
    log = (lambda: Path(log_path).read_text()[-3000:]) if log_path else (lambda: "")
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log()}")
        try:
            if client.get(path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"server not ready after {timeout_s} s:\n{log()}")


@contextlib.contextmanager
def serve(args: list[str], work: Path, *, port: int, model_name: str = "alpr") -> Iterator[httpx.Client]:
    """Run ``python -m alpr.serving ARGS`` (``ALPR_WORKSPACE`` in ``work``, log in ``work/server.log``, no
    ``$STORAGE_URI``) until the block ends; yields an ``httpx.Client`` bound to 127.0.0.1:``port`` once
    ``/v2/models/<model_name>/ready`` answers 200. ``args`` name the model and that port."""
    log_path = work / "server.log"
    env = {**os.environ, "ALPR_WORKSPACE": str(work / "ws")}
    env.pop("STORAGE_URI", None)
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "alpr.serving", *args], stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, trust_env=False)
    try:
        wait_ready(client, f"/v2/models/{model_name}/ready", SERVER_START_TIMEOUT_S, proc, log_path)
        yield client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
