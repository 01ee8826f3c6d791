"""Request payloads to images (alpr.serving.codec): decoding, size limits, and errors that name the instance.

No model, no server: images are made here with OpenCV, headers that claim a size without pixel data come from the
``fake_png_header`` / ``fake_jpeg_header`` fixtures (conftest.py). What the model makes of these errors (kserve's
``InvalidInput``, HTTP 400) is tested in test_server.py.
"""

import base64
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
    image_size_from_header,
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
