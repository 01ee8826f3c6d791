"""The prediction log (alpr.serving.eventlog): KServe's payload-logger CloudEvents, the bounded sender that never
blocks a reading, the ASGI middleware on the inference routes, and the server's ``--log-*`` flags.

The live server sending to a real HTTP receiver is tests/integration/test_serving_eventlog.py."""

from __future__ import annotations

import asyncio
import json
import pickle
import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from cloudevents.http import from_http
from fastapi import FastAPI, Request, Response
from prometheus_client import REGISTRY

from alpr.serving import eventlog
from alpr.serving.eventlog import (
    DROPPED_METRIC,
    FAILED_METRIC,
    REQUEST_EVENT_TYPE,
    RESPONSE_EVENT_TYPE,
    SENT_METRIC,
    EventLog,
    EventLogConfig,
    LoggedPayload,
    PayloadLogMiddleware,
    binary_event,
    rfc3339,
)

URL = "http://monitor.test/events"
T0 = datetime(2026, 11, 29, 23, 42, 53, 123400, tzinfo=UTC)


def _metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


class Recorder:
    """An httpx transport standing in for the receiver: records each POST, answers ``status``; ``gate`` (when set)
    holds each request until it is released; ``error`` raises instead of answering."""

    def __init__(self, status: int = 200, error: Exception | None = None, gate: threading.Event | None = None):
        self.status, self.error, self.gate = status, error, gate
        self.requests: list[httpx.Request] = []
        self.entered = threading.Semaphore(0)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.entered.release()
        if self.gate is not None:
            self.gate.wait(10)
        if self.error is not None:
            raise self.error
        return httpx.Response(self.status, text="ok" if self.status < 300 else "no")

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


# --- the event ------------------------------------------------------------------------------------------------------


def test_rfc3339_writes_go_s_rfc3339nano():
    assert rfc3339(T0) == "2026-11-29T23:42:53.1234Z"
    assert rfc3339(T0.replace(microsecond=0)) == "2026-11-29T23:42:53Z"
    assert rfc3339(T0.astimezone(timezone(timedelta(hours=2)))) == "2026-11-29T23:42:53.1234Z"  # always UTC
    with pytest.raises(ValueError, match="no time zone"):
        rfc3339(datetime(2026, 1, 1))


def test_binary_event_has_kserves_headers_and_the_body_byte_for_byte():
    config = EventLogConfig(URL, source="http://localhost:8080/", inference_service="alpr")
    body = b'{"instances": [{"image_bytes": {"b64": "/9j/"}}]}\n\x00\xff'  # bytes as they came, not re-encoded
    payload = LoggedPayload(
        "id-1", REQUEST_EVENT_TYPE, T0, "application/json", body, {"Inference-Header-Content-Length": ["12"]}
    )
    headers, data = binary_event(config, payload, T0 + timedelta(seconds=1))
    assert data == body
    assert {k.lower(): v for k, v in headers.items()} == {
        "ce-specversion": "1.0",
        "ce-id": "id-1",
        "ce-type": "org.kubeflow.serving.inference.request",
        "ce-source": "http://localhost:8080/",
        "ce-time": "2026-11-29T23:42:53.1234Z",
        "ce-recordedtime": "2026-11-29T23:42:54.1234Z",
        "ce-inferenceservicename": "alpr",
        "ce-namespace": "",
        "ce-component": "predictor",
        "ce-endpoint": "",
        "ce-metadata": '{"Inference-Header-Content-Length":["12"]}',
        "content-type": "application/json",
    }
    # a CloudEvents receiver reads it back (the SDK's own parser)
    event = from_http(headers, data)
    assert (event["id"], event["type"], event["inferenceservicename"]) == ("id-1", REQUEST_EVENT_TYPE, "alpr")
    # no Content-Type on the request: none on the event; no metadata headers: {}
    headers, _ = binary_event(config, LoggedPayload("id-2", RESPONSE_EVENT_TYPE, T0, None, b"x"), T0)
    assert "content-type" not in {k.lower() for k in headers} and headers["ce-metadata"] == "{}"


def test_config_is_checked_naming_the_setting():
    assert EventLogConfig(URL).logs_requests and EventLogConfig(URL).logs_responses
    assert not EventLogConfig(URL, mode="response").logs_requests
    assert not EventLogConfig(URL, mode="request").logs_responses
    for kwargs, message in [
        (dict(url="monitor:8090/events"), "log url"),
        (dict(url="ftp://h/x"), "log url"),
        (dict(url=URL, mode="some"), "log mode"),
        (dict(url=URL, queue_size=0), "queue size"),
        (dict(url=URL, timeout_s=0), "timeout"),
        (dict(url=URL, source=""), "source"),
    ]:
        with pytest.raises(ValueError, match=message):
            EventLogConfig(**kwargs)


# --- the sender -----------------------------------------------------------------------------------------------------


def _payload(i: int = 0) -> LoggedPayload:
    return LoggedPayload(f"id-{i}", REQUEST_EVENT_TYPE, T0, "application/json", b"{}")


def test_sent_events_reach_the_receiver_and_are_counted():
    recorder = Recorder()
    before = _metric(SENT_METRIC)
    log = EventLog(EventLogConfig(URL), transport=recorder.transport())
    try:
        assert all(log.log(_payload(i)) for i in range(3))
        assert log.flush(10)
        assert log.stats() == eventlog.EventLogStats(sent=3, dropped=0, failed=0, queued=0)
        assert [r.headers["ce-id"] for r in recorder.requests] == ["id-0", "id-1", "id-2"]
        assert all(r.method == "POST" and str(r.url) == URL and r.content == b"{}" for r in recorder.requests)
        assert _metric(SENT_METRIC) - before == 3
    finally:
        log.close()


@pytest.mark.parametrize(
    "recorder",
    [Recorder(status=500), Recorder(status=404), Recorder(error=httpx.ConnectError("connection refused"))],
    ids=["500", "404", "refused"],
)
def test_failed_sends_are_counted_and_not_retried(recorder):
    before = _metric(FAILED_METRIC)
    log = EventLog(EventLogConfig(URL), transport=recorder.transport())
    try:
        assert log.log(_payload(0)) and log.log(_payload(1))  # the caller never sees the failure
        assert log.flush(10)
        assert log.stats() == eventlog.EventLogStats(sent=0, dropped=0, failed=2, queued=0)
        assert len(recorder.requests) == 2  # one attempt each
        assert _metric(FAILED_METRIC) - before == 2
    finally:
        log.close()


def test_a_full_queue_drops_without_blocking_and_counts_the_drop():
    gate = threading.Event()
    recorder = Recorder(gate=gate)  # the receiver holds every request until the gate opens
    before = _metric(DROPPED_METRIC)
    log = EventLog(EventLogConfig(URL, queue_size=1), transport=recorder.transport())
    try:
        assert log.log(_payload(0))
        assert recorder.entered.acquire(timeout=10)  # event 0 is in flight, the queue is empty again
        assert log.log(_payload(1))  # queued
        start = time.monotonic()
        assert not log.log(_payload(2)) and not log.log(_payload(3))  # full: dropped at once
        assert time.monotonic() - start < 1.0
        assert log.stats().dropped == 2 and _metric(DROPPED_METRIC) - before == 2
        gate.set()
        assert log.flush(10)
        assert log.stats() == eventlog.EventLogStats(sent=2, dropped=2, failed=0, queued=0)
        assert [r.headers["ce-id"] for r in recorder.requests] == ["id-0", "id-1"]
    finally:
        gate.set()
        log.close()


def test_close_sends_what_is_queued_then_drops():
    recorder = Recorder()
    log = EventLog(EventLogConfig(URL), transport=recorder.transport())
    log.log(_payload(0))
    log.close(10)
    assert log.stats().sent == 1
    assert not log.log(_payload(1)) and log.stats().dropped == 1


# --- the middleware -------------------------------------------------------------------------------------------------


def _app(event_log: EventLog) -> FastAPI:
    """An app with the server's inference routes (echoing), a 400 answer, and a route that is not logged."""
    app = FastAPI()

    @app.post("/v1/models/{name}:predict")
    async def predict(name: str, request: Request) -> Response:
        body = await request.body()
        if body == b"bad":
            return Response(b'{"error": "instance 0: bad"}', status_code=400, media_type="application/json")
        return Response(b'{"predictions": [' + body + b"]}", media_type="application/json")

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        body = await request.body()
        return Response(b"\x00binary out:" + body[:4], media_type="application/octet-stream")

    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer_version(name: str, version: str, request: Request) -> Response:
        return Response(await request.body(), media_type="application/json")

    @app.post("/v2/repository/models/{name}/load")
    async def load(name: str) -> dict:
        return {"ok": True}

    app.add_middleware(PayloadLogMiddleware, event_log=event_log)
    return app


def _post(app: FastAPI, path: str, content, headers: dict | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://server.test") as client:
            return await client.post(path, content=content, headers=headers or {})

    return asyncio.run(go())


def test_middleware_logs_request_and_response_as_received_and_sent():
    recorder = Recorder()
    log = EventLog(EventLogConfig(URL, inference_service="alpr"), transport=recorder.transport())
    app = _app(log)
    try:
        body = b'{"a": 1}'
        answer = _post(app, "/v1/models/alpr:predict", body, {"Content-Type": "application/json"})
        assert answer.status_code == 200
        # V2 binary data extension: the raw bytes and the header length go along as metadata
        binary = b'{"inputs": []}\xff\xd8\xff\x00'
        answer2 = _post(
            app,
            "/v2/models/alpr/infer",
            binary,
            {"Content-Type": "application/octet-stream", "inference-header-content-length": "14", "Ce-Id": "given"},
        )
        assert log.flush(10)
        events = [(r.headers, r.content) for r in recorder.requests]
        assert len(events) == 4
        (rq1, b1), (rs1, c1), (rq2, b2), (rs2, c2) = events
        assert (rq1["ce-type"], rs1["ce-type"]) == (REQUEST_EVENT_TYPE, RESPONSE_EVENT_TYPE)
        assert rq1["ce-id"] == rs1["ce-id"] and len(rq1["ce-id"]) == 36  # a UUID, one per inference
        assert b1 == body and c1 == answer.content == b'{"predictions": [{"a": 1}]}'
        assert rs1["content-type"] == "application/json"
        assert rq2["ce-id"] == rs2["ce-id"] == "given"  # the request's Ce-Id header, as KServe's logger
        assert b2 == binary and c2 == answer2.content
        # KServe puts the request's Content-Type on the response event too
        assert rq2["content-type"] == rs2["content-type"] == "application/octet-stream"
        assert json.loads(rq2["ce-metadata"]) == {"Inference-Header-Content-Length": ["14"]}
        assert datetime.fromisoformat(rq1["ce-time"]) <= datetime.fromisoformat(rs1["ce-time"])
    finally:
        log.close()


def test_middleware_logs_only_inference_routes_and_only_200_responses():
    recorder = Recorder()
    log = EventLog(EventLogConfig(URL), transport=recorder.transport())
    app = _app(log)
    try:
        assert _post(app, "/v1/models/alpr:predict", b"bad").status_code == 400
        assert _post(app, "/v2/repository/models/alpr/load", b"").status_code == 200
        assert _post(app, "/v2/models/alpr/versions/3/infer", b"{}").status_code == 200
        assert log.flush(10)
        types = [(r.url.path, r.headers["ce-type"], r.content) for r in recorder.requests]
        assert types == [
            ("/events", REQUEST_EVENT_TYPE, b"bad"),  # the 400's request, no response event
            ("/events", REQUEST_EVENT_TYPE, b"{}"),  # a versioned V2 route; the repository route: nothing
            ("/events", RESPONSE_EVENT_TYPE, b"{}"),
        ]
    finally:
        log.close()


@pytest.mark.parametrize("mode, expected", [("request", [REQUEST_EVENT_TYPE]), ("response", [RESPONSE_EVENT_TYPE])])
def test_log_mode_picks_the_events(mode, expected):
    recorder = Recorder()
    log = EventLog(EventLogConfig(URL, mode=mode), transport=recorder.transport())
    try:
        assert _post(_app(log), "/v1/models/alpr:predict", b"{}").status_code == 200
        assert log.flush(10)
        assert [r.headers["ce-type"] for r in recorder.requests] == expected
    finally:
        log.close()


def test_a_body_sent_in_chunks_is_logged_whole_and_reaches_the_app_unchanged():
    recorder = Recorder()
    log = EventLog(EventLogConfig(URL), transport=recorder.transport())
    parts = [b'{"part": 1, ', b'"more": "', b"x" * 70000, b'"}']

    async def chunks():
        for part in parts:
            yield part

    try:
        answer = _post(_app(log), "/v1/models/alpr:predict", chunks())
        assert answer.status_code == 200 and answer.content == b'{"predictions": [' + b"".join(parts) + b"]}"
        assert log.flush(10)
        assert recorder.requests[0].content == b"".join(parts)
        assert recorder.requests[1].content == answer.content
    finally:
        log.close()


def test_a_failing_log_never_fails_the_reading():
    class Broken(EventLog):
        def log(self, payload):
            raise RuntimeError("broken log")

    log = Broken(EventLogConfig(URL))
    answer = _post(_app(log), "/v1/models/alpr:predict", b"{}")
    assert answer.status_code == 200 and answer.content == b'{"predictions": [{}]}'


def test_install_replaces_an_earlier_middleware():
    app = FastAPI()
    eventlog.install(app, EventLogConfig(URL))
    eventlog.install(app, EventLogConfig("http://other.test/events"))
    logged = [m for m in app.user_middleware if m.cls is PayloadLogMiddleware]
    assert len(logged) == 1 and logged[0].kwargs["config"].url == "http://other.test/events"
    with pytest.raises(ValueError, match="config or an event_log"):
        PayloadLogMiddleware(app)


# --- the server's flags and its worker processes --------------------------------------------------------------------


def test_server_flags_make_the_log_config(capsys):
    from alpr.serving.server import _parse_args

    args = _parse_args(["--model", "m", "--model_name", "plates", "--http_port", "9001"], environ={})
    assert args.payload_log is None  # no --log-url: no log
    args = _parse_args(
        ["--model", "m", "--model_name", "plates", "--http_port", "9001", "--log-url", URL, "--log-mode", "response"]
        + ["--log-queue-size", "7", "--log-timeout", "0.5"],
        environ={},
    )
    assert args.payload_log == EventLogConfig(
        URL, mode="response", queue_size=7, timeout_s=0.5, source="http://localhost:9001/", inference_service="plates"
    )
    for argv, message in [
        (["--log-url", "monitor/events"], "--log-url: log url must be"),
        (["--log-url", URL, "--log-mode", "some"], "--log-mode"),
        (["--log-url", URL, "--log-queue-size", "0"], "--log-queue-size"),
        (["--log-url", URL, "--log-timeout", "0"], "--log-timeout must be > 0"),
    ]:
        with pytest.raises(SystemExit) as exc:
            _parse_args(["--model", "m", *argv], environ={})
        assert exc.value.code == 2 and message in capsys.readouterr().err


def test_worker_processes_install_the_log_on_their_own_app(monkeypatch):
    """kserve's --workers N pickles the data plane into each spawned worker; unpickled there, it installs the
    middleware on that process's kserve app (here: a stand-in app)."""
    import kserve.model_server
    from kserve.model_repository import ModelRepository

    from alpr.serving.server import ALPRDataPlane, ALPRModelServer

    stand_in = FastAPI()
    monkeypatch.setattr(kserve.model_server, "app", stand_in)
    config = EventLogConfig(URL)
    plane = ALPRDataPlane(ModelRepository(), payload_log=config)
    assert not stand_in.user_middleware  # nothing in the parent until it serves
    copy = pickle.loads(pickle.dumps(plane))
    assert copy.payload_log == config
    assert [m.kwargs["config"] for m in stand_in.user_middleware if m.cls is PayloadLogMiddleware] == [config]
    # without a log nothing is installed
    bare = FastAPI()
    monkeypatch.setattr(kserve.model_server, "app", bare)
    pickle.loads(pickle.dumps(ALPRDataPlane(ModelRepository())))
    assert not bare.user_middleware
    server = ALPRModelServer(http_port=0, workers=1, enable_grpc=False, payload_log=config)
    assert server.dataplane.payload_log == config
