"""The KServe model server (alpr.serving.server): the model class directly, then a live server over HTTP on 127.0.0.1.

No mocks: a real tiny trained model (``tiny_model_dir``), real images (``tiny_coco``), a real ``python -m
alpr.serving.server`` subprocess answering real HTTP requests. The decoding itself (alpr.serving.codec) is tested in
test_codec.py; here every bad request is checked through the model, as kserve calls it (``InvalidInput``, HTTP 400).
"""

import asyncio
import base64
import json
import os
import pickle
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from kserve.errors import InferenceError, InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse, RequestedOutput
from readings import check_reading, check_v1_predictions, check_v2_plates, post_json, v1_body, v2_body

from alpr.serving import server as serving
from alpr.serving.server import ALPRModel, DecodedBatch

#: Seconds the live server may take to load the model and answer its readiness endpoint.
SERVER_START_TIMEOUT_S = 90


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _run(coro):
    return asyncio.run(coro)


def _v2(data, *, name="image", datatype="BYTES", shape=None, outputs=None) -> InferRequest:
    inp = InferInput(name=name, shape=[len(data)] if shape is None else shape, datatype=datatype, data=list(data))
    return InferRequest(model_name="alpr", infer_inputs=[inp], request_id="req-1", request_outputs=outputs)


# --- images -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(tiny_coco):
    """Two real images as encoded bytes: ``jpeg`` (a tiny_coco file as is) and ``png`` (another one re-encoded),
    plus ``png_bgr`` (the BGR array the PNG holds, losslessly)."""
    files = sorted((tiny_coco / "images").glob("*.jpg"))[:2]
    jpeg = files[0].read_bytes()
    png_bgr = cv2.imread(str(files[1]), cv2.IMREAD_COLOR)
    ok, png = cv2.imencode(".png", png_bgr)
    assert ok
    return {"jpeg": jpeg, "png": png.tobytes(), "png_bgr": png_bgr}


@pytest.fixture(scope="module")
def model(tiny_model_dir, tmp_path_factory):
    m = ALPRModel(model_uri=str(tiny_model_dir), cache_dir=tmp_path_factory.mktemp("serve_cache"))
    assert m.load() is True
    return m


# --- the model class --------------------------------------------------------------------------------------------


def test_load_once(tiny_model_dir, tmp_path):
    m = ALPRModel(model_uri=str(tiny_model_dir), cache_dir=tmp_path)
    assert m.name == "alpr" and m.ready is False and m.reader is None
    assert m.load() is True and m.ready is True
    reader = m.reader
    assert reader is not None
    assert m.load() is True and m.reader is reader  # the second load is a no-op


def test_load_failure_leaves_model_not_ready(tmp_path):
    m = ALPRModel(model_uri=str(tmp_path / "no-such-model"), cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError):
        m.load()
    assert m.ready is False


def test_predict_before_load_is_an_inference_error(images, tmp_path):
    m = ALPRModel(model_uri=str(tmp_path), cache_dir=tmp_path)
    with pytest.raises(InferenceError, match="not loaded"):
        _run(m.predict(v1_body(_b64(images["jpeg"]))))


def test_v1_predict_jpeg_and_png(model, images):
    result = _run(model.predict(v1_body(_b64(images["jpeg"]), _b64(images["png"]))))
    assert set(result) == {"predictions"} and len(result["predictions"]) == 2
    for reading in result["predictions"]:
        check_reading(reading)
    # the same image alone gives the same reading: order is kept and instances do not mix
    alone = _run(model.predict(v1_body(_b64(images["png"]))))["predictions"][0]
    assert [p["text"] for p in alone["plates"]] == [p["text"] for p in result["predictions"][1]["plates"]]


def test_full_kserve_call_chain_v1(model, images):
    response, headers = _run(model(v1_body(_b64(images["jpeg"]))))  # preprocess -> validate -> predict -> postprocess
    assert len(response["predictions"]) == 1 and headers == {}


def test_preprocess_decodes_to_bgr(model, images):
    batch = _run(model.preprocess(v1_body(_b64(images["png"]), _b64(images["jpeg"]))))
    assert isinstance(batch, DecodedBatch) and batch.protocol == "v1" and len(batch.images) == 2
    assert np.array_equal(batch.images[0], images["png_bgr"])  # PNG is lossless: exactly the BGR array encoded
    assert all(img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 for img in batch.images)


def test_v2_predict(model, images):
    request = _v2([_b64(images["jpeg"]), _b64(images["png"])])
    response = _run(model.predict(request))
    assert isinstance(response, InferResponse) and response.id == "req-1" and response.model_name == "alpr"
    (output,) = response.outputs
    assert (output.name, output.datatype, output.shape) == ("plates", "BYTES", [2])
    readings = [json.loads(text) for text in output.data]
    for reading in readings:
        check_reading(reading)
    rest, _ = response.to_rest()  # what kserve sends: JSON strings in "data"
    assert rest["outputs"][0]["data"] == output.data
    v1 = _run(model.predict(v1_body(_b64(images["jpeg"]), _b64(images["png"]))))["predictions"]
    assert readings == v1  # both protocols read the same


def test_v2_bytes_data_and_requested_output(model, images):
    """gRPC and the binary extension hand BYTES data as ``bytes``; the requested output ``plates`` is honoured."""
    request = _v2([_b64(images["png"]).encode("ascii")], outputs=[RequestedOutput("plates")])
    response = _run(model.predict(request))
    assert response.outputs[0].shape == [1]
    check_reading(json.loads(response.outputs[0].data[0]))


def test_v2_metadata(model):
    assert model.get_input_types() == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert model.get_output_types() == [{"name": "plates", "datatype": "BYTES", "shape": [-1]}]


def test_model_pickles_for_worker_processes(model, images):
    """kserve's --workers N spawns processes by pickling the model: the copy loads its own reader."""
    copy = pickle.loads(pickle.dumps(model))
    deadline = time.monotonic() + 60  # it loads in the background; not ready meanwhile
    while not copy.ready and time.monotonic() < deadline:
        time.sleep(0.1)
    assert copy.ready and copy.reader is not None and copy.reader is not model.reader
    assert len(_run(copy.predict(v1_body(_b64(images["jpeg"]))))["predictions"]) == 1


def _bad_v1_cases(img: str, fake_png_header, fake_jpeg_header) -> list:
    """``(payload, message regex)``: every V1 problem, the bad instance at index 1 where there is one."""
    return [
        ([], "JSON object"),
        (b"raw bytes", "not read as JSON: send it with Content-Type: application/json"),
        ({}, 'missing "instances"'),
        ({"instances": {"image_bytes": {"b64": img}}}, '"instances" must be a list'),
        ({"instances": []}, "empty request"),
        (v1_body(*[img] * 33), "too many instances: 33 .* limit is 32"),
        ({"instances": [{"image_bytes": {"b64": img}}, {"b64": img}]}, 'instance 1: missing "image_bytes"'),
        ({"instances": [{"image_bytes": {"b64": img}}, "just a string"]}, 'instance 1: missing "image_bytes"'),
        ({"instances": [{"image_bytes": {"b64": img}}, {"image_bytes": {}}]}, 'instance 1: .*no "b64"'),
        (v1_body(img, 12345), "instance 1: expected a base64 string, got int"),
        (v1_body(img, "not base64 at all!"), "instance 1: not valid base64"),
        (v1_body(img, "é"), "instance 1: not valid base64"),
        (v1_body(img, ""), "instance 1: empty image data"),
        (v1_body(img, _b64(b"hello, this is text")), "instance 1: not a JPEG or PNG image"),
        (v1_body(img, _b64(b"BM" + bytes(100))), "instance 1: not a JPEG or PNG image"),
        (v1_body(img, _b64(fake_png_header(10_000, 5_000))), r"instance 1: image is 10000x5000 = 50.0 MP, over"),
        (v1_body(img, _b64(fake_jpeg_header(8_000, 6_000))), r"instance 1: image is 8000x6000 = 48.0 MP, over"),
        (v1_body(img, _b64(fake_png_header(0, 10))), "instance 1: PNG header gives an empty size"),
        (v1_body(img, _b64(b"\x89PNG\r\n\x1a\n")), "instance 1: truncated or corrupt PNG header"),
        (v1_body(img, _b64(b"\xff\xd8\xff\xd9")), "instance 1: truncated or corrupt JPEG header"),
        (v1_body(img, _b64(fake_png_header(64, 64))), "instance 1: not a decodable PNG"),
        (v1_body(img, _b64(fake_jpeg_header(64, 64))), "instance 1: not a decodable JPEG"),
    ]


def test_bad_v1_inputs_raise_invalid_input(model, images, fake_png_header, fake_jpeg_header):
    img = _b64(images["jpeg"])
    truncated = _b64(images["jpeg"][: len(images["jpeg"]) // 2])
    cases = _bad_v1_cases(img, fake_png_header, fake_jpeg_header)
    for payload, message in cases + [(v1_body(img, truncated), "instance 1: not a decodable JPEG")]:
        with pytest.raises(InvalidInput, match=message):
            _run(model.predict(payload))
    assert model.ready  # a bad request changes nothing


def test_bad_v2_inputs_raise_invalid_input(model, images, fake_png_header):
    img = _b64(images["jpeg"])
    two_inputs = _v2([img])
    two_inputs.inputs.append(InferInput(name="other", shape=[1], datatype="BYTES", data=[img]))
    cases = [
        (InferRequest(model_name="alpr", infer_inputs=[]), "empty request"),
        (_v2([img], name="images"), "exactly one input named \"image\", got \\['images'\\]"),
        (two_inputs, 'exactly one input named "image"'),
        (_v2([1.0], datatype="FP32"), "datatype must be BYTES.*got FP32"),
        (_v2([img, img], shape=[3]), r"shape must be \[N\].*\(2\), got \[3\]"),
        (_v2([img], shape=[1, 1]), r"shape must be \[N\]"),
        (_v2([]), "empty request"),
        (_v2([img] * 33), "too many instances"),
        (_v2([img, "%%%"]), "instance 1: not valid base64"),
        (_v2([img, _b64(b"GIF89a" + bytes(50))]), "instance 1: not a JPEG or PNG image"),
        (_v2([img, _b64(fake_png_header(9_000, 9_000))]), "instance 1: image is 9000x9000 = 81.0 MP"),
        (_v2([img], outputs=[RequestedOutput("boxes")]), 'unknown requested output "boxes"'),
        (
            InferRequest(model_name="alpr", infer_inputs=[InferInput("image", [1], "BYTES")]),  # no data at all
            "instance 0: expected a base64 string, got NoneType",
        ),
    ]
    for request, message in cases:
        with pytest.raises(InvalidInput, match=message):
            _run(model.predict(request))


def test_limits_are_configurable(images, tmp_path):
    """Validation needs no loaded model: the limits apply in preprocess."""
    m = ALPRModel(model_uri=str(tmp_path), cache_dir=tmp_path, max_instances=2, max_pixels=100, max_image_bytes=10**6)
    with pytest.raises(InvalidInput, match="too many instances: 3 .* limit is 2"):
        _run(m.preprocess(v1_body(*["x"] * 3)))
    with pytest.raises(InvalidInput, match=r"instance 0: image is \d+x\d+ = .* over the limit of 0.0 MP"):
        _run(m.preprocess(v1_body(_b64(images["png"]))))
    with pytest.raises(InvalidInput, match="instance 0: encoded image is about .* over the limit of 1.0 MB"):
        _run(m.preprocess(v1_body("A" * 2_000_000)))
    with pytest.raises(ValueError):
        ALPRModel(max_instances=0)


def test_main_returns_1_for_a_missing_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALPR_WORKSPACE", str(tmp_path / "ws"))
    assert serving.main(["--model", str(tmp_path / "missing"), "--http-port", "1"]) == 1
    assert "missing" in capsys.readouterr().err
    assert serving.main(["--model", "latest", "--http-port", "1"]) == 1  # an empty workspace has no selected model
    assert "no selected model" in capsys.readouterr().err


# --- a live server ------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(client: httpx.Client, proc: subprocess.Popen, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if client.get("/v2/models/alpr/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"server not ready after {timeout_s} s:\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    """``python -m alpr.serving`` on a free 127.0.0.1 port; yields an httpx client bound to it."""
    work = tmp_path_factory.mktemp("live_server")
    port = _free_port()
    log_path = work / "server.log"
    env = {**os.environ, "ALPR_WORKSPACE": str(work / "ws")}
    cmd = [sys.executable, "-m", "alpr.serving", "--model", str(tiny_model_dir), "--http-port", str(port)]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).resolve().parents[3]
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, trust_env=False)
    try:
        _wait_ready(client, proc, log_path, SERVER_START_TIMEOUT_S)
        yield client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_live_health_and_readiness(server):
    assert server.get("/").json() == {"status": "alive"}
    assert server.get("/v2/health/live").json() == {"live": True}
    assert server.get("/v2/health/ready").json() == {"ready": True}
    assert server.get("/v1/models/alpr").json() == {"name": "alpr", "ready": True}
    assert server.get("/v2/models/alpr/ready").json() == {"name": "alpr", "ready": True}
    meta = server.get("/v2/models/alpr").json()
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "plates", "datatype": "BYTES", "shape": [-1]}]
    assert server.get("/v1/models/nope").status_code == 404


def test_live_v1(server, images):
    r = post_json(server, "/v1/models/alpr:predict", v1_body(_b64(images["jpeg"]), _b64(images["png"])))
    check_v1_predictions(r, 2)


def test_live_v2(server, images):
    r = post_json(server, "/v2/models/alpr/infer", v2_body([_b64(images["jpeg"]), _b64(images["png"])]))
    check_v2_plates(r, 2)


def test_live_bad_requests_get_400_naming_the_instance_and_the_server_stays_up(server, images, fake_png_header):
    img = _b64(images["jpeg"])
    bad = [
        ("/v1/models/alpr:predict", v1_body(img, "not base64!"), "instance 1: not valid base64"),
        ("/v1/models/alpr:predict", v1_body(img, _b64(b"plain text")), "instance 1: not a JPEG or PNG image"),
        ("/v1/models/alpr:predict", v1_body(img, img, _b64(fake_png_header(10_000, 10_000))), "instance 2: image is"),
        (
            "/v1/models/alpr:predict",
            {"instances": [{"image_bytes": {"b64": img}}, {}]},
            'instance 1: missing "image_bytes"',
        ),
        ("/v1/models/alpr:predict", {"images": []}, 'missing "instances"'),
        ("/v1/models/alpr:predict", {"instances": []}, "empty request"),
        ("/v2/models/alpr/infer", v2_body([img, "AAAA"]), "instance 1: not a JPEG or PNG image"),
        ("/v2/models/alpr/infer", v2_body([img], datatype="FP32"), "datatype must be BYTES"),
        ("/v2/models/alpr/infer", v2_body([img], name="img"), 'exactly one input named "image"'),
        ("/v2/models/alpr/infer", v2_body([img], shape=[2]), r"shape must be \[N\]"),
        ("/v2/models/alpr/infer", v2_body([]), "empty request"),
    ]
    for path, body, message in bad:
        r = post_json(server, path, body)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert re.search(message, r.json()["error"]), (message, r.json())
    # a body that is not JSON at all
    r = server.post("/v1/models/alpr:predict", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = server.post("/v1/models/alpr:predict", content=json.dumps(v1_body(img)), headers={"Content-Type": "text/plain"})
    assert r.status_code == 400 and "Content-Type: application/json" in r.json()["error"]
    # still answering, with the right readings
    r = post_json(server, "/v1/models/alpr:predict", v1_body(img))
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1
    assert server.get("/v2/health/live").status_code == 200


def test_live_metrics(server, images):
    assert post_json(server, "/v1/models/alpr:predict", v1_body(_b64(images["png"]))).status_code == 200
    text = server.get("/metrics").text
    for name in ("request_preprocess_seconds", "request_predict_seconds", "request_postprocess_seconds"):
        assert f'{name}_count{{model_name="alpr"}}' in text, name
