"""The served V2 API as Open Inference Protocol clients send it, against a live ``python -m alpr.serving``.

The server is started as a KServe ServingRuntime starts it (``--model_name=plates --model_dir=DIR
--http_port=PORT``), with the real tiny trained model. Clients: tritonclient's HTTP client (JSON and the binary data
extension), kserve's own ``InferenceRESTClient`` (both ways too) and hand-made bodies through httpx; every malformed
request gets a 4xx answer, never a 5xx, and the server keeps serving (docs/PLATE_SPEC.md "V2 (Open Inference
Protocol) contract").
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct

import numpy as np
import pytest
from live_server import free_port, serve
from readings import check_reading, check_v2_plates, post_json, v1_body, v2_body

#: The served model's name: the InferenceService's, as a ServingRuntime passes it (--model_name={{.Name}}).
NAME = "plates"
INFER = f"/v2/models/{NAME}/infer"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _elements(*items: bytes) -> bytes:
    """BYTES elements in the binary data format: each a 4-byte little-endian length, then its bytes."""
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def _binary_body(header: dict, *tensors: bytes) -> tuple[bytes, dict]:
    """A binary data extension body: the JSON header, then the tensors; with its Inference-Header-Content-Length."""
    head = json.dumps(header).encode()
    return head + b"".join(tensors), {"Inference-Header-Content-Length": str(len(head))}


def _image_input(tensor: bytes, n: int, **overrides) -> dict:
    return {
        "name": "image",
        "datatype": "BYTES",
        "shape": [n],
        "parameters": {"binary_data_size": len(tensor)},
        **overrides,
    }


@pytest.fixture(scope="module")
def images(tiny_coco):
    """Two real images of the tiny data set: ``jpeg`` (a file as it is) and ``png`` (another one re-encoded)."""
    import cv2

    files = sorted((tiny_coco / "images").glob("*.jpg"))[:2]
    ok, png = cv2.imencode(".png", cv2.imread(str(files[1]), cv2.IMREAD_COLOR))
    assert ok
    return {"jpeg": files[0].read_bytes(), "png": png.tobytes()}


@pytest.fixture(scope="module")
def live(tiny_model_dir, tmp_path_factory):
    """The server started with a ServingRuntime's arguments; yields ``(httpx client, "127.0.0.1:port")``."""
    port = free_port()
    args = [f"--model_name={NAME}", f"--model_dir={tiny_model_dir}", f"--http_port={port}"]
    with serve(args, tmp_path_factory.mktemp("protocols"), port=port, model_name=NAME) as client:
        yield client, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def reference(live, images):
    """The readings of (jpeg, png) through V1 JSON: what every other way of asking must return."""
    client, _ = live
    r = post_json(client, f"/v1/models/{NAME}:predict", v1_body(_b64(images["jpeg"]), _b64(images["png"])))
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


# --- the model name is used everywhere -------------------------------------------------------------------------


def test_the_model_name_from_the_command_line_is_in_every_path(live):
    client, _ = live
    assert client.get(f"/v1/models/{NAME}").json() == {"name": NAME, "ready": True}
    assert client.get(f"/v2/models/{NAME}/ready").json() == {"name": NAME, "ready": True}
    assert client.get("/v2/models").json() == {"models": [NAME]}
    assert client.get(f"/v2/models/{NAME}").json()["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert client.get("/v2/models/alpr/ready").status_code == 404


# --- tritonclient (the standard Open Inference Protocol HTTP client) ----------------------------------------


def test_tritonclient_json(live, images, reference):
    """JSON as tritonclient sends it (no Content-Type): base64 strings in, readings as JSON strings out."""
    import tritonclient.http as triton

    _, url = live
    client = triton.InferenceServerClient(url=url)
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(NAME)
        meta = client.get_model_metadata(NAME)
        assert meta["outputs"] == [{"name": "plates", "datatype": "BYTES", "shape": [-1]}]
        inp = triton.InferInput("image", [2], "BYTES")
        inp.set_data_from_numpy(np.array([_b64(images["jpeg"]), _b64(images["png"])], dtype=np.object_), False)
        out = triton.InferRequestedOutput("plates", binary_data=False)
        result = client.infer(NAME, [inp], outputs=[out], request_id="t-json")
    finally:
        client.close()
    assert result.get_response()["id"] == "t-json"
    readings = [json.loads(text) for text in result.as_numpy("plates")]
    assert readings == reference


def test_tritonclient_binary_raw_image_bytes(live, images, reference):
    """The binary data extension: each BYTES element is the raw JPEG/PNG file; outputs come back binary too."""
    import tritonclient.http as triton

    _, url = live
    client = triton.InferenceServerClient(url=url)
    try:
        inp = triton.InferInput("image", [2], "BYTES")
        inp.set_data_from_numpy(np.array([images["jpeg"], images["png"]], dtype=np.object_), binary_data=True)
        result = client.infer(NAME, [inp])  # no outputs named: tritonclient asks for binary_data_output
        binary_out = [json.loads(item) for item in result.as_numpy("plates")]
        out = triton.InferRequestedOutput("plates", binary_data=False)
        json_out = [json.loads(item) for item in client.infer(NAME, [inp], outputs=[out]).as_numpy("plates")]
    finally:
        client.close()
    assert binary_out == json_out == reference


def test_tritonclient_bad_requests_are_4xx(live, images):
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    _, url = live
    client = triton.InferenceServerClient(url=url)
    cases = []
    floats = triton.InferInput("image", [1], "FP32")
    floats.set_data_from_numpy(np.zeros(1, np.float32), binary_data=True)
    cases.append(([floats], "binary data is read for BYTES inputs only"))
    floats_json = triton.InferInput("image", [1], "FP32")
    floats_json.set_data_from_numpy(np.zeros(1, np.float32), binary_data=False)
    cases.append(([floats_json], "datatype must be BYTES"))
    gif = triton.InferInput("image", [1], "BYTES")
    gif.set_data_from_numpy(np.array([b"GIF89a" + bytes(40)], dtype=np.object_), binary_data=True)
    cases.append(([gif], "instance 0: neither the bytes of a JPEG or PNG file nor base64"))
    named = triton.InferInput("images", [1], "BYTES")
    named.set_data_from_numpy(np.array([images["jpeg"]], dtype=np.object_), binary_data=True)
    cases.append(([named], 'exactly one input named "image"'))
    try:
        for inputs, message in cases:
            with pytest.raises(InferenceServerException) as info:
                client.infer(NAME, inputs)
            assert info.value.status() == "400" and message in info.value.message(), info.value
        assert client.is_server_live() and client.is_model_ready(NAME)
    finally:
        client.close()


# --- kserve's own REST client --------------------------------------------------------------------------------


def test_kserve_rest_client_json_and_binary(live, images, reference):
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    _, url = live

    async def ask() -> list:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
        as_json = InferRequest(
            model_name=NAME,
            request_id="k-json",
            infer_inputs=[InferInput("image", [2], "BYTES", data=[_b64(images["jpeg"]), _b64(images["png"])])],
        )
        binary = InferInput("image", [2], "BYTES")
        binary.set_data_from_numpy(np.array([images["jpeg"], images["png"]], dtype=np.object_), binary_data=True)
        as_binary = InferRequest(model_name=NAME, request_id="k-bin", infer_inputs=[binary])
        return [await client.infer(f"http://{url}", request, model_name=NAME) for request in (as_json, as_binary)]

    for response, request_id in zip(asyncio.run(ask()), ("k-json", "k-bin"), strict=True):
        assert response.id == request_id and response.model_name == NAME
        (output,) = response.outputs
        assert (output.name, output.datatype, output.shape) == ("plates", "BYTES", [2])
        assert [json.loads(text) for text in output.data] == reference


# --- hand-made bodies (what curl would send) -------------------------------------------------------------------


def test_plain_http_json_and_binary(live, images, reference):
    client, _ = live
    check_v2_plates(post_json(client, INFER, v2_body([_b64(images["jpeg"])])), 1, model_name=NAME)
    # JSON without Content-Type, as curl --data-binary sends it
    r = client.post(INFER, content=json.dumps(v2_body([_b64(images["jpeg"]), _b64(images["png"])])))
    check_v2_plates(r, 2, model_name=NAME)
    # the binary data extension by hand: raw files, an octet-stream body, output asked in JSON
    tensor = _elements(images["jpeg"], images["png"])
    body, headers = _binary_body({"id": "req-1", "inputs": [_image_input(tensor, 2)]}, tensor)
    r = client.post(INFER, content=body, headers={**headers, "Content-Type": "application/octet-stream"})
    check_v2_plates(r, 2, model_name=NAME)
    assert [json.loads(t) for t in r.json()["outputs"][0]["data"]] == reference
    # base64 text is still read in binary data; the output in binary when asked
    tensor = _elements(_b64(images["png"]).encode())
    header = {"inputs": [_image_input(tensor, 1)], "parameters": {"binary_data_output": True}}
    body, headers = _binary_body(header, tensor)
    r = client.post(INFER, content=body, headers=headers)
    assert r.status_code == 200, r.text
    json_length = int(r.headers["inference-header-content-length"])
    head = json.loads(r.content[:json_length])
    assert head["outputs"][0]["parameters"]["binary_data_size"] == len(r.content) - json_length
    (length,) = struct.unpack_from("<I", r.content, json_length)
    check_reading(json.loads(r.content[json_length + 4 : json_length + 4 + length]))
    assert json.loads(r.content[json_length + 4 : json_length + 4 + length]) == reference[1]


def _malformed(images: dict) -> list[tuple[str, bytes, dict, str]]:
    """``(what, body, headers, message)``: malformed V2 requests and the message of their 400 (None: any 4xx)."""
    jpeg = images["jpeg"]
    one = _elements(jpeg)
    cases = []

    def binary(what, header, *tensors, message, headers=None):
        body, head = _binary_body(header, *tensors)
        cases.append((what, body, {**head, **(headers or {})}, message))

    def raw(what, body, message, headers=None):
        cases.append((what, body, headers or {}, message))

    json_ct = {"Content-Type": "application/json"}
    raw("bad base64, JSON", json.dumps(v2_body(["%%%"])).encode(), "instance 0: not valid base64", json_ct)
    raw("bad base64, no content type", json.dumps(v2_body(["%%%"])).encode(), "instance 0: not valid base64")
    raw("wrong shape", json.dumps(v2_body([_b64(jpeg)], shape=[2])).encode(), r"shape must be \[N\]")
    raw("wrong datatype", json.dumps(v2_body([1.5], datatype="FP32")).encode(), "datatype must be BYTES")
    raw("empty body", b"", None)
    raw("empty body, JSON", b"", None, json_ct)
    raw("not JSON", b"{not json", "is not valid JSON")
    raw("a JSON list", b"[]", "must be a JSON object")
    raw("no inputs", b'{"id": "x"}', '"inputs"')
    raw("an input that is not an object", b'{"inputs": [1]}', "input 0 must be a JSON object")
    raw("no data at all", b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1]}]}', 'no "data"')
    raw("schema: shape not a list", b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": "x", "data": []}]}',
        "not an Open Inference Protocol request")  # fmt: skip
    raw("binary body without its header", one, "is not valid JSON")
    raw("unknown output", json.dumps({**v2_body([_b64(jpeg)]), "outputs": [{"name": "boxes"}]}).encode(),
        'unknown requested output "boxes"')  # fmt: skip
    binary("non-image raw bytes", {"inputs": [_image_input(_elements(b"GIF89a" + bytes(40)), 1)]},
           _elements(b"GIF89a" + bytes(40)), message="instance 0: neither the bytes of a JPEG or PNG file")  # fmt: skip
    binary("truncated image", {"inputs": [_image_input(_elements(jpeg[:300]), 1)]}, _elements(jpeg[:300]),
           message="instance 0: not a decodable JPEG")  # fmt: skip
    binary("truncated binary data", {"inputs": [_image_input(one, 1)]}, one[:-10], message="truncated")
    binary("element longer than its tensor", {"inputs": [_image_input(one[:-10], 1)]}, one[:-10],
           message="claims")  # fmt: skip
    binary("cut length prefix", {"inputs": [_image_input(b"\x05\x00", 1)]}, b"\x05\x00", message="length prefix")
    binary("bytes after the data", {"inputs": [_image_input(one, 1)]}, one, b"extra", message="bytes after")
    binary("binary_data_size not a number", {"inputs": [_image_input(one, 1, parameters={"binary_data_size": "x"})]},
           one, message="binary_data_size must be a byte count")  # fmt: skip
    binary("binary_data_size negative", {"inputs": [_image_input(one, 1, parameters={"binary_data_size": -1})]},
           one, message="binary_data_size must be a byte count")  # fmt: skip
    binary("data and binary data", {"inputs": [_image_input(one, 1, data=[_b64(jpeg)])]}, one,
           message='both "data"')  # fmt: skip
    binary("binary FP32", {"inputs": [_image_input(b"\0" * 4, 1, datatype="FP32")]}, b"\0" * 4,
           message="BYTES inputs only")  # fmt: skip
    many = _elements(*[jpeg] * 33)
    binary("33 images", {"inputs": [_image_input(many, 33)]}, many, message="too many instances")
    binary("shape against elements", {"inputs": [_image_input(one, 3)]}, one, message=r"shape must be \[N\]")
    body, _ = _binary_body({"inputs": [_image_input(one, 1)]}, one)
    for value, message in [
        (str(10**12), "header inference-header-content-length is 1000000000000"),
        ("-5", "must be a byte count"),
        ("abc", "must be a byte count"),
        ("0", "the JSON part must be 1 to"),
    ]:
        raw(f"header length {value}", body, message, {"Inference-Header-Content-Length": value})
    return cases


def test_malformed_requests_get_4xx_never_5xx(live, images):
    client, _ = live
    failures = []
    for what, body, headers, message in _malformed(images):
        r = client.post(INFER, content=body, headers=headers)
        if not 400 <= r.status_code < 500:
            failures.append(f"{what}: {r.status_code} {r.text[:300]}")
        elif message is not None and (r.status_code != 400 or not re.search(message, r.json()["error"])):
            failures.append(f"{what}: {r.status_code} {r.text[:300]} (expected 400 /{message}/)")
    assert not failures, "\n".join(failures)
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get(f"/v2/models/{NAME}/ready").status_code == 200
    check_v2_plates(post_json(client, INFER, v2_body([_b64(images["jpeg"])])), 1, model_name=NAME)
