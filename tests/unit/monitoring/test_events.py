"""Tests of alpr.monitoring.events: KServe's payload-logger CloudEvents parsed, paired and decoded (no database)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from alpr.monitoring import events
from alpr.monitoring.events import EventError, EventPairer, decode_request, decode_response, is_sampled, parse_event

LIMIT = 1 << 20


def _parse(headers, body, limit=LIMIT):
    return parse_event(headers, body, max_body_bytes=limit)


def _refused(status: int, reason: str, call, *args, **kwargs) -> EventError:
    with pytest.raises(EventError) as caught:
        call(*args, **kwargs)
    assert (caught.value.status, caught.value.reason) == (status, reason), str(caught.value)
    return caught.value


def test_the_constants_are_kserves():
    assert events.REQUEST_TYPE == "org.kubeflow.serving.inference.request"
    assert events.RESPONSE_TYPE == "org.kubeflow.serving.inference.response"
    exts = (events.INFERENCE_SERVICE_EXT, events.NAMESPACE_EXT, events.COMPONENT_EXT, events.ENDPOINT_EXT)
    assert exts == ("inferenceservicename", "namespace", "component", "endpoint")
    assert (events.METADATA_EXT, events.RECORDED_TIME_EXT) == ("metadata", "recordedtime")


def test_a_v1_request_event_as_kserve_sends_it(kserve):
    image = kserve.image()
    inference = kserve.v1([image], [kserve.reading(kserve.plate())], event_id="5f1c-id")
    event = _parse(*inference.request)
    assert (event.id, event.type, event.inference_service, event.namespace) == (
        "5f1c-id",
        kserve.REQUEST_TYPE,
        "alpr",
        "kubeflow-user",
    )
    assert (event.component, event.endpoint, event.metadata, event.header_length) == ("predictor", "default", {}, None)
    assert event.time == kserve.T0  # nanoseconds beyond the microsecond are dropped
    assert event.source.endswith("/alpr-predictor") and event.content_type == "application/json"
    assert decode_request(event) == [image]
    lower = {k.lower(): v for k, v in inference.request[0].items()}  # header case does not matter
    assert _parse(lower, inference.request[1]) == event


@pytest.mark.parametrize("forward_length", [True, False])
def test_v2_requests_json_and_binary(kserve, forward_length):
    images = [kserve.image(shade=1), kserve.image(fmt="PNG", shade=2)]
    readings = [kserve.reading(kserve.plate()), kserve.reading()]
    assert decode_request(_parse(*kserve.v2(images, readings).request)) == images
    binary = kserve.v2_binary(images, readings, forward_length=forward_length)
    request = _parse(*binary.request)
    assert request.content_type == "application/octet-stream"
    assert request.header_length == (
        len(binary.request[1]) - sum(4 + len(i) for i in images) if forward_length else None
    )
    assert decode_request(request) == images
    response = _parse(*binary.response)
    assert response.header_length is None  # ce-metadata holds the request's length, not the response's
    plates = decode_response(response, 2)
    assert [p.text for p in plates[0]] == ["12A3456"] and plates[1] == ()


def test_responses_v1_v2_and_v2_json_after_a_binary_request(kserve):
    reading = kserve.reading(kserve.plate("12A3456", 0.9), kserve.plate("7", 0.3))
    for inference in (
        kserve.v1([kserve.image()], [reading]),
        kserve.v2([kserve.image()], [reading]),
        kserve.v2_binary([kserve.image()], [reading], binary_output=False),
    ):
        (plates,) = decode_response(_parse(*inference.response), 1)
        assert [(p.text, p.valid, p.score) for p in plates] == [("12A3456", True, 0.9), ("7", False, 0.3)]
        assert plates[0].characters[0].char == "1" and plates[0].layout == "one_line"


def test_events_the_monitor_refuses(kserve):
    inference = kserve.v1([kserve.image()], [kserve.reading()])
    headers, body = inference.request
    _refused(413, "too_large", _parse, headers, body, limit=len(body) - 1)
    _refused(400, "malformed", _parse, {k: v for k, v in headers.items() if k != "Ce-Specversion"}, body)
    _refused(400, "malformed", _parse, {**headers, "Ce-Specversion": "0.3"}, body)
    _refused(400, "malformed", _parse, {k: v for k, v in headers.items() if k != "Ce-Source"}, body)
    _refused(400, "malformed", _parse, {**headers, "Ce-Time": "yesterday"}, body)
    _refused(400, "malformed", _parse, {**headers, "Ce-Metadata": "{not json"}, body)
    _refused(400, "malformed", _parse, {**headers, "Ce-Id": " "}, body)
    _refused(400, "unknown_type", _parse, {**headers, "Ce-Type": "org.kubeflow.serving.inference.other"}, body)
    _refused(400, "unknown_type", _parse, {k: v for k, v in headers.items() if k != "Ce-Type"}, body)
    structured = json.dumps({"specversion": "1.0", "id": "x", "type": kserve.REQUEST_TYPE, "source": "s"})
    _refused(415, "not_binary", _parse, {"Content-Type": "application/cloudevents+json"}, structured.encode())


def test_bodies_and_readings_the_monitor_refuses(kserve):
    headers, _ = kserve.v1([kserve.image()], [kserve.reading()]).request
    for body in (b"not json", b"[1, 2]", b'{"instances": [{"b64": "x"}]}', b'{"instances": []}', b'{"other": 1}'):
        _refused(422, "bad_request_body", decode_request, _parse(headers, body))
    _refused(
        422, "bad_request_body", decode_request, _parse(headers, b'{"instances": [{"image_bytes": {"b64": "**"}}]}')
    )
    v2 = {"inputs": [{"name": "pixels", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}]}
    _refused(422, "bad_request_body", decode_request, _parse(headers, json.dumps(v2).encode()))

    response_headers, _ = kserve.v1([kserve.image()], [kserve.reading()]).response
    response = lambda doc: _parse(response_headers, json.dumps(doc).encode())  # noqa: E731
    _refused(422, "bad_response_body", decode_response, response({"predictions": [{"plates": []}]}), 2)
    _refused(422, "bad_response_body", decode_response, response({"nothing": []}), 1)
    bad_plate = {**kserve.plate(), "box": [0, 0, "x", 1]}
    error = _refused(422, "bad_reading", decode_response, response({"predictions": [{"plates": [bad_plate]}]}), 1)
    assert "response body.predictions[0].plates[0].box[2] must be a number" in str(error)
    outputs = {"outputs": [{"name": "plates", "datatype": "BYTES", "shape": [1], "data": ["{oops"]}]}
    _refused(422, "bad_reading", decode_response, response(outputs), 1)


def test_pairing_by_id_with_latency_sampling_and_expiry(kserve):
    now = [100.0]
    pairer = EventPairer(sample=1.0, max_pending=2, ttl_s=30, clock=lambda: now[0])
    images = [kserve.image(shade=1), kserve.image(fmt="PNG", shade=2)]
    inference = kserve.v1(images, [kserve.reading(kserve.plate()), kserve.reading()], latency_ms=250)
    pending = pairer.add_request(_parse(*inference.request))
    assert [(i.width, i.height, i.extension) for i in pending.images] == [(64, 32, "jpg"), (64, 32, "png")]
    _refused(409, "duplicate_id", pairer.add_request, _parse(*inference.request))
    received = datetime(2026, 11, 30, tzinfo=UTC)
    paired = pairer.complete(_parse(*inference.response), model_name="alpr", model_version="3", received_at=received)
    assert len(pairer) == 0
    (first, data0), (second, data1) = paired
    assert (first.event_id, second.event_id) == (f"{inference.id}/0", f"{inference.id}/1")
    assert first.image_sha256 == hashlib.sha256(images[0]).hexdigest() and first.image_bytes == len(images[0])
    assert first.latency_ms == pytest.approx(250.0) and first.received_at == received
    assert (first.model_name, first.model_version, len(first.plates), len(second.plates)) == ("alpr", "3", 1, 0)
    assert (data0, data1) == tuple(images)  # sample=1.0 keeps every image
    _refused(409, "unknown_id", pairer.complete, _parse(*inference.response), model_name="a", model_version="")

    late = kserve.v1([kserve.image()], [kserve.reading()])
    pairer.add_request(_parse(*late.request))
    now[0] += 31  # past the TTL: the request expired
    _refused(409, "unknown_id", pairer.complete, _parse(*late.response), model_name="a", model_version="")
    crowd = [kserve.v1([kserve.image()], [kserve.reading()]) for _ in range(3)]
    for inference in crowd:
        pairer.add_request(_parse(*inference.request))
    assert len(pairer) == 2 and pairer.expired == 2  # the oldest was pushed out
    _refused(409, "unknown_id", pairer.complete, _parse(*crowd[0].response), model_name="a", model_version="")


def test_a_response_that_does_not_decode_leaves_its_request_waiting(kserve):
    pairer = EventPairer()
    inference = kserve.v1([kserve.image()], [kserve.reading()])
    pairer.add_request(_parse(*inference.request))
    headers, _ = inference.response
    _refused(422, "bad_response_body", pairer.complete, _parse(headers, b"{}"), model_name="a", model_version="")
    assert len(pairer) == 1
    assert len(pairer.complete(_parse(*inference.response), model_name="a", model_version="")) == 1


def test_undecodable_images_are_refused(kserve):
    pairer = EventPairer()
    for data in (b"plain text", b"\xff\xd8\xff\xe0 truncated jpeg", b"\x89PNG\r\n\x1a\n" + b"\0" * 8):
        inference = kserve.v1([data], [kserve.reading()])
        error = _refused(422, "bad_image", pairer.add_request, _parse(*inference.request))
        assert "image 0 cannot be decoded" in str(error)
    assert len(pairer) == 0


def test_sampling_is_a_deterministic_function_of_the_sha256():
    low, high = "0" * 16 + "f" * 48, "e" + "0" * 63
    assert is_sampled(low, 0.1) and not is_sampled(high, 0.1) and is_sampled(high, 0.95)
    assert not is_sampled(low, 0.0) and is_sampled(high, 1.0)
    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(2000)]
    kept = sum(is_sampled(s, 0.25) for s in shas)
    assert 400 < kept < 600 and [is_sampled(s, 0.25) for s in shas] == [is_sampled(s, 0.25) for s in shas]


def test_the_model_servers_own_sender_is_understood(kserve):
    """alpr.serving.eventlog (the model server's local sender) and this parser agree on every attribute."""
    eventlog = pytest.importorskip("alpr.serving.eventlog")
    config = eventlog.EventLogConfig(url="http://127.0.0.1:8090/events", inference_service="alpr", namespace="")
    image = kserve.image()
    body = json.dumps({"instances": [{"image_bytes": {"b64": base64.b64encode(image).decode()}}]})
    sent = datetime(2026, 11, 29, 12, 0, 0, 123456, tzinfo=UTC)
    payload = eventlog.LoggedPayload("id-1", eventlog.REQUEST_EVENT_TYPE, sent, "application/json", body.encode())
    headers, data = eventlog.binary_event(config, payload, sent + timedelta(milliseconds=1))
    event = _parse(headers, data)
    assert (event.id, event.type, event.time, event.inference_service) == ("id-1", kserve.REQUEST_TYPE, sent, "alpr")
    assert (event.namespace, event.component) == ("", "predictor") and decode_request(event) == [image]
