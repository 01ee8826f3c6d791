"""Request payloads to images: the V1 and V2 request bodies of the served model, decoded, with clear errors.

The API is ``docs/PLATE_SPEC.md`` "Serving (KServe)":

- V1: ``{"instances": [{"image_bytes": {"b64": "<base64 JPEG or PNG>"}}, ...]}`` (:func:`v1_encoded_images`);
- V2: one input ``image``, datatype ``BYTES``, shape ``[N]``; the only output that may be requested is ``plates``
  (:func:`v2_encoded_images`). In a JSON body its data are N base64 strings; with the Open Inference Protocol's
  binary data extension (:func:`split_v2_body`: a JSON header of ``inference-header-content-length`` bytes, then
  the tensors' bytes, each BYTES element a 4-byte little-endian length and its bytes) each element is the raw
  JPEG or PNG file.

Each image becomes an HxWx3 uint8 BGR array (:func:`decode_image`; grayscale and alpha images become 3 channels).
An element given as ``bytes`` that starts with the JPEG or PNG signature is the image itself; any other element is
read as base64 (the two cannot be confused: both signatures start with a byte outside base64's ASCII alphabet).
Size limits are checked before the work they guard: the number of instances before any decoding, the encoded
length before base64 decoding, the pixel count from the JPEG/PNG header (:func:`image_size_from_header`) before
the pixels are decoded.

Errors: every problem of a request is a :class:`RequestError` whose message names the instance (counted from 0)
and the problem (``instance 1: not valid base64 (...)``); the server turns it into HTTP 400. :func:`decode_image`
alone raises a plain :class:`ValueError` without the index. Nothing here imports kserve: the V2 request is read
through the attributes of ``kserve.protocol.infer_type.InferRequest``.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from kserve.protocol.infer_type import InferRequest

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_INSTANCES",
    "DEFAULT_MAX_PIXELS",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "RequestError",
    "decode_image",
    "decode_images",
    "deserialize_bytes_elements",
    "image_size_from_header",
    "is_raw_image",
    "split_v2_body",
    "v1_encoded_images",
    "v2_encoded_images",
]

#: V2 input and output tensor names (docs/PLATE_SPEC.md "Serving (KServe)").
INPUT_NAME = "image"
OUTPUT_NAME = "plates"
#: Most images accepted in one request.
DEFAULT_MAX_INSTANCES = 32
#: Most pixels (width x height) accepted in one image: 40 MP, checked from the JPEG/PNG header before decoding.
DEFAULT_MAX_PIXELS = 40_000_000
#: Most bytes accepted for one encoded image (after base64 decoding): 20 MiB.
DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
#: JPEG start-of-frame markers (they carry the image size): C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: JPEG markers without a length field: TEM, RST0-7, SOI.
_JPEG_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})
_B64_WHITESPACE = {ord(c): None for c in " \t\r\n"}


class RequestError(ValueError):
    """A request the model cannot read; the message names the instance (from 0) where there is one, and the
    problem. The server answers it with HTTP 400 (``kserve.errors.InvalidInput``)."""


# --- decoding one image ----------------------------------------------------------------------------------------


def image_size_from_header(data: bytes) -> tuple[str, int, int]:
    """Read an encoded image's format and size from its header, without decoding the pixels.

    Args:
        data: the encoded image (JPEG or PNG bytes).

    Returns:
        ``(format, width, height)``, format ``"jpeg"`` or ``"png"``, width and height in pixels.

    Raises:
        ValueError: not a JPEG or PNG, or the header is truncated or corrupt (the message says which).
    """
    if data.startswith(_PNG_SIGNATURE):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ValueError("truncated or corrupt PNG header")
        return "png", int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data.startswith(_JPEG_SOI):
        width, height = _jpeg_size(data)
        return "jpeg", width, height
    raise ValueError("not a JPEG or PNG image")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height from a JPEG's start-of-frame segment; ValueError when there is none before the scan."""
    i, n = 2, len(data)
    while i + 1 < n:
        if data[i] != 0xFF:
            raise ValueError("corrupt JPEG header (segment marker expected)")
        marker = data[i + 1]
        i += 2
        if marker == 0xFF:  # fill byte before a marker
            i -= 1
            continue
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA) or i + 2 > n:  # end of image or start of scan before any frame header
            break
        length = int.from_bytes(data[i : i + 2], "big")
        if length < 2:
            break
        if marker in _JPEG_SOF:
            if i + 7 > n:
                break
            return int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 3 : i + 5], "big")
        i += length
    raise ValueError("truncated or corrupt JPEG header (no frame size before the image data)")


def _b64decode(text: str | bytes) -> bytes:
    """Strict base64 (standard alphabet; spaces and line breaks ignored); ValueError when it is not base64."""
    if isinstance(text, str):
        text = text.translate(_B64_WHITESPACE)
    else:
        text = text.translate(None, b" \t\r\n")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not valid base64 ({exc})") from None


def is_raw_image(data: object) -> bool:
    """True when ``data`` is ``bytes`` starting with the JPEG or PNG signature: an image file, not base64 text."""
    return isinstance(data, (bytes, bytearray)) and data.startswith((_JPEG_SOI, _PNG_SIGNATURE))


def decode_image(
    encoded: str | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> np.ndarray:
    """Decode one JPEG or PNG, raw or base64, into an HxWx3 uint8 BGR array (grayscale and alpha become 3 channels).

    Size limits are checked before the work they guard: the encoded length before base64 decoding, the pixel
    count from the image header before the pixels are decoded.

    Args:
        encoded: base64 text (``str``, or ASCII ``bytes``) of a JPEG or PNG file, or the file's own ``bytes``
            (recognised by its signature, :func:`is_raw_image`: what the V2 binary data extension carries).
        max_pixels: most pixels (width x height) accepted.
        max_bytes: most bytes accepted for the image file (raw, or after base64 decoding).

    Raises:
        ValueError: not base64 (nor a raw JPEG/PNG), too many bytes, not a JPEG/PNG, too many pixels, or
            undecodable pixel data; the message says which (without naming the instance: :func:`decode_images`
            adds that).
    """
    import cv2

    if isinstance(encoded, bytearray):
        encoded = bytes(encoded)
    if not isinstance(encoded, (str, bytes)):
        raise ValueError(f"expected a base64 string, got {type(encoded).__name__}")
    if is_raw_image(encoded):
        if len(encoded) > max_bytes:
            raise ValueError(f"image is {len(encoded) / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:.1f} MB")
        raw = encoded
    else:
        if len(encoded) * 3 // 4 > max_bytes:
            raise ValueError(
                f"encoded image is about {len(encoded) * 3 / 4 / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:.1f} MB"
            )
        try:
            raw = _b64decode(encoded)
        except ValueError as exc:
            if isinstance(encoded, bytes):  # binary data: neither an image file nor base64 text
                raise ValueError(f"neither the bytes of a JPEG or PNG file nor base64 text of one: {exc}") from None
            raise
    if not raw:
        raise ValueError("empty image data")
    fmt, width, height = image_size_from_header(raw)
    if width <= 0 or height <= 0:
        raise ValueError(f"{fmt.upper()} header gives an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ValueError(
            f"image is {width}x{height} = {width * height / 1e6:.1f} MP, over the limit of {max_pixels / 1e6:.1f} MP"
        )
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ValueError(f"not a decodable {fmt.upper()} image (corrupt or truncated data)")
    return image


def decode_images(
    encoded: Sequence[Any], *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> list[np.ndarray]:
    """Decode every instance of a request with :func:`decode_image`, in order.

    Args:
        encoded: the instances' base64 strings (as :func:`v1_encoded_images` / :func:`v2_encoded_images` return).
        max_pixels, max_bytes: the limits of :func:`decode_image`, per image.

    Returns:
        HxWx3 uint8 BGR arrays, one per instance, in order.

    Raises:
        RequestError: the first instance that does not decode: ``instance <i>: <problem>`` (i from 0).
    """
    images = []
    for i, item in enumerate(encoded):
        try:
            images.append(decode_image(item, max_pixels=max_pixels, max_bytes=max_bytes))
        except ValueError as exc:
            raise RequestError(f"instance {i}: {exc}") from None
    return images


# --- the V2 binary data extension ---------------------------------------------------------------------------------


def deserialize_bytes_elements(raw: bytes, *, max_elements: int | None = None) -> list[bytes]:
    """The elements of a BYTES tensor in the binary data format: each a 4-byte little-endian length, then its bytes.

    Args:
        raw: the tensor's bytes (its ``binary_data_size`` bytes of the request body).
        max_elements: stop with an error past this many elements (None: no limit).

    Returns:
        The elements, in order (``bytes``; ``[]`` for an empty tensor).

    Raises:
        RequestError: a length prefix cut short, an element longer than the bytes left, or too many elements.
    """
    elements, offset, n = [], 0, len(raw)
    while offset < n:
        if max_elements is not None and len(elements) >= max_elements:
            raise RequestError(f"too many instances: more than {max_elements} in one request")
        if offset + 4 > n:
            raise RequestError(f"binary data: element {len(elements)} has a truncated 4-byte length prefix")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > n:
            raise RequestError(
                f"binary data: element {len(elements)} claims {length} bytes, only {n - offset} are left (truncated)"
            )
        elements.append(raw[offset : offset + length])
        offset += length
    return elements


def _header_length(value: str | None, body_size: int) -> int:
    if value is None:  # no binary data: the whole body is the JSON request (as Triton reads it)
        return body_size
    text = value.strip()
    if not text.isdigit():
        raise RequestError(f"header inference-header-content-length must be a byte count, got {value!r}")
    length = int(text)
    if not 0 < length <= body_size:
        raise RequestError(
            f"header inference-header-content-length is {length}, but the body has {body_size} bytes"
            " (the JSON part must be 1 to that many bytes)"
        )
    return length


def split_v2_body(body: bytes, header_length: str | None, *, max_elements: int | None = None) -> dict:
    """A V2 request body in the Open Inference Protocol's binary data extension, as one JSON request.

    The body is a JSON header of ``header_length`` bytes (the ``inference-header-content-length`` header; when it
    is absent the whole body is JSON), then the binary data of each input whose ``parameters`` carry
    ``binary_data_size``, in the order of the inputs. Each such input gets ``"data"``: its elements as ``bytes``
    (:func:`deserialize_bytes_elements`); the elements of this model's ``image`` input are then raw JPEG/PNG files.

    Args:
        body: the request body.
        header_length: the ``inference-header-content-length`` header's value, or None.
        max_elements: most elements read from one binary tensor (the request's instance limit).

    Returns:
        The request as a dict: ``{"inputs": [...], ...}`` with every input's ``data`` filled in. The Open
        Inference Protocol schema of the rest (types of ``name``, ``shape``, ``datatype``) is the caller's check.

    Raises:
        RequestError: a bad header value, a JSON part that is not a JSON object with an ``inputs`` list, an input
            with both ``data`` and ``binary_data_size`` or neither, binary data for a datatype other than BYTES, a
            ``binary_data_size`` that is not a byte count or goes past the end of the body, bytes left after the
            last input's data, or a truncated element.
    """
    json_length = _header_length(header_length, len(body))
    try:
        request = json.loads(body[:json_length])
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(f"the request's JSON part ({json_length} bytes) is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise RequestError('the request must be a JSON object {"inputs": [...]}')
    inputs = request.get("inputs")
    if not isinstance(inputs, list):
        raise RequestError('the request needs "inputs": a list of input tensors')
    offset = json_length
    for i, inp in enumerate(inputs):
        if not isinstance(inp, dict):
            raise RequestError(f"input {i} must be a JSON object, got {type(inp).__name__}")
        name = inp.get("name", i)
        parameters = inp.get("parameters")
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is None:
            if "data" not in inp:
                raise RequestError(f'input "{name}": no "data" and no parameters.binary_data_size')
            continue
        if "data" in inp:
            raise RequestError(f'input "{name}": both "data" and parameters.binary_data_size; send one')
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise RequestError(f'input "{name}": parameters.binary_data_size must be a byte count, got {size!r}')
        if inp.get("datatype") != "BYTES":
            raise RequestError(
                f'input "{name}": binary data is read for BYTES inputs only, got datatype {inp.get("datatype")!r}'
            )
        if offset + size > len(body):
            raise RequestError(
                f'input "{name}": binary_data_size is {size}, only {len(body) - offset} bytes are left (truncated)'
            )
        inp["data"] = deserialize_bytes_elements(body[offset : offset + size], max_elements=max_elements)
        offset += size
    if offset != len(body):
        raise RequestError(
            f"{len(body) - offset} bytes after the inputs' binary data: their binary_data_size values and"
            " inference-header-content-length do not add up to the body's size"
        )
    return request


# --- request parsing: V1 and V2 -> the encoded images ------------------------------------------------------------


def _check_count(count: int, max_instances: int) -> None:
    if count == 0:
        raise RequestError("empty request: no instances to read")
    if count > max_instances:
        raise RequestError(f"too many instances: {count} in one request, the limit is {max_instances}")


def v1_encoded_images(payload: Any, max_instances: int = DEFAULT_MAX_INSTANCES) -> list[Any]:
    """The base64 strings of a V1 request ``{"instances": [{"image_bytes": {"b64": ...}}, ...]}``, in order.

    Args:
        payload: the request body as kserve parsed it (a dict; ``bytes``/``str`` when it was not read as JSON).
        max_instances: most instances accepted.

    Raises:
        RequestError: not a JSON object, ``instances`` missing or not a list, empty or over ``max_instances``, an
            instance without ``image_bytes`` / ``b64`` (the message names the instance).
    """
    if isinstance(payload, (bytes, str)):
        raise RequestError("request body was not read as JSON: send it with Content-Type: application/json")
    if not isinstance(payload, dict):
        raise RequestError('request body must be a JSON object {"instances": [...]}')
    if "instances" not in payload:
        raise RequestError('missing "instances": expected {"instances": [{"image_bytes": {"b64": "..."}}, ...]}')
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise RequestError(f'"instances" must be a list, got {type(instances).__name__}')
    _check_count(len(instances), max_instances)
    encoded = []
    for i, instance in enumerate(instances):
        image_bytes = instance.get("image_bytes") if isinstance(instance, dict) else None
        if not isinstance(image_bytes, dict):
            raise RequestError(f'instance {i}: missing "image_bytes" (expected {{"image_bytes": {{"b64": "..."}}}})')
        if "b64" not in image_bytes:
            raise RequestError(f'instance {i}: "image_bytes" has no "b64" field')
        encoded.append(image_bytes["b64"])
    return encoded


def _v2_data(inp: Any) -> list[Any]:
    """The data items of a V2 input: JSON ``data`` (REST), else the raw binary contents (binary extension, gRPC)."""
    if inp.data is not None:
        return list(inp.data)
    try:
        return inp.as_numpy().reshape(-1).tolist()
    except (TypeError, ValueError, struct.error) as exc:  # raw contents that do not parse
        raise RequestError(f'input "{INPUT_NAME}": no readable data ({exc})') from None


def v2_encoded_images(request: InferRequest, max_instances: int = DEFAULT_MAX_INSTANCES) -> list[Any]:
    """The images of a V2 request, in order: one input ``image``, datatype ``BYTES``, shape ``[N]``; its elements are
    base64 strings (JSON ``data``) or raw JPEG/PNG ``bytes`` (binary data extension, gRPC), as :func:`decode_image`
    reads them.

    Args:
        request: kserve's ``InferRequest`` (read through ``inputs``, ``request_outputs`` and each input's ``name``,
            ``datatype``, ``shape``, ``data`` and ``as_numpy()``).
        max_instances: most instances accepted.

    Raises:
        RequestError: no input, an input other than ``image``, datatype not BYTES, shape not ``[N]`` with N data
            items, N = 0 or over ``max_instances``, or a requested output other than ``plates``.
    """
    names = [inp.name for inp in request.inputs]
    if not names:
        raise RequestError("empty request: no inputs")
    if names != [INPUT_NAME]:
        raise RequestError(f'expected exactly one input named "{INPUT_NAME}", got {names}')
    inp = request.inputs[0]
    if inp.datatype != "BYTES":
        raise RequestError(f'input "{INPUT_NAME}": datatype must be BYTES (images), got {inp.datatype}')
    data = _v2_data(inp)
    shape = list(inp.shape or [])
    if len(shape) != 1 or shape[0] != len(data):
        raise RequestError(
            f'input "{INPUT_NAME}": shape must be [N] with N = the number of data items ({len(data)}), got {shape}'
        )
    _check_count(len(data), max_instances)
    for out in request.request_outputs or []:
        if out.name != OUTPUT_NAME:
            raise RequestError(f'unknown requested output "{out.name}": this model has one output "{OUTPUT_NAME}"')
    return data
