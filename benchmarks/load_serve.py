"""A load run of the KServe model server: concurrent clients mixing good and bad requests for a fixed time.

Starts ``python -m alpr.serving --model MODEL`` on a free loopback port (the start-up, image and server helpers of
``bench_serve.py``), then ``--clients`` threads send requests back to back for ``--duration`` seconds, each walking
the same fixed schedule of 16 request kinds from its own offset: 12 good (1280x720 JPEGs of synthetic plates; V1
with 1 or 3 images, V2 with 1 or 2) and 4 bad (one each: undecodable base64, bytes that are no image, a missing field, a
wrong V2 datatype). It checks:

- no response is a 5xx and no request fails at the transport level;
- every good request gets HTTP 200 with one reading (a ``{"plates": [...]}`` object) per image, V1 and V2;
- every bad request gets HTTP 400 with an error naming the instance (or the field) at fault;
- the server is still alive and ready at the end;
- memory does not keep growing: the server's RSS (process and children) is sampled every ``--rss-period`` s; the
  least-squares slope over the second half of the run must stay under ``--max-growth-mb-per-min``.

With ``--log-url URL`` the server also sends its prediction log (``python -m alpr.serving --log-url``: each
request and response as a CloudEvent, alpr/serving/eventlog.py) to URL -- ``local`` starts a receiver on loopback
that answers 200 at once and counts the events --, and the run reports the server's ``alpr_payload_log_*``
counters; with ``local`` it also checks that no event was dropped or failed. Compare the p50 latencies of a run
with and a run without it for the logging overhead.

It prints a table per request kind, the RSS figures and the checks, writes everything to ``--json``, and exits
1 when a check fails (2 when the server does not start). Traffic goes to 127.0.0.1 only.

Usage::

    ALPR_WORKSPACE=.alpr .venv/bin/python benchmarks/load_serve.py --model latest --duration 120 --json load.json
    ALPR_WORKSPACE=.alpr .venv/bin/python benchmarks/load_serve.py --model latest --log-url local --json log.json
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    import bench_serve
except ImportError:  # imported as benchmarks.load_serve from the repository root
    from benchmarks import bench_serve

V1_PATH = "/v1/models/alpr:predict"
V2_PATH = "/v2/models/alpr/infer"
READY_PATH = "/v2/models/alpr/ready"
#: How long one request may take before it counts as a transport failure, in seconds.
REQUEST_TIMEOUT_S = 120.0


# --- the request kinds ----------------------------------------------------------------------------------------------


@dataclass
class Kind:
    """One kind of request: its bodies (rotating through the images), the status expected and how to check the
    answer (``check(status, json_or_None) -> problem or None``)."""

    name: str
    path: str
    bodies: list[bytes]
    expect: int
    images: int
    check: Callable[[int, object], str | None]
    good: bool = field(init=False)

    def __post_init__(self) -> None:
        self.good = self.expect == 200


def _v1(b64s: list[str]) -> bytes:
    return json.dumps({"instances": [{"image_bytes": {"b64": s}} for s in b64s]}).encode()


def _v2(data: list, datatype: str = "BYTES") -> bytes:
    tensor = {"name": "image", "datatype": datatype, "shape": [len(data)], "data": data}
    return json.dumps({"inputs": [tensor]}).encode()


def _reading_problem(reading: object, i: int) -> str | None:
    if not isinstance(reading, dict) or not isinstance(reading.get("plates"), list):
        return f'reading {i} is not a {{"plates": [...]}} object: {str(reading)[:120]}'
    for plate in reading["plates"]:
        if not isinstance(plate, dict) or not {"text", "box", "score", "valid", "layout"} <= set(plate):
            return f"reading {i} has a malformed plate: {str(plate)[:120]}"
    return None


def _check_v1(n: int) -> Callable[[int, object], str | None]:
    def check(status: int, body: object) -> str | None:
        if status != 200:
            return f"HTTP {status}, expected 200: {str(body)[:200]}"
        predictions = body.get("predictions") if isinstance(body, dict) else None
        if not isinstance(predictions, list) or len(predictions) != n:
            return f"expected {n} predictions, got {str(body)[:200]}"
        return next((p for p in (_reading_problem(r, i) for i, r in enumerate(predictions)) if p), None)

    return check


def _check_v2(n: int) -> Callable[[int, object], str | None]:
    def check(status: int, body: object) -> str | None:
        if status != 200:
            return f"HTTP {status}, expected 200: {str(body)[:200]}"
        outputs = body.get("outputs") if isinstance(body, dict) else None
        if not isinstance(outputs, list) or len(outputs) != 1:
            return f"expected one output, got {str(body)[:200]}"
        out = outputs[0]
        if (
            out.get("name") != "plates"
            or out.get("datatype") != "BYTES"
            or out.get("shape") != [n]
            or not isinstance(out.get("data"), list)
            or len(out["data"]) != n
        ):
            return f"expected output plates BYTES [{n}], got {str(out)[:200]}"
        for i, text in enumerate(out["data"]):
            try:
                problem = _reading_problem(json.loads(text), i)
            except (TypeError, ValueError):
                problem = f"reading {i} is not JSON: {str(text)[:120]}"
            if problem:
                return problem
        return None

    return check


def _check_400(fragment: str) -> Callable[[int, object], str | None]:
    def check(status: int, body: object) -> str | None:
        if status != 400:
            return f"HTTP {status}, expected 400: {str(body)[:200]}"
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, str) or fragment not in error:
            return f"400 without an error naming {fragment!r}: {str(body)[:200]}"
        return None

    return check


def request_kinds(jpegs: list[bytes]) -> dict[str, Kind]:
    """The request kinds, their bodies pre-encoded (each good kind rotates through ``jpegs``)."""
    b64 = [base64.b64encode(j).decode("ascii") for j in jpegs]
    n = len(b64)

    def rotating(count: int) -> list[list[str]]:
        return [[b64[(i + k) % n] for k in range(count)] for i in range(n)]

    not_an_image = base64.b64encode(b"GIF89a: neither a JPEG nor a PNG, so not decodable here").decode("ascii")
    kinds = [
        Kind("good_v1_x1", V1_PATH, [_v1(g) for g in rotating(1)], 200, 1, _check_v1(1)),
        Kind("good_v1_x3", V1_PATH, [_v1(g) for g in rotating(3)], 200, 3, _check_v1(3)),
        Kind("good_v2_x1", V2_PATH, [_v2(g) for g in rotating(1)], 200, 1, _check_v2(1)),
        Kind("good_v2_x2", V2_PATH, [_v2(g) for g in rotating(2)], 200, 2, _check_v2(2)),
        # the undecodable image is the second instance: the error must name instance 1
        Kind("bad_base64_v1", V1_PATH, [_v1([b64[0], "this is %% not base64 !!"])], 400, 2, _check_400("instance 1")),
        Kind("bad_image_v2", V2_PATH, [_v2([not_an_image])], 400, 1, _check_400("instance 0")),
        Kind(
            "bad_missing_field_v1",
            V1_PATH,
            [json.dumps({"instances": [{"image_bytes": {}}]}).encode()],
            400,
            1,
            _check_400("instance 0"),
        ),
        Kind("bad_datatype_v2", V2_PATH, [_v2([1.0], datatype="FP32")], 400, 1, _check_400("datatype")),
    ]
    return {k.name: k for k in kinds}


#: The fixed mix every client walks (from its own offset): 12 good requests, 4 bad ones.
SCHEDULE = [
    "good_v1_x1",
    "good_v2_x1",
    "good_v1_x3",
    "bad_base64_v1",
    "good_v2_x2",
    "good_v1_x1",
    "good_v2_x1",
    "bad_missing_field_v1",
    "good_v1_x1",
    "good_v2_x2",
    "good_v1_x3",
    "bad_datatype_v2",
    "good_v2_x1",
    "good_v1_x1",
    "good_v2_x1",
    "bad_image_v2",
]


# --- the prediction log: a loopback receiver, a server started with --log-url, its counters ------------------------

#: The model server's prediction-log counters (alpr/serving/eventlog.py), as read from its /metrics.
PAYLOAD_LOG_METRICS = ("alpr_payload_log_sent_total", "alpr_payload_log_dropped_total", "alpr_payload_log_failed_total")


class LogSink:
    """A receiver of the prediction log on 127.0.0.1 (a free port): answers every POST 200 at once, counting the
    events by ``ce-type`` and their body bytes. :meth:`close` stops it."""

    def __init__(self) -> None:
        self.events: dict[str, int] = {}
        self.bytes = 0
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with sink._lock:
                    kind = self.headers.get("ce-type", "?")
                    sink.events[kind] = sink.events.get(kind, 0) + 1
                    sink.bytes += len(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", bench_serve.free_port()), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/events"
        threading.Thread(target=self._server.serve_forever, name="log-sink", daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def payload_log_counters(base_url: str) -> dict[str, float]:
    """The server's ``alpr_payload_log_*_total`` counters from its ``/metrics`` (``sent``, ``dropped``,
    ``failed``; NaN for one not found)."""
    import httpx

    with httpx.Client(base_url=base_url, timeout=10, trust_env=False) as client:
        text = client.get("/metrics").text
    out = {}
    for name in PAYLOAD_LOG_METRICS:
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        out[name.removeprefix("alpr_payload_log_").removesuffix("_total")] = (
            float(match.group(1)) if match else float("nan")
        )
    return out


# --- the load -------------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What happened to the requests of one kind (latencies in ms of the answers as expected)."""

    sent: int = 0
    as_expected: int = 0
    server_errors: int = 0  # 5xx
    transport_errors: int = 0
    wrong: int = 0  # answered, but not as expected (wrong status or body)
    latencies_ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the first few

    def note(self, problem: str) -> None:
        if len(self.problems) < 5:
            self.problems.append(problem)


def run_client(
    base_url: str,
    kinds: dict[str, Kind],
    offset: int,
    deadline: float,
    tallies: dict[str, Tally],
    lock: threading.Lock,
    start: threading.Barrier,
) -> None:
    """Send the schedule's requests back to back from ``offset`` until ``deadline`` (monotonic), tallying each."""
    import httpx

    headers = {"Content-Type": "application/json"}
    step = 0
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S, trust_env=False) as client:
        start.wait(timeout=60)
        while time.monotonic() < deadline:
            kind = kinds[SCHEDULE[(offset + step) % len(SCHEDULE)]]
            body = kind.bodies[(offset + step) % len(kind.bodies)]
            step += 1
            t0 = time.perf_counter()
            try:
                response = client.post(kind.path, content=body, headers=headers)
            except httpx.HTTPError as exc:
                with lock:
                    tally = tallies[kind.name]
                    tally.sent += 1
                    tally.transport_errors += 1
                    tally.note(f"{type(exc).__name__}: {exc}")
                continue
            ms = (time.perf_counter() - t0) * 1000
            try:
                payload = response.json()
            except ValueError:
                payload = response.text
            problem = kind.check(response.status_code, payload)
            with lock:
                tally = tallies[kind.name]
                tally.sent += 1
                if response.status_code >= 500:
                    tally.server_errors += 1
                    tally.note(problem or f"HTTP {response.status_code}")
                elif problem:
                    tally.wrong += 1
                    tally.note(problem)
                else:
                    tally.as_expected += 1
                    tally.latencies_ms.append(ms)


def rss_trend(samples: list[tuple[float, float]]) -> dict[str, float]:
    """Start / peak / end RSS (MB) of ``[(seconds, MB), ...]`` and the least-squares slope (MB per minute) over
    the second half of the samples (NaN with fewer than 3 there)."""
    if not samples:
        nan = float("nan")
        return {"start_mb": nan, "peak_mb": nan, "end_mb": nan, "slope_last_half_mb_per_min": nan}
    t = np.array([s[0] for s in samples])
    mb = np.array([s[1] for s in samples])
    half = t >= t[0] + (t[-1] - t[0]) / 2
    slope = float(np.polyfit(t[half], mb[half], 1)[0] * 60) if half.sum() >= 3 else float("nan")
    return {
        "start_mb": float(mb[0]),
        "peak_mb": float(mb.max()),
        "end_mb": float(mb[-1]),
        "slope_last_half_mb_per_min": slope,
    }


def run_load(args: argparse.Namespace) -> dict:
    """Generate the images, start the server, run the clients for ``args.duration`` s, check; returns the figures.

    Raises:
        RuntimeError: the server did not become ready (its log tail is in the message).
    """
    import httpx

    jpegs = bench_serve.make_jpegs(args.images, args.seed, args.jpeg_quality)
    kinds = request_kinds(jpegs)
    tallies = {name: Tally() for name in kinds}
    lock = threading.Lock()
    samples: list[tuple[float, float]] = []
    result: dict = {
        "model": args.model,
        "clients": args.clients,
        "duration_s": args.duration,
        "workers": args.workers,
        "images": f"{args.images} x {bench_serve.WIDTH}x{bench_serve.HEIGHT} JPEG q{args.jpeg_quality}",
        "schedule": SCHEDULE,
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "log_url": args.log_url,
    }
    sink = LogSink() if args.log_url == "local" else None
    log_url = sink.url if sink is not None else args.log_url
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="load_serve_") as tmp:
        if sink is not None:
            stack.callback(sink.close)
        with bench_serve.served(
            args.model, args.workers, args.startup_timeout, Path(tmp), ["--log-url", log_url] if log_url else []
        ) as server:
            base_url, proc, sampler = server.base_url, server.proc, server.sampler
            result["startup_s"] = server.startup_s
            stop_sampling = threading.Event()
            t_start = time.monotonic()

            def sample() -> None:
                while True:
                    samples.append((time.monotonic() - t_start, sampler.current_mb()))
                    if stop_sampling.wait(args.rss_period):
                        break

            sampling = threading.Thread(target=sample, name="rss-1s", daemon=True)
            sampling.start()
            deadline = t_start + args.duration
            barrier = threading.Barrier(args.clients)
            clients = [
                threading.Thread(
                    target=run_client,
                    name=f"client-{k}",
                    daemon=True,
                    args=(base_url, kinds, k * 3, deadline, tallies, lock, barrier),
                )
                for k in range(args.clients)
            ]
            for c in clients:
                c.start()
            for c in clients:
                c.join(timeout=max(0.0, deadline - time.monotonic()) + REQUEST_TIMEOUT_S + 60)
            wall = time.monotonic() - t_start
            stop_sampling.set()
            sampling.join(timeout=10)
            result["clients_stuck"] = sum(c.is_alive() for c in clients)
            result["wall_s"] = wall
            alive = proc.poll() is None
            ready = False
            if alive:
                with httpx.Client(base_url=base_url, timeout=10, trust_env=False) as client:
                    try:
                        ready = client.get(READY_PATH).status_code == 200
                    except httpx.HTTPError:
                        ready = False
            result["server_alive_and_ready_after"] = alive and ready
            if log_url is not None and alive:
                time.sleep(2.0)  # let the sender thread empty its queue
                result["payload_log"] = payload_log_counters(base_url)
                if sink is not None:
                    result["payload_log"]["receiver_events"] = dict(sink.events)
                    result["payload_log"]["receiver_bytes"] = sink.bytes
        result["server_log_tail"] = server.log_path.read_text(errors="replace")[-2000:]
    result["kinds"] = {}
    for name, tally in tallies.items():
        kind = kinds[name]
        result["kinds"][name] = {
            "expect": kind.expect,
            "images_per_request": kind.images,
            "sent": tally.sent,
            "as_expected": tally.as_expected,
            "server_errors": tally.server_errors,
            "transport_errors": tally.transport_errors,
            "wrong": tally.wrong,
            "problems": tally.problems,
            **{
                f"{k}_ms": v
                for k, v in bench_serve.percentiles(tally.latencies_ms).items()
                if k in ("p50", "p95", "max")
            },
        }
    good = [t for n, t in tallies.items() if kinds[n].good]
    bad = [t for n, t in tallies.items() if not kinds[n].good]
    answered_images = sum(t.as_expected * kinds[n].images for n, t in tallies.items() if kinds[n].good)
    result["totals"] = {
        "sent": sum(t.sent for t in tallies.values()),
        "good_sent": sum(t.sent for t in good),
        "bad_sent": sum(t.sent for t in bad),
        "server_errors": sum(t.server_errors for t in tallies.values()),
        "transport_errors": sum(t.transport_errors for t in tallies.values()),
        "requests_per_s": sum(t.sent for t in tallies.values()) / result["wall_s"],
        "good_images_read_per_s": answered_images / result["wall_s"],
    }
    result["rss"] = {
        **rss_trend(samples),
        "peak_50ms_mb": sampler.peak_mb,
        "period_s": args.rss_period,
        "samples": [[round(t, 2), round(mb, 1)] for t, mb in samples],
    }
    slope = result["rss"]["slope_last_half_mb_per_min"]
    totals = result["totals"]
    result["checks"] = {
        "no_5xx": totals["server_errors"] == 0,
        "no_transport_errors": totals["transport_errors"] == 0 and result["clients_stuck"] == 0,
        "every_good_request_read": all(t.sent and t.as_expected == t.sent for t in good),
        "every_bad_request_400": all(t.sent and t.as_expected == t.sent for t in bad),
        "memory_not_growing": bool(np.isfinite(slope) and slope <= args.max_growth_mb_per_min),
        "server_alive_and_ready_after": result["server_alive_and_ready_after"],
    }
    if args.log_url == "local":  # a receiver that answers at once: every event arrives
        plog = result.get("payload_log", {})
        result["checks"]["payload_log_all_delivered"] = bool(
            plog
            and plog["dropped"] == 0
            and plog["failed"] == 0
            and plog["sent"] == sum(plog["receiver_events"].values())
        )
    result["passed"] = all(result["checks"].values())
    return result


# --- report ---------------------------------------------------------------------------------------------------------


def format_report(r: dict) -> str:
    """The human-readable summary of :func:`run_load`'s result."""
    from tabulate import tabulate

    rows = [
        [
            name,
            k["expect"],
            k["images_per_request"],
            k["sent"],
            k["as_expected"],
            k["server_errors"],
            k["transport_errors"],
            k["wrong"],
            k["p50_ms"],
            k["p95_ms"],
        ]
        for name, k in r["kinds"].items()
    ]
    table = tabulate(
        rows,
        headers=["kind", "expect", "images", "sent", "as expected", "5xx", "transport", "wrong", "p50 ms", "p95 ms"],
        floatfmt=".0f",
    )
    t, rss = r["totals"], r["rss"]
    lines = [
        f"model: {r['model']}, {r['clients']} clients for {r['duration_s']:.0f} s (wall {r['wall_s']:.1f} s), "
        f"server workers: {r['workers']}, images: {r['images']}",
        f"machine: {r['cpus']} CPUs, load average before start {r['loadavg_before']}; "
        f"server ready after {r['startup_s']:.1f} s",
        "",
        table,
        "",
        f"requests: {t['sent']} ({t['good_sent']} good, {t['bad_sent']} bad), {t['requests_per_s']:.2f} req/s, "
        f"{t['good_images_read_per_s']:.2f} images read/s; 5xx: {t['server_errors']}, "
        f"transport errors: {t['transport_errors']}",
        f"server RSS (MB): start {rss['start_mb']:.0f}, peak {rss['peak_mb']:.0f} (50 ms sampling: "
        f"{rss['peak_50ms_mb']:.0f}), end {rss['end_mb']:.0f}; slope over the second half "
        f"{rss['slope_last_half_mb_per_min']:+.1f} MB/min",
        *(
            [
                f"prediction log to {r['log_url']}: sent {r['payload_log']['sent']:.0f}, dropped "
                f"{r['payload_log']['dropped']:.0f}, failed {r['payload_log']['failed']:.0f}"
                + (f"; received {r['payload_log']['receiver_events']}" if "receiver_events" in r["payload_log"] else "")
            ]
            if r.get("payload_log")
            else []
        ),
        "",
        *(f"{'PASS' if ok else 'FAIL'}  {name}" for name, ok in r["checks"].items()),
    ]
    problems = [f"{name}: {p}" for name, k in r["kinds"].items() for p in k["problems"]]
    if problems:
        lines += ["", "first problems:", *(f"  {p}" for p in problems[:10])]
    lines.append(f"\n{'PASSED' if r['passed'] else 'FAILED'}")
    return "\n".join(lines)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="latest", help="model directory, storage URI or 'latest' (default)")
    p.add_argument("--duration", type=float, default=120.0, help="seconds of load (default 120)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    p.add_argument("--images", type=int, default=16, help="distinct images generated (default 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jpeg-quality", type=int, default=90)
    p.add_argument("--rss-period", type=float, default=1.0, help="RSS sampling period in s (default 1)")
    p.add_argument(
        "--max-growth-mb-per-min",
        type=float,
        default=25.0,
        help="largest RSS slope over the second half that still counts as not growing (default 25)",
    )
    p.add_argument("--startup-timeout", type=float, default=180, help="time limit for the server to be ready in s")
    p.add_argument("--json", type=Path, help="also write the result to this JSON file")
    p.add_argument(
        "--log-url",
        default=None,
        help="run the server with its prediction log sent to this URL (python -m alpr.serving --log-url); 'local': "
        "to a receiver on loopback that answers at once (default: no log)",
    )
    args = p.parse_args(argv)
    if args.log_url == "":
        args.log_url = None
    if min(args.clients, args.workers, args.images) < 1 or args.duration <= 0 or args.rss_period <= 0:
        p.error("--clients, --workers and --images must be >= 1; --duration and --rss-period > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the load, print the summary (and write ``--json``); 0 when every check passed, 1 when one failed, 2 when
    the server did not start."""
    args = _parse_args(argv)
    try:
        result = run_load(args)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
