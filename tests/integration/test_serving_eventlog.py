"""The prediction log of a live ``python -m alpr.serving --log-url URL`` (the real tiny model) sent to a real HTTP
receiver on loopback: each request and response as a binary-mode CloudEvent exactly as KServe's payload logger sends
it (alpr/serving/eventlog.py's docstring), for V1 JSON, V2 JSON and V2 with the binary data extension; and a
receiver that is down (connection refused) or slow (answers after the send timeout, queue of one): the server
answers every request 200 all the same and counts the failures and drops on /metrics."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from live_server import free_port, serve
from readings import check_reading, check_v1_predictions, check_v2_plates, post_json, v1_body, v2_body

NAME = "plates"
PREDICT, INFER = f"/v1/models/{NAME}:predict", f"/v2/models/{NAME}/infer"
#: ce-time / ce-recordedtime as Go's RFC3339Nano writes them (UTC, Z, fraction without trailing zeros).
GO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z")


@dataclass
class Received:
    """One POST the receiver got: its path, headers (lower-case names) and body."""

    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A real HTTP server on 127.0.0.1 recording every POST; ``delay_s`` sleeps before answering 200 (a slow
    monitor). :meth:`stop` closes its socket: later connections are refused."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.events: list[Received] = []
        self.delay_s = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.events.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                time.sleep(receiver.delay_s)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def wait_for(self, count: int, timeout_s: float = 20) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.events)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _counters_when(client, done, timeout_s: float = 20) -> dict[str, float]:
    """The counters once ``done(counters)`` holds (the sender counts an event when the receiver's answer is in,
    a little after the receiver has it), or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    counters = _counters(client)
    while not done(counters) and time.monotonic() < deadline:
        time.sleep(0.1)
        counters = _counters(client)
    return counters


def _counters(client) -> dict[str, float]:
    """The prediction log's counters on the server's /metrics."""
    text = client.get("/metrics").text
    out = {}
    for name in ("alpr_payload_log_sent_total", "alpr_payload_log_dropped_total", "alpr_payload_log_failed_total"):
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        assert match, f"{name} not on /metrics"
        out[name.removeprefix("alpr_payload_log_").removesuffix("_total")] = float(match.group(1))
    return out


@pytest.fixture(scope="module")
def jpegs(tiny_coco):
    """Two real JPEG files of the tiny data set, as they are."""
    return [p.read_bytes() for p in sorted((tiny_coco / "images").glob("*.jpg"))[:2]]


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def logged(tiny_model_dir, receiver, tmp_path_factory):
    """The server sending its log to ``receiver`` (timeout 1 s); yields its httpx client."""
    port = free_port()
    args = [f"--model_name={NAME}", f"--model_dir={tiny_model_dir}", f"--http_port={port}"]
    args += ["--log-url", receiver.url, "--log-timeout", "1"]
    with serve(args, tmp_path_factory.mktemp("eventlog"), port=port, model_name=NAME) as client:
        yield client, port


def _pair(events: list[Received], event_id: str) -> tuple[Received, Received]:
    mine = [e for e in events if e.headers.get("ce-id") == event_id]
    kinds = [e.headers["ce-type"] for e in mine]
    assert kinds == ["org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"], kinds
    return mine[0], mine[1]


def _check_kserve_headers(event: Received, port: int, content_type: str | None) -> None:
    h = event.headers
    assert event.path == "/events"
    assert h["ce-specversion"] == "1.0" and h["ce-source"] == f"http://localhost:{port}/"
    assert (h["ce-inferenceservicename"], h["ce-namespace"], h["ce-component"], h["ce-endpoint"]) == (
        NAME,
        "",
        "predictor",
        "",
    )
    assert GO_TIME.fullmatch(h["ce-time"]) and GO_TIME.fullmatch(h["ce-recordedtime"])
    now = datetime.now(UTC)
    assert now - timedelta(minutes=5) < datetime.fromisoformat(h["ce-time"]) <= now
    assert isinstance(json.loads(h["ce-metadata"]), dict)
    assert h.get("content-type") == content_type
    assert int(h["content-length"]) == len(event.body)


def test_v1_and_v2_json_requests_and_responses_are_logged_byte_for_byte(logged, receiver, jpegs):
    client, port = logged
    before = _counters(client)
    b64 = [base64.b64encode(j).decode("ascii") for j in jpegs]
    v1 = json.dumps(v1_body(*b64)).encode()
    answer1 = client.post(PREDICT, content=v1, headers={"Content-Type": "application/json"})
    check_v1_predictions(answer1, 2)
    event_id = str(uuid.uuid4())
    v2 = json.dumps(v2_body(b64[:1])).encode()
    answer2 = client.post(INFER, content=v2, headers={"Content-Type": "application/json", "Ce-Id": event_id})
    check_v2_plates(answer2, 1, model_name=NAME)

    events = receiver.wait_for(4)
    ids = list(dict.fromkeys(e.headers["ce-id"] for e in events))
    assert len(events) == 4 and ids[1] == event_id
    request1, response1 = _pair(events, ids[0])
    assert request1.body == v1 and response1.body == answer1.content
    request2, response2 = _pair(events, event_id)  # the client's Ce-Id names the inference
    assert request2.body == v2 and response2.body == answer2.content
    for event in (request1, response1, request2, response2):
        _check_kserve_headers(event, port, "application/json")
        assert json.loads(event.headers["ce-metadata"]) == {}
    assert request1.headers["ce-time"] <= response1.headers["ce-time"]
    after = _counters_when(client, lambda c: c["sent"] - before["sent"] >= 4)
    assert after["sent"] - before["sent"] == 4 and after["failed"] == before["failed"]


def test_v2_binary_data_extension_is_logged_raw_with_its_header_length(logged, receiver, jpegs):
    client, port = logged
    start = len(receiver.events)
    head = json.dumps(
        {
            "id": "bin-1",
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 0}}],
        }
    )
    tensor = len(jpegs[0]).to_bytes(4, "little") + jpegs[0]
    head = head.replace('"binary_data_size": 0', f'"binary_data_size": {len(tensor)}').encode()
    body = head + tensor
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))}
    answer = client.post(INFER, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    check_v2_plates(answer, 1, request_id="bin-1", model_name=NAME)

    events = receiver.wait_for(start + 2)[start:]
    request, response = _pair(events, events[0].headers["ce-id"])
    assert request.body == body and response.body == answer.content
    for event in (request, response):
        # KServe's logger: the request's Content-Type on both events; the header length as metadata
        _check_kserve_headers(event, port, "application/octet-stream")
        assert json.loads(event.headers["ce-metadata"]) == {"Inference-Header-Content-Length": [str(len(head))]}
    # what a receiver does with it: split the request at the header length, read the raw image
    length = int(json.loads(request.headers["ce-metadata"])["Inference-Header-Content-Length"][0])
    assert json.loads(request.body[:length])["id"] == "bin-1" and request.body[length + 4 :] == jpegs[0]


def test_a_refused_request_is_logged_without_a_response(logged, receiver):
    client, _ = logged
    start = len(receiver.events)
    bad = json.dumps(v1_body("this is %% not base64 !!")).encode()
    answer = client.post(PREDICT, content=bad, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "instance 0" in answer.json()["error"]
    client.get("/v2/health/ready")  # not an inference route: not logged
    receiver.wait_for(start + 1)
    time.sleep(1.0)  # time for a response event, if one were (wrongly) sent
    events = receiver.events[start:]
    assert [(e.headers["ce-type"], e.body) for e in events] == [("org.kubeflow.serving.inference.request", bad)]


def test_receiver_down_the_server_answers_and_counts_failures(logged, receiver, jpegs):
    """Runs after the tests above (file order): the receiver's socket is closed, connections are refused."""
    client, _ = logged
    receiver.stop()
    before = _counters(client)
    body = v1_body(base64.b64encode(jpegs[0]).decode("ascii"))
    for _ in range(3):
        check_v1_predictions(post_json(client, PREDICT, body), 1)
    after = _counters_when(client, lambda c: c["failed"] - before["failed"] >= 6)
    assert after["failed"] - before["failed"] == 6 and after["sent"] == before["sent"]


def test_slow_receiver_the_server_answers_at_its_pace_and_counts_drops(tiny_model_dir, jpegs, tmp_path):
    """The receiver answers after 3 s, past the 0.5 s send timeout; with a queue of one, a burst of requests
    overflows it: every request is still answered 200 with its reading, and the events are dropped or failed."""
    slow = Receiver()
    slow.delay_s = 3.0
    port = free_port()
    args = [f"--model_name={NAME}", f"--model_dir={tiny_model_dir}", f"--http_port={port}"]
    args += ["--log-url", slow.url, "--log-timeout", "0.5", "--log-queue-size", "1"]
    body = v1_body(base64.b64encode(jpegs[0]).decode("ascii"))
    try:
        with serve(args, tmp_path, port=port, model_name=NAME) as client:
            before = _counters(client)
            results: list = []

            def ask() -> None:
                results.append(post_json(client, PREDICT, body))

            threads = [threading.Thread(target=ask) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            assert [response.status_code for response in results] == [200] * 6
            for response in results:
                check_reading(response.json()["predictions"][0])

            def lost(c: dict[str, float]) -> float:
                return c["dropped"] + c["failed"] - before["dropped"] - before["failed"]

            after = _counters_when(client, lambda c: lost(c) >= 12)
            dropped, failed = after["dropped"] - before["dropped"], after["failed"] - before["failed"]
            # 12 events: each one either timed out against the slow receiver or found the queue full
            assert dropped >= 1 and failed >= 1 and dropped + failed == 12, (dropped, failed)
            assert after["sent"] == before["sent"]
    finally:
        slow.stop()
