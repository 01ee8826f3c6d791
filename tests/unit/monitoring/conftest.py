"""Fixtures of the monitor's tests: images, PLATE_SPEC readings, and CloudEvents exactly as KServe's payload logger
sends them.

KServe's logger (kserve/kserve ``pkg/logger/worker.go``, commit aaac4e2) sends with the Go CloudEvents SDK in binary
mode: Go canonicalises the header names (``Ce-Id``, ``Ce-Inferenceservicename``), times are ``time.RFC3339Nano``
(nanoseconds, ``Z``), ``Ce-Metadata`` is the JSON of the forwarded request headers (``{}`` when none), and both
events carry the *request's* ``Content-Type``.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
T0 = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def go_time(moment: datetime, nanos: int = 0) -> str:
    """``moment`` as Go's ``time.RFC3339Nano`` writes it (trailing zeros of the fraction trimmed)."""
    utc = moment.astimezone(UTC)
    fraction = f"{utc.microsecond * 1000 + nanos:09d}".rstrip("0")
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def image_bytes(width: int = 64, height: int = 32, *, fmt: str = "JPEG", shade: int = 0) -> bytes:
    """An encoded image; ``shade`` changes its pixels (and so its SHA-256)."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), ((shade * 37) % 256, (shade * 11) % 256, shade % 256)).save(out, fmt)
    return out.getvalue()


def plate(text: str = "12A3456", score: float = 0.97, *, layout: str = "one_line", valid: bool | None = None) -> dict:
    """One plate of a PLATE_SPEC reading (characters one per text character)."""
    from alpr.spec import is_valid_text

    chars = [
        {"char": c, "box": [10.0 + 5 * i, 10.0, 14.0 + 5 * i, 20.0], "score": min(1.0, score + 0.01)}
        for i, c in enumerate(text[:12])
    ]
    return {
        "text": text,
        "layout": layout,
        "valid": is_valid_text(text) if valid is None else valid,
        "box": [8.0, 8.0, 60.0, 24.0],
        "score": score,
        "characters": chars,
    }


def reading(*plates: dict) -> dict:
    return {"plates": list(plates)}


@dataclass
class Inference:
    """One logged inference: its request and response events (headers, body), as the logger posts them."""

    id: str
    request: tuple[dict[str, str], bytes]
    response: tuple[dict[str, str], bytes]


def kserve_headers(
    event_id: str,
    event_type: str,
    occurred: datetime,
    content_type: str,
    *,
    isvc: str = "alpr",
    namespace: str = "kubeflow-user",
    metadata: dict | None = None,
) -> dict[str, str]:
    """The headers of one binary-mode event from KServe's logger."""
    headers = {
        "Ce-Specversion": "1.0",
        "Ce-Id": event_id,
        "Ce-Type": event_type,
        "Ce-Source": f"http://localhost:9081/{namespace}/{isvc}-predictor",
        "Ce-Time": go_time(occurred, 123),
        "Ce-Recordedtime": go_time(occurred + timedelta(milliseconds=2), 456),
        "Ce-Inferenceservicename": isvc,
        "Ce-Namespace": namespace,
        "Ce-Component": "predictor",
        "Ce-Endpoint": "default",
        "Ce-Metadata": json.dumps(metadata or {}, separators=(",", ":")),
        "Content-Type": content_type,
    }
    if not content_type:
        del headers["Content-Type"]
    return headers


def _bytes_tensor(elements: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def v1_inference(
    images: list[bytes], readings: list[dict], *, latency_ms: float = 120.0, event_id: str | None = None, **kw
) -> Inference:
    """A V1 inference (``:predict``) as the logger sends it."""
    event_id = event_id or str(uuid.uuid4())
    body = json.dumps({"instances": [{"image_bytes": {"b64": base64.b64encode(i).decode()}} for i in images]})
    answer = json.dumps({"predictions": readings})
    done = T0 + timedelta(milliseconds=latency_ms)
    return Inference(
        event_id,
        (kserve_headers(event_id, REQUEST_TYPE, T0, "application/json", **kw), body.encode()),
        (kserve_headers(event_id, RESPONSE_TYPE, done, "application/json", **kw), answer.encode()),
    )


def v2_inference(
    images: list[bytes], readings: list[dict], *, latency_ms: float = 80.0, event_id: str | None = None, **kw
) -> Inference:
    """A V2 JSON inference (``/v2/models/alpr/infer``, base64 BYTES) as the logger sends it."""
    event_id = event_id or str(uuid.uuid4())
    body = {
        "id": "r1",
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [len(images)],
                "data": [base64.b64encode(i).decode() for i in images],
            }
        ],
    }
    answer = {
        "model_name": "alpr",
        "id": "r1",
        "parameters": {},
        "outputs": [
            {
                "name": "plates",
                "shape": [len(readings)],
                "datatype": "BYTES",
                "data": [json.dumps(r) for r in readings],
            }
        ],
    }
    done = T0 + timedelta(milliseconds=latency_ms)
    return Inference(
        event_id,
        (kserve_headers(event_id, REQUEST_TYPE, T0, "application/json", **kw), json.dumps(body).encode()),
        (kserve_headers(event_id, RESPONSE_TYPE, done, "application/json", **kw), json.dumps(answer).encode()),
    )


def v2_binary_inference(
    images: list[bytes],
    readings: list[dict],
    *,
    latency_ms: float = 50.0,
    event_id: str | None = None,
    forward_length: bool = True,
    binary_output: bool = True,
    **kw,
) -> Inference:
    """A V2 inference with the binary data extension (as tritonclient sends it), as the logger sends it:
    ``Content-Type: application/octet-stream`` on both events; the request's ``Inference-Header-Content-Length``
    in ``Ce-Metadata`` when the InferenceService forwards it (``forward_length``); the response's length is never
    forwarded."""
    event_id = event_id or str(uuid.uuid4())
    raw = _bytes_tensor(images)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [len(images)],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "plates", "parameters": {"binary_data": binary_output}}],
        }
    ).encode()
    out_raw = _bytes_tensor([json.dumps(r).encode() for r in readings])
    output: dict = {"name": "plates", "shape": [len(readings)], "datatype": "BYTES"}
    if binary_output:
        output["parameters"] = {"binary_data_size": len(out_raw)}
        answer = json.dumps({"model_name": "alpr", "outputs": [output]}).encode() + out_raw
    else:
        output["data"] = [json.dumps(r) for r in readings]
        answer = json.dumps({"model_name": "alpr", "outputs": [output]}).encode()
    metadata = {"Inference-Header-Content-Length": [str(len(head))]} if forward_length else None
    done = T0 + timedelta(milliseconds=latency_ms)
    ct = "application/octet-stream"
    return Inference(
        event_id,
        (kserve_headers(event_id, REQUEST_TYPE, T0, ct, metadata=metadata, **kw), head + raw),
        (kserve_headers(event_id, RESPONSE_TYPE, done, ct, metadata=metadata, **kw), answer),
    )


class KServeLogger:
    """The builders above, handed to the tests by the :func:`kserve` fixture (test files cannot import a
    conftest)."""

    T0 = T0
    REQUEST_TYPE = REQUEST_TYPE
    RESPONSE_TYPE = RESPONSE_TYPE
    go_time = staticmethod(go_time)
    image = staticmethod(image_bytes)
    plate = staticmethod(plate)
    reading = staticmethod(reading)
    headers = staticmethod(kserve_headers)
    v1 = staticmethod(v1_inference)
    v2 = staticmethod(v2_inference)
    v2_binary = staticmethod(v2_binary_inference)


@pytest.fixture
def kserve() -> type[KServeLogger]:
    """Builders of images, readings and KServe payload-logger events (:class:`KServeLogger`)."""
    return KServeLogger


def add_model(store, *, uri: str = "file:///models/m1", deploy_at: str | None = None) -> int:
    """A model row (with its annotation and training versions) in ``store`` (a MetadataStore); deployed at
    ``deploy_at`` when given; returns its id."""
    tag = uuid.uuid4().hex[:8]
    with store.transaction() as tx:
        images = [{"file_name": "a.jpg", "width": 64, "height": 32, "md5": "0" * 32, "plate_count": 1}]
        tx.add_annotation_version(f"annotations-{tag}", "a" * 40, {"A": 1}, images)
        tx.add_training_version(
            f"training-{tag}",
            f"annotations-{tag}",
            params_hash="h" * 64,
            git_rev="b" * 40,
            seed=1,
            fractions=(1.0, 0.0, 0.0),
            counts={"train": 1},
            splits={"a.jpg": "train"},
        )
        model_id = tx.add_model(uri, f"training-{tag}", None, f"{uri}/config.py", "c" * 64, "best.pth", 1, {})
        if deploy_at is not None:
            tx.add_deployment(
                model_id,
                deploy_at,
                "deployed",
                "test",
                new_eir=0.9,
                served_eir=None,
                served_model_id=None,
                storage_uri=uri,
            )
    return model_id


@pytest.fixture
def make_model():
    """:func:`add_model`."""
    return add_model


@pytest.fixture
def storage_root(tmp_path):
    """A local blob storage root for the sampled images."""
    return tmp_path / "storage"
