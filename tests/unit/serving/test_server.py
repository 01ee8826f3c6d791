"""The KServe model server (alpr.serving.server): the model class directly, a live server over HTTP on 127.0.0.1,
the command line (KServe's options and the project's), the refused repository routes and the liveness rule.

No mocks: a real tiny trained model (``tiny_model_dir``), real images (``tiny_coco``), a real ``python -m
alpr.serving`` subprocess answering real HTTP requests (and, for liveness, an ``ALPRModelServer`` in a thread whose
model the test takes away). The decoding itself (alpr.serving.codec) is tested in test_codec.py; here every bad
request is checked through the model, as kserve calls it (``InvalidInput``, HTTP 400). The V2 protocol as its
clients send it: tests/integration/test_serving_protocols.py.
"""

import asyncio
import base64
import json
import pickle
import re
import shutil
import threading
import time

import cv2
import httpx
import numpy as np
import pytest
from kserve.errors import InferenceError, InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse, RequestedOutput
from live_server import free_port, serve, wait_ready
from readings import check_reading, check_v1_predictions, check_v2_plates, post_json, v1_body, v2_body

from alpr.serving import server as serving
from alpr.serving.server import ALPRModel, DecodedBatch


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
    assert copy.concurrency == model.concurrency
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


def _predict_in_thread(model: ALPRModel, body: dict) -> tuple[threading.Thread, dict]:
    """Start ``model.predict(body)`` in a thread; the dict gets ``response`` (or ``error``) when it ends."""
    out: dict = {}

    def target():
        try:
            out["response"] = _run(model.predict(body))
        except Exception as exc:  # reported to the test through out
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


@pytest.mark.parametrize("backend", ["onnx", "pytorch"])
def test_concurrency_bounds_the_reads_in_the_model_at_once(backend, tiny_onnx_model_dir, images, tmp_path):
    """``concurrency`` slots: with one of two taken, a request is still read; with the only one taken, a request
    waits for it and is then read; concurrent reads give the readings of reads one at a time."""
    body = v1_body(_b64(images["jpeg"]))
    two = ALPRModel(model_uri=str(tiny_onnx_model_dir), cache_dir=tmp_path, backend=backend, concurrency=2)
    assert two.load()
    expected = _run(two.predict(body))
    with two._slots:  # one read in progress elsewhere
        thread, out = _predict_in_thread(two, body)
        thread.join(120)
        assert out == {"response": expected}

    one = ALPRModel(model_uri=str(tiny_onnx_model_dir), cache_dir=tmp_path, backend=backend, concurrency=1)
    assert one.load()
    with one._slots:
        thread, out = _predict_in_thread(one, body)
        thread.join(1.0)
        assert thread.is_alive() and out == {}  # waiting for the slot
    thread.join(120)
    assert out == {"response": expected}

    threads = [_predict_in_thread(two, body) for _ in range(6)]
    for thread, _ in threads:
        thread.join(120)
    assert [out for _, out in threads] == [{"response": expected}] * 6


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
    with pytest.raises(ValueError, match="concurrency"):
        ALPRModel(concurrency=0)


def test_main_returns_1_for_a_missing_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALPR_WORKSPACE", str(tmp_path / "ws"))
    assert serving.main(["--model", str(tmp_path / "missing"), "--http-port", "1"]) == 1
    assert "missing" in capsys.readouterr().err
    assert serving.main(["--model", "latest", "--http-port", "1"]) == 1  # an empty workspace has no selected model
    assert "no selected model" in capsys.readouterr().err


# --- a live server ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    """``python -m alpr.serving --model DIR --http-port PORT`` (the project's own flags) on a free 127.0.0.1 port;
    yields an httpx client bound to it."""
    port = free_port()
    args = ["--model", str(tiny_model_dir), "--http-port", str(port)]
    with serve(args, tmp_path_factory.mktemp("live_server"), port=port) as client:
        yield client


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


def _stage_counts(server) -> dict[str, tuple[float, float]]:
    from alpr.model import stages

    text = server.get("/metrics").text
    counts = stages.stage_totals(text, "alpr")
    assert stages.stage_totals(text) == counts  # every series is the model's
    assert stages.stage_totals(text, "another-model") == {}
    return counts


def test_live_stage_seconds_count_every_request_once_per_stage(server, images):
    """``alpr_stage_seconds``: one observation per request and stage (the V2 JSON encoding on V2 only), the
    network's seconds positive."""
    from alpr.model import stages

    before = _stage_counts(server)
    assert post_json(server, "/v1/models/alpr:predict", v1_body(_b64(images["png"]))).status_code == 200
    assert post_json(server, "/v2/models/alpr/infer", v2_body([_b64(images["jpeg"])])).status_code == 200
    after = _stage_counts(server)
    for stage in stages.STAGES:
        added = after[stage][1] - before.get(stage, (0.0, 0.0))[1]
        assert added == (1 if stage == stages.ENCODE else 2), (stage, added)
    for stage in (stages.DECODE, stages.PREPROCESS, stages.NETWORK, stages.POSTPROCESS, stages.READING):
        assert after[stage][0] > before.get(stage, (0.0, 0.0))[0], stage


# --- the command line: KServe's options through kserve's parser, and the project's ------------------------------


def test_kserve_servingruntime_arguments():
    """What a KServe ServingRuntime passes: --model_name={{.Name}} --model_dir=/mnt/models --http_port=8080."""
    args = serving._parse_args(
        ["--model_name=plates-prod", "--model_dir=/mnt/models", "--http_port=8080", "--workers=2", "--grpc_port=9000"],
        environ={},
    )
    assert (args.model, args.model_name, args.http_port, args.workers, args.grpc_port) == (
        "/mnt/models",
        "plates-prod",
        8080,
        2,
        9000,
    )
    assert args.enable_grpc is False  # REST only unless --enable_grpc true
    assert serving._parse_args(["--model=m", "--enable_grpc=true"], environ={}).enable_grpc is True


def test_project_flags_and_defaults():
    args = serving._parse_args(
        [
            "--model",
            "latest",
            "--http-port",
            "9001",
            "--max-instances",
            "4",
            "--max-megapixels",
            "2.5",
            "--device",
            "cpu",
        ],
        environ={},
    )
    assert (args.model, args.http_port, args.max_instances, args.max_megapixels) == ("latest", 9001, 4, 2.5)
    defaults = serving._parse_args(["--model", "m"], environ={})
    assert (defaults.model_name, defaults.http_port, defaults.workers) == ("alpr", 8080, 1)
    assert (defaults.threads, defaults.concurrency) == (0, serving.DEFAULT_CONCURRENCY)
    assert serving._parse_args(["--model", "m", "--concurrency", "3"], environ={}).concurrency == 3
    help_text = serving.build_parser().format_help()
    for flag in ("--model_name", "--http_port", "--grpc_port", "--workers", "--model_dir", "--http-port", "--model "):
        assert flag in help_text, flag


def test_model_source_precedence():
    env = {"STORAGE_URI": "gs://bucket/env-model"}
    assert serving._parse_args(["--model", "a", "--model_dir", "b"], environ=env).model == "a"
    assert serving._parse_args(["--model_dir", "b"], environ=env).model == "b"
    assert serving._parse_args([], environ=env).model == "gs://bucket/env-model"


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        ([], {}, "no model to serve: pass --model URI or --model_dir DIR, or set \\$STORAGE_URI"),
        ([], {"STORAGE_URI": "  "}, "no model to serve"),
        (["--model", "m", "--model_name", "a/b"], {}, "--model_name must be"),
        (["--model", "m", "--workers", "0"], {}, "--workers must be >= 1"),
        (["--model", "m", "--max-instances", "0"], {}, "--max-instances: .*must be >= 1"),
        (["--model", "m", "--concurrency", "0"], {}, "--concurrency: .*must be >= 1"),
        (["--model", "m", "--max-megapixels", "0"], {}, "--max-megapixels must be > 0"),
        (["--model", "m", "--http_port", "eighty"], {}, "--http_port"),
        (["--mod", "m"], {}, "unrecognized arguments: --mod"),  # no abbreviations
    ],
)
def test_bad_command_lines_exit_2_naming_the_flag(argv, environ, message, capsys):
    with pytest.raises(SystemExit) as info:
        serving._parse_args(argv, environ=environ)
    assert info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


# --- liveness: a model that is gone ----------------------------------------------------------------------------


def test_a_stopped_model_is_lost_a_loading_copy_is_not(model, tiny_model_dir, tmp_path):
    m = ALPRModel(model_uri=str(tiny_model_dir), cache_dir=tmp_path)
    assert not m.lost  # not loaded yet
    m.load()
    assert not m.lost
    m.stop()  # what kserve's ModelRepository.unload does to a model
    assert m.ready is False and m.lost
    copy = pickle.loads(pickle.dumps(model))  # a --workers copy, loading in the background: not lost meanwhile
    deadline = time.monotonic() + 60
    while not copy.ready and time.monotonic() < deadline:
        assert not copy.lost
        time.sleep(0.05)
    assert copy.ready and not copy.lost


def test_a_worker_copy_whose_load_fails_is_lost(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    m = ALPRModel(model_uri=str(folder), cache_dir=tmp_path / "cache")
    m.load()
    shutil.rmtree(folder)  # the worker's copy loads again from the model URI: nothing there now
    copy = pickle.loads(pickle.dumps(m))
    deadline = time.monotonic() + 60
    while not copy.lost and time.monotonic() < deadline:
        time.sleep(0.05)
    assert copy.lost and not copy.ready


def test_liveness_fails_once_the_model_is_gone_over_http(tiny_model_dir, tmp_path, images):
    """An ALPRModelServer in a thread of this process (the one test that does so: kserve's FastAPI app is a module
    global), so that the test can take the model away as kserve's repository unload did: liveness then answers 503,
    so the kubelet restarts the container instead of leaving it alive and never ready."""
    m = ALPRModel(model_uri=str(tiny_model_dir), cache_dir=tmp_path)
    m.load()
    port = free_port()
    server = serving.ALPRModelServer(http_port=port, workers=1, enable_grpc=False)

    def run() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        server.start([m])

    thread = threading.Thread(target=run, name="alpr-server", daemon=True)
    thread.start()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False)
    try:
        wait_ready(client, "/v2/models/alpr/ready", 60)
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/").json() == {"status": "alive"}
        server.registered_models.unload("alpr")  # what POST /v2/repository/models/alpr/unload did
        for path in ("/v2/health/live", "/"):
            r = client.get(path)
            assert r.status_code == 503 and "model alpr was loaded and is gone" in r.json()["error"], (path, r.text)
        assert client.get("/v2/models/alpr/ready").status_code in (404, 503)
    finally:
        client.close()
        if server._rest_server is not None:
            server._rest_server._server.should_exit = True  # uvicorn's own stop flag (no signals in a thread)
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_live_repository_routes_are_refused(server, images):
    """kserve's model repository extension would unload the model for anyone who can reach the server: 403."""
    for verb in ("unload", "load"):
        for name in ("alpr", "other"):
            r = server.post(f"/v2/repository/models/{name}/{verb}")
            assert r.status_code == 403, (verb, name, r.status_code, r.text)
            assert "model repository extension disabled" in r.json()["detail"]
    assert server.get("/v2/health/live").json() == {"live": True}
    assert server.get("/v2/models/alpr/ready").json() == {"name": "alpr", "ready": True}
    check_v1_predictions(post_json(server, "/v1/models/alpr:predict", v1_body(_b64(images["jpeg"]))), 1)
