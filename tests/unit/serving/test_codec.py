"""Request payloads to images (alpr.serving.codec): decoding, size limits, and errors that name the instance.

No model, no server: images are made here with OpenCV, headers that claim a size without pixel data come from the
``fake_png_header`` / ``fake_jpeg_header`` fixtures (conftest.py). What the model makes of these errors (kserve's
``InvalidInput``, HTTP 400) is tested in test_server.py.
"""

import base64
import json
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

from alpr.serving import codec
from alpr.serving.codec import (
    RequestError,
    decode_image,
    decode_images,
    deserialize_bytes_elements,
    image_size_from_header,
    is_raw_image,
    split_v2_body,
    v1_encoded_images,
    v2_encoded_images,
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _encode(ext: str, array: np.ndarray) -> bytes:
    ok, data = cv2.imencode(ext, array)
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def images():
    """A 64x48 BGR picture (smooth, so JPEG keeps it close) as ``png_bgr``, and its ``png`` and ``jpeg`` files."""
    ys, xs = np.mgrid[0:48, 0:64]
    png_bgr = np.stack([xs * 4, ys * 5, (xs + ys) * 2], axis=-1).astype(np.uint8)
    return {"png_bgr": png_bgr, "png": _encode(".png", png_bgr), "jpeg": _encode(".jpg", png_bgr)}


# --- one image ------------------------------------------------------------------------------------------------------


def test_png_decodes_exactly_and_jpeg_closely(images):
    png = decode_image(_b64(images["png"]))
    assert png.dtype == np.uint8 and np.array_equal(png, images["png_bgr"])  # lossless, and BGR as encoded
    jpeg = decode_image(_b64(images["jpeg"]).encode("ascii"))  # bytes (gRPC, binary extension) work too
    assert jpeg.shape == images["png_bgr"].shape and jpeg.dtype == np.uint8
    assert np.abs(jpeg.astype(int) - images["png_bgr"]).mean() < 4


def test_base64_line_breaks_and_spaces_are_ignored(images):
    text = base64.encodebytes(images["png"]).decode("ascii")  # MIME style: a line break every 76 characters
    assert "\n" in text
    assert np.array_equal(decode_image(" " + text), images["png_bgr"])


def test_grayscale_and_rgba_png_become_3_channel_bgr(images):
    gray = cv2.cvtColor(images["png_bgr"], cv2.COLOR_BGR2GRAY)
    rgba = cv2.cvtColor(images["png_bgr"], cv2.COLOR_BGR2BGRA)
    encoded = [_b64(cv2.imencode(".png", a)[1].tobytes()) for a in (gray, rgba)]
    decoded = decode_images(encoded)
    assert [img.shape for img in decoded] == [images["png_bgr"].shape] * 2
    assert np.array_equal(decoded[1], images["png_bgr"])  # the alpha channel is dropped, the colours kept
    assert np.array_equal(decoded[0][..., 0], gray) and np.array_equal(decoded[0][..., 2], gray)


def test_image_size_from_header(images, fake_jpeg_header):
    h, w = images["png_bgr"].shape[:2]
    assert image_size_from_header(images["png"]) == ("png", w, h)
    assert image_size_from_header(images["jpeg"])[0] == "jpeg"
    assert image_size_from_header(images["jpeg"]) == ("jpeg", w, h)
    assert image_size_from_header(fake_jpeg_header(1280, 720)) == ("jpeg", 1280, 720)
    with pytest.raises(ValueError, match="not a JPEG or PNG"):
        image_size_from_header(b"")


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ("", "empty image data"),
        ("   \n", "empty image data"),
        (None, "expected a base64 string, got NoneType"),
        (12345, "expected a base64 string, got int"),
        ("not base64 at all!", "not valid base64"),
        ("é", "not valid base64"),
        ("AAA", "not valid base64"),  # bad padding
        (_b64(b"hello, this is text"), "not a JPEG or PNG image"),
        (_b64(b"BM" + bytes(100)), "not a JPEG or PNG image"),  # BMP
        (_b64(b"GIF89a" + bytes(50)), "not a JPEG or PNG image"),
        (_b64(b"\x89PNG\r\n\x1a\n"), "truncated or corrupt PNG header"),
        (_b64(b"\xff\xd8\xff\xd9"), "truncated or corrupt JPEG header"),
        (_b64(b"\xff\xd8\x00\x00"), r"corrupt JPEG header \(segment marker expected\)"),
    ],
)
def test_what_is_not_a_jpeg_or_png_is_refused(encoded, message):
    with pytest.raises(ValueError, match=message) as info:
        decode_image(encoded)
    assert "instance" not in str(info.value)  # one image alone: the caller names the instance


def test_headers_without_pixels_are_refused_after_the_size_check(fake_png_header, fake_jpeg_header, images):
    with pytest.raises(ValueError, match="not a decodable PNG image"):
        decode_image(_b64(fake_png_header(64, 64)))
    with pytest.raises(ValueError, match="not a decodable JPEG image"):
        decode_image(_b64(fake_jpeg_header(64, 64)))
    with pytest.raises(ValueError, match="not a decodable JPEG image"):
        decode_image(_b64(images["jpeg"][: len(images["jpeg"]) // 2]))
    with pytest.raises(ValueError, match="PNG header gives an empty size 0x10"):
        decode_image(_b64(fake_png_header(0, 10)))


def test_oversized_images_are_refused_before_decoding(fake_png_header, fake_jpeg_header, images):
    # The pixel count comes from the header: 50 MP of PNG that holds no pixels at all.
    with pytest.raises(ValueError, match=r"image is 10000x5000 = 50.0 MP, over the limit of 40.0 MP"):
        decode_image(_b64(fake_png_header(10_000, 5_000)))
    with pytest.raises(ValueError, match=r"image is 8000x6000 = 48.0 MP, over the limit of 40.0 MP"):
        decode_image(_b64(fake_jpeg_header(8_000, 6_000)))
    h, w = images["png_bgr"].shape[:2]
    with pytest.raises(ValueError, match=rf"image is {w}x{h} = .* over the limit of 0.0 MP"):
        decode_image(_b64(images["png"]), max_pixels=w * h - 1)
    assert decode_image(_b64(images["png"]), max_pixels=w * h).shape == (h, w, 3)  # the limit itself is fine
    # The encoded length is checked before base64 decoding: this text is not even valid base64.
    with pytest.raises(ValueError, match=r"encoded image is about 1.5 MB, over the limit of 1.0 MB"):
        decode_image("!" * 2_000_000, max_bytes=10**6)
    assert codec.DEFAULT_MAX_PIXELS == 40_000_000 and codec.DEFAULT_MAX_IMAGE_BYTES == 20 * 1024 * 1024


# --- a request ------------------------------------------------------------------------------------------------------


def test_decode_images_keeps_the_order_and_names_the_bad_instance(images, fake_png_header):
    good = [_b64(images["png"]), _b64(images["jpeg"])]
    decoded = decode_images(good)
    assert len(decoded) == 2 and np.array_equal(decoded[0], images["png_bgr"])
    assert decode_images([]) == []
    cases = [
        (good + ["%%%"], "instance 2: not valid base64"),
        ([good[0], ""], "instance 1: empty image data"),
        ([_b64(b"plain text"), good[0]], "instance 0: not a JPEG or PNG image"),
        ([good[0], _b64(fake_png_header(9_000, 9_000))], "instance 1: image is 9000x9000 = 81.0 MP"),
    ]
    for encoded, message in cases:
        with pytest.raises(RequestError, match=f"^{message}"):
            decode_images(encoded)
    with pytest.raises(RequestError, match="instance 0: image is"):
        decode_images(good, max_pixels=100)
    assert issubclass(RequestError, ValueError)


def test_v1_body_gives_the_base64_strings_in_order():
    body = {"instances": [{"image_bytes": {"b64": "Zmlyc3Q="}}, {"image_bytes": {"b64": "c2Vjb25k"}}]}
    assert v1_encoded_images(body) == ["Zmlyc3Q=", "c2Vjb25k"]
    assert v1_encoded_images({"instances": [{"image_bytes": {"b64": 5}}]}, 1) == [5]  # checked when decoded


@pytest.mark.parametrize(
    ("body", "max_instances", "message"),
    [
        ("{}", 32, "not read as JSON: send it with Content-Type: application/json"),
        ([1], 32, "must be a JSON object"),
        ({"images": []}, 32, 'missing "instances"'),
        ({"instances": "x"}, 32, '"instances" must be a list, got str'),
        ({"instances": []}, 32, "empty request: no instances to read"),
        ({"instances": [{"image_bytes": {"b64": "x"}}] * 3}, 2, "too many instances: 3 in one request, the limit is 2"),
        ({"instances": [{"image_bytes": {"b64": "x"}}, {"b64": "x"}]}, 32, 'instance 1: missing "image_bytes"'),
        ({"instances": [{"image_bytes": {"b64": "x"}}, {"image_bytes": "x"}]}, 32, 'instance 1: missing "image_bytes"'),
        ({"instances": [{"image_bytes": {}}]}, 32, 'instance 0: "image_bytes" has no "b64" field'),
    ],
)
def test_bad_v1_bodies(body, max_instances, message):
    with pytest.raises(RequestError, match=message):
        v1_encoded_images(body, max_instances)


def _request(data, *, name="image", datatype="BYTES", shape=None, outputs=None) -> InferRequest:
    inp = InferInput(name=name, shape=[len(data)] if shape is None else shape, datatype=datatype, data=list(data))
    return InferRequest(model_name="alpr", infer_inputs=[inp], request_id="r", request_outputs=outputs)


def test_v2_request_gives_the_base64_strings_in_order():
    assert v2_encoded_images(_request(["Zmlyc3Q=", "c2Vjb25k"])) == ["Zmlyc3Q=", "c2Vjb25k"]
    assert v2_encoded_images(_request(["eA=="], outputs=[RequestedOutput("plates")])) == ["eA=="]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (InferRequest(model_name="alpr", infer_inputs=[]), "empty request: no inputs"),
        (_request(["x"], name="images"), "expected exactly one input named \"image\", got \\['images'\\]"),
        (_request([1.0], datatype="FP32"), "datatype must be BYTES .*got FP32"),
        (_request(["x", "y"], shape=[3]), r"shape must be \[N\] with N = the number of data items \(2\), got \[3\]"),
        (_request([]), "empty request: no instances to read"),
        (_request(["x"] * 33), "too many instances: 33 in one request, the limit is 32"),
        (_request(["x"], outputs=[RequestedOutput("boxes")]), 'unknown requested output "boxes"'),
    ],
)
def test_bad_v2_requests(request_, message):
    with pytest.raises(RequestError, match=message):
        v2_encoded_images(request_)


def test_the_codec_does_not_import_kserve():
    """Decoding works without the server's dependencies (kserve parses sys.argv when imported)."""
    code = "import sys, alpr.serving.codec; sys.exit('kserve' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60, check=False).returncode == 0


# --- raw image bytes and the V2 binary data extension ------------------------------------------------------------


def _elements(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def test_raw_jpeg_and_png_bytes_decode_like_their_base64(images):
    assert is_raw_image(images["png"]) and is_raw_image(images["jpeg"]) and is_raw_image(bytearray(images["png"]))
    assert not is_raw_image(_b64(images["png"]).encode()) and not is_raw_image(_b64(images["png"]))
    assert np.array_equal(decode_image(images["png"]), images["png_bgr"])
    assert np.array_equal(decode_image(images["jpeg"]), decode_image(_b64(images["jpeg"])))
    assert np.array_equal(decode_image(_b64(images["png"]).encode()), images["png_bgr"])  # base64 as bytes
    with pytest.raises(ValueError, match="neither the bytes of a JPEG or PNG file nor base64"):
        decode_image(b"GIF89a" + bytes(20))
    with pytest.raises(ValueError, match="image is 0.0 MB, over the limit"):
        decode_image(images["png"], max_bytes=10)
    with pytest.raises(ValueError, match="truncated or corrupt JPEG header"):
        decode_image(images["jpeg"][:100])


def test_deserialize_bytes_elements():
    assert deserialize_bytes_elements(b"") == []
    assert deserialize_bytes_elements(_elements(b"ab", b"", b"c")) == [b"ab", b"", b"c"]
    with pytest.raises(RequestError, match="element 1 has a truncated 4-byte length prefix"):
        deserialize_bytes_elements(_elements(b"ab") + b"\x01\x00")
    with pytest.raises(RequestError, match="element 0 claims 5 bytes, only 2 are left"):
        deserialize_bytes_elements(struct.pack("<I", 5) + b"ab")
    with pytest.raises(RequestError, match="too many instances: more than 2"):
        deserialize_bytes_elements(_elements(b"a", b"b", b"c"), max_elements=2)


def _binary(header: dict, *tensors: bytes) -> tuple[bytes, str]:
    head = json.dumps(header).encode()
    return head + b"".join(tensors), str(len(head))


def test_split_v2_body_fills_in_the_binary_data(images):
    tensor = _elements(images["jpeg"], images["png"])
    inp = {"name": "image", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(tensor)}}
    other = {"name": "x", "datatype": "BYTES", "shape": [1], "data": ["AAAA"]}
    body, length = _binary({"id": "r", "inputs": [other, inp]}, tensor)
    request = split_v2_body(body, length)
    assert request["id"] == "r" and request["inputs"][0]["data"] == ["AAAA"]
    assert request["inputs"][1]["data"] == [images["jpeg"], images["png"]]
    # no header: the whole body is the JSON request
    plain = json.dumps({"inputs": [other]}).encode()
    assert split_v2_body(plain, None)["inputs"] == [other]
    assert split_v2_body(plain, f" {len(plain)} ")["inputs"] == [other]


@pytest.mark.parametrize(
    ("body", "length", "message"),
    [
        (b'{"inputs": []}', "abc", "must be a byte count, got 'abc'"),
        (b'{"inputs": []}', "-1", "must be a byte count"),
        (b'{"inputs": []}', "0", "is 0, but the body has 14 bytes"),
        (b'{"inputs": []}', "99", "is 99, but the body has 14 bytes"),
        (b"{nope", None, "is not valid JSON"),
        (b"\xff\xfe", None, "is not valid JSON"),
        (b"[1]", None, "must be a JSON object"),
        (b'{"inputs": {}}', None, 'needs "inputs": a list'),
        (b'{"inputs": ["x"]}', None, "input 0 must be a JSON object, got str"),
        (b'{"inputs": [{"name": "image"}]}', None, 'input "image": no "data" and no parameters.binary_data_size'),
        (b'{"inputs": [{"name": "image", "data": [], "parameters": {"binary_data_size": 0}}]}', None, 'both "data"'),
        (
            b'{"inputs": [{"name": "i", "datatype": "BYTES", "parameters": {"binary_data_size": true}}]}',
            None,
            "byte count",
        ),
        (
            b'{"inputs": [{"name": "i", "datatype": "BYTES", "parameters": {"binary_data_size": 1.5}}]}',
            None,
            "byte count",
        ),
        (
            b'{"inputs": [{"name": "i", "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}',
            None,
            "BYTES inputs only",
        ),
        (
            b'{"inputs": [{"name": "i", "datatype": "BYTES", "parameters": {"binary_data_size": 4}}]}',
            None,
            "only 0 bytes",
        ),
    ],
)
def test_split_v2_body_refuses_malformed_bodies(body, length, message):
    with pytest.raises(RequestError, match=message):
        split_v2_body(body, length)


def test_split_v2_body_refuses_leftover_and_truncated_data(images):
    one = _elements(images["png"])
    inp = {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(one)}}
    body, length = _binary({"inputs": [inp]}, one, b"!")
    with pytest.raises(RequestError, match="1 bytes after the inputs' binary data"):
        split_v2_body(body, length)
    body, length = _binary({"inputs": [inp]}, one[:-1])
    with pytest.raises(RequestError, match="truncated"):
        split_v2_body(body, length)
    many = _elements(*[b"x"] * 5)
    inp["parameters"]["binary_data_size"] = len(many)
    body, length = _binary({"inputs": [inp]}, many)
    with pytest.raises(RequestError, match="too many instances"):
        split_v2_body(body, length, max_elements=4)
