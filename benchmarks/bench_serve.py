"""Benchmark the KServe model server over HTTP on 127.0.0.1 (a script to run, not a test).

Starts ``python -m alpr.serving --model MODEL`` on a free loopback port, sends 1280x720 JPEGs of synthetic plates
(:func:`alpr.data.synth.render_sample`, letterboxed), and prints:

- start-up: seconds until ``/v2/models/alpr/ready`` answers 200, and the server's RSS then (MB);
- latency with one client: p50 / p95 / p99 / mean over ``--requests`` requests after ``--warmup`` (ms);
- throughput with 1, 2, 4, 8 concurrent clients (threads, ``--per-client`` requests each): requests/s and the
  p50 / p95 latency seen at that concurrency (ms);
- peak server RSS (MB; the server process and its children, sampled every 50 ms during the whole run);
- where the time of a request goes, over the one-client requests: the mean milliseconds per request of each stage
  the server times (``alpr_stage_seconds`` on its ``/metrics``, :mod:`alpr.model.stages`: JPEG decoding,
  pre-processing, network, decoding/NMS, zoomed pass, reading, V2 JSON encoding) and its share of the mean latency
  the client saw; the rest is HTTP, kserve and (V1) the response's JSON encoding.

``--backends onnx,pytorch`` runs the whole benchmark once per back end of the server (``--backend``, one server
after the other, the same images) and ends with the PyTorch-to-ONNX ratios of the latencies and throughputs.

Every loop is bounded by a count and by a time limit (``--phase-timeout``); traffic goes to 127.0.0.1 only.

Usage::

    ALPR_WORKSPACE=.alpr .venv/bin/python benchmarks/bench_serve.py --model latest [--json bench.json]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 1280, 720
#: Letterbox padding colour (BGR).
PAD_BGR = (114, 114, 114)
#: RSS sampling period in seconds.
RSS_PERIOD_S = 0.05
MB = 1024 * 1024


# --- images -------------------------------------------------------------------------------------------------------


def letterbox(image_rgb: np.ndarray, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Scale an RGB image to fit ``width`` x ``height`` (aspect kept), pad it centred; returns BGR uint8."""
    import cv2

    h, w = image_rgb.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(image_rgb, (nw, nh), interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = PAD_BGR[::-1]  # canvas is RGB until converted below
    x0, y0 = (width - nw) // 2, (height - nh) // 2
    canvas[y0 : y0 + nh, x0 : x0 + nw] = resized
    return cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)


def make_jpegs(count: int, seed: int, quality: int) -> list[bytes]:
    """``count`` 1280x720 JPEGs (``quality`` 0-100) of synthetic plates."""
    import cv2

    from alpr.data.synth import render_sample

    out = []
    for i in range(count):
        image_rgb, _ = render_sample(i, seed)
        ok, buf = cv2.imencode(".jpg", letterbox(image_rgb), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding of sample {i} failed")
        out.append(buf.tobytes())
    return out


def request_bodies(jpegs: list[bytes], protocol: str, batch: int) -> list[bytes]:
    """Pre-encoded JSON bodies, ``batch`` images each (cycling through ``jpegs``), for V1 or V2."""
    b64 = [base64.b64encode(j).decode("ascii") for j in jpegs]
    bodies = []
    for i in range(len(b64)):
        group = [b64[(i + k) % len(b64)] for k in range(batch)]
        if protocol == "v1":
            body = {"instances": [{"image_bytes": {"b64": s}} for s in group]}
        else:
            body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(group)], "data": group}]}
        bodies.append(json.dumps(body).encode())
    return bodies


# --- the server ---------------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RssSampler:
    """Samples the RSS of a process and its children every :data:`RSS_PERIOD_S` s in a thread; ``peak_mb`` in MB."""

    def __init__(self, pid: int) -> None:
        import psutil

        self._proc = psutil.Process(pid)
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def current_mb(self) -> float:
        """RSS of the process plus its children now, in MB (0 once it is gone)."""
        import psutil

        try:
            procs = [self._proc, *self._proc.children(recursive=True)]
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            return total / MB
        except psutil.NoSuchProcess:
            return 0.0

    def _run(self) -> None:
        while not self._stop.wait(RSS_PERIOD_S):
            self.peak_mb = max(self.peak_mb, self.current_mb())

    def start(self) -> RssSampler:
        self.peak_mb = self.current_mb()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def start_server(
    model: str, port: int, log_path: Path, workers: int, extra_args: Sequence[str] = ()
) -> subprocess.Popen:
    """Start ``python -m alpr.serving`` on ``port`` (``extra_args`` appended to its command line, e.g.
    ``["--log-url", URL]``); its output goes to ``log_path``."""
    cmd = [sys.executable, "-m", "alpr.serving", "--model", model, "--http-port", str(port), "--workers", str(workers)]
    cmd += list(extra_args)
    with open(log_path, "wb") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1])


def wait_ready(base_url: str, proc: subprocess.Popen, timeout_s: float) -> float:
    """Poll the readiness endpoint until 200; returns the seconds waited.

    Raises:
        RuntimeError: the server exited or was not ready within ``timeout_s`` seconds.
    """
    import httpx

    start = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=2, trust_env=False) as client:
        while time.monotonic() - start < timeout_s:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with code {proc.returncode}")
            try:
                if client.get("/v2/models/alpr/ready").status_code == 200:
                    return time.monotonic() - start
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"server not ready after {timeout_s:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 15 s."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass
class Server:
    """A running model server: its process, URL, log file, RSS sampler and start-up time (s)."""

    proc: subprocess.Popen
    base_url: str
    log_path: Path
    sampler: RssSampler
    startup_s: float


@contextlib.contextmanager
def served(
    model: str, workers: int, startup_timeout: float, log_dir: Path, extra_args: Sequence[str] = ()
) -> Iterator[Server]:
    """Start ``python -m alpr.serving`` on a free port (log in ``log_dir/server.log``; ``extra_args`` appended to its
    command line), sample its RSS and wait until it is ready; on exit stop the sampler, then the server (the log
    stays).

    Raises:
        RuntimeError: the server exited or was not ready within ``startup_timeout`` s (the log's tail is in the
            message).
    """
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = Path(log_dir) / "server.log"
    proc = start_server(model, port, log_path, workers, extra_args)
    sampler = RssSampler(proc.pid).start()
    try:
        try:
            startup_s = wait_ready(base_url, proc, startup_timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- server log ---\n{log_path.read_text()[-4000:]}") from None
        yield Server(proc, base_url, log_path, sampler, startup_s)
    finally:
        sampler.stop()
        stop_server(proc)


# --- load ---------------------------------------------------------------------------------------------------------


@dataclass
class ClientResult:
    """What one client thread measured: per-request latencies (ms) of 200 answers, and failures."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def run_client(
    url: str, bodies: list[bytes], count: int, offset: int, deadline: float, start: threading.Barrier | None = None
) -> ClientResult:
    """Send up to ``count`` requests one after the other (stopping at ``deadline``, a monotonic time)."""
    import httpx

    result = ClientResult()
    headers = {"Content-Type": "application/json"}
    with httpx.Client(timeout=120, trust_env=False) as client:
        if start is not None:
            start.wait(timeout=60)
        for i in range(count):
            if time.monotonic() > deadline:
                result.errors.append("phase time limit reached")
                break
            t0 = time.perf_counter()
            try:
                r = client.post(url, content=bodies[(offset + i) % len(bodies)], headers=headers)
            except httpx.HTTPError as exc:
                result.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            ms = (time.perf_counter() - t0) * 1000
            if r.status_code == 200:
                result.latencies_ms.append(ms)
            else:
                result.errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
    return result


def percentiles(latencies_ms: list[float]) -> dict[str, float]:
    """p50 / p95 / p99 / mean / max of latencies in ms (NaN when empty)."""
    if not latencies_ms:
        return {k: float("nan") for k in ("p50", "p95", "p99", "mean", "max")}
    a = np.asarray(latencies_ms)
    return {
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "max": float(a.max()),
    }


def latency_phase(
    url: str, bodies: list[bytes], warmup: int, requests: int, timeout_s: float, after_warmup=None
) -> dict:
    """One client: ``warmup`` requests not measured, then ``requests`` measured; latencies in ms.
    ``after_warmup()`` (optional) is called between the two."""
    deadline = time.monotonic() + timeout_s
    warm = run_client(url, bodies, warmup, 0, deadline)
    if after_warmup is not None:
        after_warmup()
    res = run_client(url, bodies, requests, warmup, deadline)
    return {"requests": len(res.latencies_ms), "errors": warm.errors + res.errors, **percentiles(res.latencies_ms)}


def throughput_phase(url: str, bodies: list[bytes], clients: int, per_client: int, timeout_s: float) -> dict:
    """``clients`` threads sending ``per_client`` requests each; requests/s = answered requests / wall seconds."""
    deadline = time.monotonic() + timeout_s
    barrier = threading.Barrier(clients + 1)
    results: list[ClientResult | None] = [None] * clients

    def work(k: int) -> None:
        results[k] = run_client(url, bodies, per_client, k * per_client, deadline, barrier)

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait(timeout=60)
    t0 = time.perf_counter()
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()) + 130)
    wall = time.perf_counter() - t0
    done = [r for r in results if r is not None]
    latencies = [ms for r in done for ms in r.latencies_ms]
    errors = [e for r in done for e in r.errors]
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "wall_s": wall,
        "rps": len(latencies) / wall if wall > 0 else float("nan"),
        **percentiles(latencies),
    }


def stage_totals(base_url: str) -> dict[str, tuple[float, float]]:
    """``{stage: (sum of seconds, count)}`` of the server's ``alpr_stage_seconds`` histogram (its ``/metrics``),
    summed over models (:func:`alpr.model.stages.stage_totals`)."""
    import httpx

    from alpr.model import stages

    return stages.stage_totals(httpx.get(base_url + "/metrics", timeout=30, trust_env=False).text)


def stage_means_ms(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Mean milliseconds per request of each stage between two :func:`stage_totals`, in
    :data:`alpr.model.stages.STAGES` order (stages with no request in between left out)."""
    from alpr.model.stages import STAGES

    out = {}
    for stage in STAGES:
        s1, n1 = after.get(stage, (0.0, 0.0))
        s0, n0 = before.get(stage, (0.0, 0.0))
        if n1 > n0:
            out[stage] = (s1 - s0) / (n1 - n0) * 1000
    return out


# --- report -------------------------------------------------------------------------------------------------------


def format_report(r: dict) -> str:
    """The human-readable table of a result dict (see :func:`run_benchmark`)."""
    lat = r["latency"]
    lines = [
        f"model: {r['model']} -> {r['model_uri']}, back end: {r.get('backend', 'auto')}",
        f"protocol: {r['protocol']}, {r['batch']} image(s)/request, {WIDTH}x{HEIGHT} JPEG q{r['jpeg_quality']} "
        f"(mean {r['jpeg_kb']:.0f} KB), server workers: {r['workers']}, ONNX Runtime threads: "
        f"{r.get('onnx_threads', 0) or 'one per core'}, reads at once per worker: "
        f"{r.get('server_concurrency') or 'the server default'}",
        f"machine: {r['cpus']} CPUs, load average before start {r['loadavg_before']}",
        f"server start-up until ready: {r['startup_s']:.1f} s, RSS when ready: {r['rss_ready_mb']:.0f} MB",
        "",
        f"latency, 1 client, {lat['requests']} requests after {r['warmup']} warm-up (ms):",
        f"  p50 {lat['p50']:.1f}   p95 {lat['p95']:.1f}   p99 {lat['p99']:.1f}   mean {lat['mean']:.1f}   "
        f"max {lat['max']:.1f}   errors {len(lat['errors'])}",
        "",
        "throughput:",
        f"  {'clients':>7} {'requests':>8} {'wall s':>7} {'req/s':>7} {'img/s':>7} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'errors':>6}",
    ]
    for t in r["throughput"]:
        lines.append(
            f"  {t['clients']:>7} {t['requests']:>8} {t['wall_s']:>7.1f} {t['rps']:>7.2f} "
            f"{t['rps'] * r['batch']:>7.2f} {t['p50']:>8.1f} {t['p95']:>8.1f} {len(t['errors']):>6}"
        )
    lines += ["", f"peak server RSS during the run: {r['rss_peak_mb']:.0f} MB"]
    if r.get("stages_ms"):
        lines += ["", f"where a request's time goes (1 client, mean of {lat['requests']} requests):"]
        other = lat["mean"] - sum(r["stages_ms"].values())
        rows = [*r["stages_ms"].items(), ("other: HTTP, kserve" + (", JSON" if r["protocol"] == "v1" else ""), other)]
        for stage, ms in rows:
            lines.append(f"  {stage:<28} {ms:7.2f} ms {100 * ms / lat['mean']:5.1f} %")
        lines.append(f"  {'total: the mean latency':<28} {lat['mean']:7.2f} ms")
    errors = lat["errors"] + [e for t in r["throughput"] for e in t["errors"]]
    if errors:
        lines.append(f"first error: {errors[0]}")
    return "\n".join(lines)


def run_benchmark(args: argparse.Namespace, backend: str = "auto") -> dict:
    """Generate the images, start the server with ``--backend backend``, run the phases, stop the server; returns
    the figures.

    Raises:
        RuntimeError: the server did not become ready; alpr.model.inference.ModelError (a RuntimeError): ``latest``
            was asked for and no model has been selected.
    """
    from alpr.model.inference import resolve_model_uri

    model_uri = resolve_model_uri(args.model)  # fails fast (ModelError) when 'latest' has no model
    jpegs = make_jpegs(args.images, args.seed, args.jpeg_quality)
    bodies = request_bodies(jpegs, args.protocol, args.batch)
    path = "/v1/models/alpr:predict" if args.protocol == "v1" else "/v2/models/alpr/infer"
    result = {
        "model": args.model,
        "model_uri": model_uri,
        "backend": backend,
        "protocol": args.protocol,
        "batch": args.batch,
        "workers": args.workers,
        "onnx_threads": args.onnx_threads,
        "server_concurrency": args.server_concurrency,
        "jpeg_quality": args.jpeg_quality,
        "jpeg_kb": float(np.mean([len(j) for j in jpegs]) / 1024),
        "warmup": args.warmup,
        "cpus": os.cpu_count(),
        "loadavg_before": tuple(round(x, 2) for x in os.getloadavg()),
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp,
        served(
            args.model,
            args.workers,
            args.startup_timeout,
            Path(tmp),
            [
                *("--backend", backend, "--onnx-threads", str(args.onnx_threads)),
                *(("--concurrency", str(args.server_concurrency)) if args.server_concurrency is not None else ()),
            ],
        ) as server,
    ):
        url = server.base_url + path
        sampler = server.sampler
        result["startup_s"] = server.startup_s
        result["rss_ready_mb"] = sampler.current_mb()
        before: dict[str, tuple[float, float]] = {}
        result["latency"] = latency_phase(
            url,
            bodies,
            args.warmup,
            args.requests,
            args.phase_timeout,
            after_warmup=lambda: before.update(stage_totals(server.base_url)),
        )
        result["stages_ms"] = stage_means_ms(before, stage_totals(server.base_url))
        result["throughput"] = [
            throughput_phase(url, bodies, c, args.per_client, args.phase_timeout) for c in args.concurrency
        ]
    result["rss_peak_mb"] = sampler.peak_mb
    return result


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="latest", help="model directory, storage URI or 'latest' (default)")
    p.add_argument("--protocol", choices=("v1", "v2"), default="v1")
    p.add_argument("--batch", type=int, default=1, help="images per request (default 1)")
    p.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    p.add_argument(
        "--onnx-threads", type=int, default=0, help="the server's ONNX Runtime intra-op threads (default 0: per core)"
    )
    p.add_argument(
        "--server-concurrency",
        type=int,
        default=None,
        help="the server's --concurrency: requests one worker reads at once (default: the server's default)",
    )
    p.add_argument("--images", type=int, default=16, help="distinct images generated (default 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jpeg-quality", type=int, default=90)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--requests", type=int, default=50, help="measured requests of the latency phase")
    p.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 2, 4, 8],
        help="comma-separated client counts (default 1,2,4,8)",
    )
    p.add_argument("--per-client", type=int, default=16, help="requests per client in a throughput phase")
    p.add_argument("--phase-timeout", type=float, default=180, help="time limit of each phase in s")
    p.add_argument("--startup-timeout", type=float, default=180, help="time limit for the server to be ready in s")
    p.add_argument(
        "--backends",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=["auto"],
        help="comma-separated server back ends, each benchmarked in turn: auto (default), onnx, pytorch",
    )
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    bad = [b for b in args.backends if b not in ("auto", "onnx", "pytorch")]
    if bad or not args.backends:
        p.error(f"--backends: each of auto, onnx, pytorch, got {','.join(args.backends) or 'nothing'}")
    if (
        min(args.batch, args.images, args.workers, args.per_client, *args.concurrency) < 1
        or (args.server_concurrency is not None and args.server_concurrency < 1)
        or args.requests < 1
    ):
        p.error("counts must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table (and write ``--json``); returns 0, or 1 when the server failed."""
    args = _parse_args(argv)
    runs = []
    for backend in args.backends:
        try:
            runs.append(run_benchmark(args, backend))
        except RuntimeError as exc:
            print(f"error ({backend} back end): {exc}", file=sys.stderr)
            return 1
        print(format_report(runs[-1]) + "\n")
    result: dict = runs[0] if len(runs) == 1 else {"runs": runs}
    if len(runs) == 2:
        result["ratios"] = ratios(runs[1], runs[0])
        print(format_ratios(result["ratios"], runs[1]["backend"], runs[0]["backend"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def ratios(slow: dict, fast: dict) -> dict:
    """How many times ``slow``'s latencies are ``fast``'s, and ``fast``'s throughputs ``slow``'s (> 1: ``fast`` is
    faster), from two :func:`run_benchmark` results: ``{"p50", "p95", "startup_s", "rps": {clients: ratio}}``."""
    out = {k: slow["latency"][k] / fast["latency"][k] for k in ("p50", "p95") if fast["latency"][k] > 0}
    out["startup_s"] = slow["startup_s"] / fast["startup_s"] if fast["startup_s"] > 0 else float("nan")
    slow_rps = {t["clients"]: t["rps"] for t in slow["throughput"]}
    out["rps"] = {
        str(t["clients"]): t["rps"] / slow_rps[t["clients"]] for t in fast["throughput"] if slow_rps.get(t["clients"])
    }
    slow_st, fast_st = slow.get("stages_ms", {}), fast.get("stages_ms", {})
    out["stages"] = {k: slow_st[k] / fast_st[k] for k in fast_st if k in slow_st and fast_st[k] > 0}
    return out


def format_ratios(r: dict, slow: str, fast: str) -> str:
    """One paragraph of :func:`ratios`."""
    rps = ", ".join(f"{c} client(s) {v:.2f}x" for c, v in r["rps"].items())
    stages = ", ".join(f"{k} {v:.2f}x" for k, v in r.get("stages", {}).items())
    return (
        f"{slow} / {fast}: latency p50 {r.get('p50', float('nan')):.2f}x, p95 {r.get('p95', float('nan')):.2f}x, "
        f"start-up {r['startup_s']:.2f}x; throughput {fast} / {slow}: {rps}"
        + (f"; per stage {slow} / {fast}: {stages}" if stages else "")
    )


if __name__ == "__main__":
    sys.exit(main())
