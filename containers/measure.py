"""Print the measured facts of the images: sizes (and the biggest parts of the environment) and the serving
image's start-up, phase by phase.

    python containers/measure.py --components IMAGE --serving IMAGE --model MODEL_DIR [--runs 3] [--json out.json]

Start-up: the serving container is started as in tests/container (``--init --read-only --tmpfs /tmp``, the model
directory mounted read-only, a loopback port) ``--runs`` times; for each run it prints the seconds from
``podman run`` to: the container running (``podman run -d`` returned), the model loaded (the server's log line),
the HTTP server listening, and ``/v2/models/alpr/ready`` answering 200 (what a readiness probe sees). Separately,
in a fresh container each: the import of the server module (torch, mmdet, kserve) and the model load alone.
Speed figures come from here, never from a test; docs/containers.md quotes them.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MOUNT = "/models/alpr"
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=900)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _log_time(logs: str, needle: str) -> float | None:
    """The epoch seconds of the first log line containing ``needle`` (the server logs in UTC)."""
    for line in logs.splitlines():
        if needle in line and (m := _LOG_TIME.match(line)):
            return datetime.strptime(m.group(1) + "+0000", "%Y-%m-%d %H:%M:%S,%f%z").timestamp()
    return None


def startup(image: str, model: Path, name: str) -> dict[str, float]:
    """One start of the serving container; the seconds from `podman run` to each phase."""
    port = _free_port()
    t0 = time.time()
    _podman("run", "-d", "--name", name, "--init", "--read-only", "--tmpfs", "/tmp:rw,mode=1777",
            "-v", f"{model}:{MOUNT}:ro", "-e", f"STORAGE_URI={MOUNT}", "-p", f"127.0.0.1:{port}:8080", image)  # fmt: skip
    t_running = time.time()
    try:
        while not _answers(f"http://127.0.0.1:{port}/v2/models/alpr/ready"):
            if time.time() - t0 > 300:
                raise RuntimeError("not ready after 300 s:\n" + _podman("logs", name, check=False).stderr[-3000:])
            time.sleep(0.05)
        t_ready = time.time()
        proc = _podman("logs", name)
        logs = proc.stdout + proc.stderr
    finally:
        _podman("rm", "-f", "-t", "5", name, check=False)
    loaded, listening = _log_time(logs, "model alpr loaded"), _log_time(logs, "Uvicorn running")
    return {
        "container_running_s": round(t_running - t0, 2),
        "model_loaded_s": round(loaded - t0, 2) if loaded else None,
        "http_listening_s": round(listening - t0, 2) if listening else None,
        "ready_s": round(t_ready - t0, 2),
    }


def in_container(image: str, model: Path, code: str) -> float:
    """Seconds that ``code`` reports (it prints one number) in a fresh container of ``image``."""
    out = _podman("run", "--rm", "--read-only", "--tmpfs", "/tmp:rw,mode=1777", "-v", f"{model}:{MOUNT}:ro",
                  "--entrypoint", "python", image, "-c", code).stdout  # fmt: skip
    return float(out.strip().splitlines()[-1])


IMPORT = "import time; t = time.perf_counter(); import alpr.serving.server; print(time.perf_counter() - t)"
LOAD = (
    "import alpr.serving.server as s, time; m = s.ALPRModel(model_uri='" + MOUNT + "', cache_dir='/tmp/c'); "
    "t = time.perf_counter(); m.load(); print(time.perf_counter() - t)"
)
BIGGEST = (
    "import os, json; p = '/opt/venv/lib/python3.11/site-packages'; "
    "size = lambda d: sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs "
    "if not os.path.islink(os.path.join(r, f))); "
    "s = {e: size(os.path.join(p, e)) for e in os.listdir(p) if os.path.isdir(os.path.join(p, e))}; "
    "print(json.dumps(dict(sorted(s.items(), key=lambda kv: -kv[1])[:15])))"
)


def compressed_bytes(image: str) -> int:
    """The bytes of ``image``'s layers gzip-compressed (level 6, as a registry push compresses them): roughly what
    a node pulls. Layers shared with an image already on the node are not pulled again."""
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "image.tar"
        _podman("save", "--format", "docker-archive", "-o", str(archive), image)
        with tarfile.open(archive) as outer:
            for member in outer.getmembers():
                if not member.name.endswith(".tar"):
                    continue
                src, counter = outer.extractfile(member), _Counter()
                with gzip.GzipFile(fileobj=counter, mode="wb", compresslevel=6) as gz:
                    while block := src.read(1 << 20):
                        gz.write(block)
                total += counter.n
    return total


class _Counter:
    """A write-only file that counts the bytes written to it."""

    n = 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    """Measure and print; ``--json`` also writes the figures to a file."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--components", required=True)
    p.add_argument("--serving", required=True)
    p.add_argument("--model", required=True, type=Path, help="a model directory (config.py, model.pth, model.json)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", type=Path)
    p.add_argument("--compressed", action="store_true", help="also gzip the serving image's layers (minutes)")
    args = p.parse_args(argv)
    os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "containers" / "containers.conf"))
    model = args.model.resolve()
    result: dict = {"sizes_bytes": {}, "startup": []}
    for target, image in (("components", args.components), ("serving", args.serving)):
        info = json.loads(_podman("image", "inspect", image).stdout)[0]
        result["sizes_bytes"][target] = info["Size"]
        print(f"{target:10s} {image}: {info['Size'] / 1e9:.2f} GB, {len(info['RootFS']['Layers'])} layers")
    history = json.loads(_podman("history", "--format", "json", args.serving).stdout)
    result["layers"] = [{"size": h["size"], "created_by": h["CreatedBy"][:90]} for h in history if h["size"] > 1e6]
    for layer in result["layers"]:
        print(f"  layer {layer['size'] / 1e6:8.1f} MB  {layer['created_by']}")
    out = _podman("run", "--rm", "--entrypoint", "python", args.serving, "-c", BIGGEST).stdout
    result["biggest_packages_bytes"] = json.loads(out)
    print("biggest packages (MB):", {k: round(v / 1e6) for k, v in result["biggest_packages_bytes"].items()})
    print(f"model directory: {sum(f.stat().st_size for f in model.rglob('*') if f.is_file()) / 1e6:.1f} MB")
    for i in range(args.runs):
        phases = startup(args.serving, model, f"alpr-measure-{os.getpid()}-{i}")
        result["startup"].append(phases)
        print(f"start-up run {i + 1}: " + ", ".join(f"{k} {v}" for k, v in phases.items()))
    result["import_server_module_s"] = round(in_container(args.serving, model, IMPORT), 2)
    result["model_load_s"] = round(in_container(args.serving, model, LOAD), 2)
    print(f"in a fresh container: import alpr.serving.server {result['import_server_module_s']} s, "
          f"model load {result['model_load_s']} s")  # fmt: skip
    if args.compressed:
        result["serving_compressed_bytes"] = compressed_bytes(args.serving)
        print(f"serving image, layers gzip-compressed: {result['serving_compressed_bytes'] / 1e9:.2f} GB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
