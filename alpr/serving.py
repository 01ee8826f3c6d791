"""The KServe model server: ``python -m alpr.serving --model URI [--http-port 8080] [--workers 1] [--max-instances 32]``

:class:`ALPRModel` (model name ``alpr``) is a ``kserve.Model`` reading plates with :class:`alpr.inference.PlateReader`.
The API is PLATE_SPEC.md, "Serving (KServe)" (image indexes in error messages count from 0):

- V1: ``POST /v1/models/alpr:predict`` with ``{"instances": [{"image_bytes": {"b64": "<base64 JPEG or PNG>"}}, ...]}``
  -> ``{"predictions": [<reading>, ...]}``, one reading per instance, in order.
- V2 (Open Inference Protocol): ``POST /v2/models/alpr/infer`` with one input ``image``, datatype ``BYTES``, shape
  ``[N]``, data = N base64 strings -> one output ``plates``, datatype ``BYTES``, shape ``[N]``, data = N readings as
  JSON strings. Requests must carry ``Content-Type: application/json``.

All the instances of one request are decoded (OpenCV, to BGR) and read in one batch. A bad request gets HTTP 400
(``kserve.errors.InvalidInput``) with ``{"error": "instance 1: ..."}`` naming the instance and the problem; a model
failure gets HTTP 500 (``kserve.errors.InferenceError``); the server keeps answering either way. V2 bodies that do
not match the Open Inference Protocol schema (no ``inputs`` list, an input without ``name``/``shape``/``datatype``/
``data``) are refused by kserve's own request validation with HTTP 422 before they reach the model.

Endpoints kserve 0.21 serves (``ModelServer(enable_grpc=False)``; it listens on 0.0.0.0, all interfaces):

=================================  ===========================================================================
``GET /``                          liveness: ``{"status": "alive"}``
``GET /v2/health/live``            liveness: ``{"live": true}``
``GET /v2/health/ready``           server readiness: ``{"ready": true}``
``GET /v1/models/alpr``            model readiness: ``{"name": "alpr", "ready": true}`` (503 while not loaded)
``GET /v2/models/alpr/ready``      model readiness: ``{"name": "alpr", "ready": true}`` (503 while not loaded)
``GET /v2/models/alpr``            V2 model metadata: inputs ``image`` / outputs ``plates`` (BYTES, shape [-1])
``GET /v1/models``, ``/v2/models`` the model names
``GET /metrics``                   Prometheus: kserve's histograms ``request_preprocess_seconds``,
                                   ``request_predict_seconds``, ``request_postprocess_seconds`` (label
                                   ``model_name="alpr"``; seconds) and the process/python collectors
``POST /v1/models/alpr:predict``   V1 inference
``POST /v2/models/alpr/infer``     V2 inference
=================================  ===========================================================================

The model is loaded once (:meth:`ALPRModel.load`). Inference runs in kserve's thread pool, one batch at a time
(the model is guarded by a lock), so liveness, readiness and metrics stay answered while a batch is being read.
With ``--workers N`` (N > 1) kserve spawns N processes that each load their own copy of the model in the
background (each answers 503 on readiness and inference until its copy is loaded; the parent keeps one copy too).

Note: ``import kserve`` parses ``sys.argv`` with kserve's own (lenient) argument parser; the options of this CLI
do not collide with it except ``--model``, which kserve reads as ``--model_name`` and then ignores here.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import logging
import struct
import sys
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kserve
import numpy as np
from kserve.errors import InferenceError, InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

__all__ = [
    "ALPRModel",
    "DecodedBatch",
    "MODEL_NAME",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "DEFAULT_MAX_INSTANCES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_IMAGE_BYTES",
    "build_model",
    "decode_image",
    "image_size_from_header",
    "main",
    "v1_encoded_images",
    "v2_encoded_images",
]

log = logging.getLogger(__name__)

#: The served model's name (PLATE_SPEC.md): it appears in every endpoint path.
MODEL_NAME = "alpr"
#: V2 input and output tensor names (PLATE_SPEC.md).
INPUT_NAME = "image"
OUTPUT_NAME = "plates"
#: Most images accepted in one request.
DEFAULT_MAX_INSTANCES = 32
#: Most pixels (width x height) accepted in one image: 40 MP, checked from the JPEG/PNG header before decoding.
DEFAULT_MAX_PIXELS = 40_000_000
#: Most bytes accepted for one encoded image (after base64 decoding): 20 MiB.
DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024
#: Default HTTP port (KServe's).
DEFAULT_HTTP_PORT = 8080

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
#: JPEG start-of-frame markers (they carry the image size): C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: JPEG markers without a length field: TEM, RST0-7, SOI.
_JPEG_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})
_B64_WHITESPACE = {ord(c): None for c in " \t\r\n"}


@dataclass
class DecodedBatch:
    """What :meth:`ALPRModel.preprocess` hands to :meth:`ALPRModel.predict`: the request's images, decoded.

    Attributes:
        images: HxWx3 uint8 BGR arrays, one per instance, in request order.
        protocol: ``"v1"`` or ``"v2"`` (the response is built in the same protocol).
        request: the V2 ``InferRequest`` (for its id and requested outputs); None for V1.
    """

    images: list[np.ndarray]
    protocol: str
    request: InferRequest | None = field(default=None, repr=False)


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
        length = int.from_bytes(data[i:i + 2], "big")
        if length < 2:
            break
        if marker in _JPEG_SOF:
            if i + 7 > n:
                break
            return int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 3:i + 5], "big")
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


def decode_image(encoded: str | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> np.ndarray:
    """Decode one base64 JPEG or PNG into an HxWx3 uint8 BGR array.

    Size limits are checked before the work they guard: the encoded length before base64 decoding, the pixel
    count from the image header before the pixels are decoded.

    Args:
        encoded: base64 text (``str``, or ASCII ``bytes``) of a JPEG or PNG file.
        max_pixels: most pixels (width x height) accepted.
        max_bytes: most bytes accepted for the encoded image (after base64 decoding).

    Raises:
        ValueError: not base64, too many bytes, not a JPEG/PNG, too many pixels, or undecodable pixel data; the
            message says which (without naming the instance: the caller adds that).
    """
    import cv2

    if not isinstance(encoded, (str, bytes)):
        raise ValueError(f"expected a base64 string, got {type(encoded).__name__}")
    if len(encoded) * 3 // 4 > max_bytes:
        raise ValueError(f"encoded image is about {len(encoded) * 3 / 4 / 1e6:.1f} MB, over the limit of "
                         f"{max_bytes / 1e6:.1f} MB")
    raw = _b64decode(encoded)
    if not raw:
        raise ValueError("empty image data")
    fmt, width, height = image_size_from_header(raw)
    if width <= 0 or height <= 0:
        raise ValueError(f"{fmt.upper()} header gives an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ValueError(f"image is {width}x{height} = {width * height / 1e6:.1f} MP, over the limit of "
                         f"{max_pixels / 1e6:.1f} MP")
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ValueError(f"not a decodable {fmt.upper()} image (corrupt or truncated data)")
    return image


# --- request parsing: V1 and V2 -> the base64 strings ------------------------------------------------------------

def _check_count(count: int, max_instances: int) -> None:
    if count == 0:
        raise InvalidInput("empty request: no instances to read")
    if count > max_instances:
        raise InvalidInput(f"too many instances: {count} in one request, the limit is {max_instances}")


def v1_encoded_images(payload: Any, max_instances: int) -> list[Any]:
    """The base64 strings of a V1 request ``{"instances": [{"image_bytes": {"b64": ...}}, ...]}``.

    Raises:
        InvalidInput: not a JSON object, ``instances`` missing or not a list, empty or over ``max_instances``, an
            instance without ``image_bytes`` / ``b64`` (the message names the instance).
    """
    if isinstance(payload, (bytes, str)):
        raise InvalidInput("request body was not read as JSON: send it with Content-Type: application/json")
    if not isinstance(payload, dict):
        raise InvalidInput('request body must be a JSON object {"instances": [...]}')
    if "instances" not in payload:
        raise InvalidInput('missing "instances": expected {"instances": [{"image_bytes": {"b64": "..."}}, ...]}')
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise InvalidInput(f'"instances" must be a list, got {type(instances).__name__}')
    _check_count(len(instances), max_instances)
    encoded = []
    for i, instance in enumerate(instances):
        image_bytes = instance.get("image_bytes") if isinstance(instance, dict) else None
        if not isinstance(image_bytes, dict):
            raise InvalidInput(f'instance {i}: missing "image_bytes" (expected {{"image_bytes": {{"b64": "..."}}}})')
        if "b64" not in image_bytes:
            raise InvalidInput(f'instance {i}: "image_bytes" has no "b64" field')
        encoded.append(image_bytes["b64"])
    return encoded


def _v2_data(inp: Any) -> list[Any]:
    """The data items of a V2 input: JSON ``data`` (REST), else the raw binary contents (binary extension, gRPC)."""
    if inp.data is not None:
        return list(inp.data)
    try:
        return inp.as_numpy().reshape(-1).tolist()
    except (TypeError, ValueError, struct.error) as exc:  # raw contents that do not parse
        raise InvalidInput(f'input "{INPUT_NAME}": no readable data ({exc})') from None


def v2_encoded_images(request: InferRequest, max_instances: int) -> list[Any]:
    """The base64 strings of a V2 request: one input ``image``, datatype ``BYTES``, shape ``[N]``.

    Raises:
        InvalidInput: no input, an input other than ``image``, datatype not BYTES, shape not ``[N]`` with N data
            items, N = 0 or over ``max_instances``, or a requested output other than ``plates``.
    """
    names = [inp.name for inp in request.inputs]
    if not names:
        raise InvalidInput("empty request: no inputs")
    if names != [INPUT_NAME]:
        raise InvalidInput(f'expected exactly one input named "{INPUT_NAME}", got {names}')
    inp = request.inputs[0]
    if inp.datatype != "BYTES":
        raise InvalidInput(f'input "{INPUT_NAME}": datatype must be BYTES (base64 strings), got {inp.datatype}')
    data = _v2_data(inp)
    shape = list(inp.shape or [])
    if len(shape) != 1 or shape[0] != len(data):
        raise InvalidInput(f'input "{INPUT_NAME}": shape must be [N] with N = the number of data items '
                           f'({len(data)}), got {shape}')
    _check_count(len(data), max_instances)
    for out in request.request_outputs or []:
        if out.name != OUTPUT_NAME:
            raise InvalidInput(f'unknown requested output "{out.name}": this model has one output "{OUTPUT_NAME}"')
    return data


# --- the model ---------------------------------------------------------------------------------------------------

class ALPRModel(kserve.Model):
    """The plate reader as a KServe model (name ``alpr``), V1 and V2 (see the module docstring).

    Args:
        name: the model name in the endpoint paths (PLATE_SPEC.md: ``alpr``).
        model_uri: a model directory, ``file://`` or ``gs://`` URI (see :func:`alpr.inference.fetch_model`).
        cache_dir: where ``gs://`` models are downloaded.
        device: torch device string (``cpu``, ``cuda:0``).
        max_instances: most images in one request.
        max_pixels: most pixels (width x height) in one image.
        max_image_bytes: most bytes in one encoded image.
    """

    def __init__(self, name: str = MODEL_NAME, model_uri: str = "", cache_dir: str | Path = ".alpr/cache/models", *,
                 device: str = "cpu", max_instances: int = DEFAULT_MAX_INSTANCES,
                 max_pixels: int = DEFAULT_MAX_PIXELS, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> None:
        super().__init__(name)
        if max_instances < 1 or max_pixels < 1 or max_image_bytes < 1:
            raise ValueError("max_instances, max_pixels and max_image_bytes must be positive")
        self.model_uri = str(model_uri)
        self.cache_dir = Path(cache_dir)
        self.device = device
        self.max_instances = max_instances
        self.max_pixels = max_pixels
        self.max_image_bytes = max_image_bytes
        self._reader = None
        self._lock = threading.Lock()  # one batch at a time through the model
        self._load_lock = threading.Lock()

    # kserve spawns worker processes (--workers > 1) by pickling the model: send the settings, load again there.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_reader=None, _lock=None, _load_lock=None)
        return state

    def __setstate__(self, state: dict) -> None:
        """Restore the settings; a model that was loaded loads again in a background thread.

        In the background because kserve's parent process pings each worker and kills one that has not answered
        within 5 s: the worker reports not ready (503) until its model is loaded.
        """
        was_ready = state.get("ready", False)
        self.__dict__.update(state, _lock=threading.Lock(), _load_lock=threading.Lock(), ready=False)
        if was_ready:
            threading.Thread(target=self._load_in_background, name=f"load-{self.name}", daemon=True).start()

    def _load_in_background(self) -> None:
        try:
            self.load()
        except Exception:  # noqa: BLE001 - logged; the worker stays not ready, which its readiness probe reports
            log.exception("model %s failed to load from %s", self.name, self.model_uri)

    @property
    def reader(self):
        """The loaded :class:`alpr.inference.PlateReader` (None before :meth:`load`)."""
        return self._reader

    def load(self) -> bool:
        """Fetch the model directory and build the PlateReader, once; later calls do nothing.

        Returns:
            True (``self.ready``).

        Raises:
            alpr.inference.ModelError: the model directory lacks a file or does not load.
            FileNotFoundError: nothing at ``model_uri``.
        """
        with self._load_lock:
            if self._reader is None:
                from alpr.inference import PlateReader, fetch_model

                local = fetch_model(self.model_uri, self.cache_dir)
                self._reader = PlateReader(local, device=self.device)
                log.info("model %s loaded from %s (%s)", self.name, self.model_uri, local)
            self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict]:
        """V2 metadata of the input: ``image``, BYTES, shape ``[-1]`` (N base64 strings)."""
        return [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        """V2 metadata of the output: ``plates``, BYTES, shape ``[-1]`` (N readings as JSON strings)."""
        return [{"name": OUTPUT_NAME, "datatype": "BYTES", "shape": [-1]}]

    def validate(self, payload: Any) -> Any:
        """Pass a :class:`DecodedBatch` through (already validated); anything else to kserve's check."""
        return payload if isinstance(payload, DecodedBatch) else super().validate(payload)

    async def preprocess(self, payload: dict | InferRequest, headers: dict[str, str] | None = None) -> DecodedBatch:
        """Validate a V1 body (dict) or V2 ``InferRequest`` and decode its images (in kserve's thread pool).

        Raises:
            InvalidInput: any problem with the request or an image; the message names the instance index.
        """
        if isinstance(payload, InferRequest):
            encoded, protocol, request = v2_encoded_images(payload, self.max_instances), "v2", payload
        else:
            encoded, protocol, request = v1_encoded_images(payload, self.max_instances), "v1", None
        images = await asyncio.get_running_loop().run_in_executor(None, self._decode_all, encoded)
        return DecodedBatch(images=images, protocol=protocol, request=request)

    def _decode_all(self, encoded: Sequence[Any]) -> list[np.ndarray]:
        images = []
        for i, item in enumerate(encoded):
            try:
                images.append(decode_image(item, max_pixels=self.max_pixels, max_bytes=self.max_image_bytes))
            except ValueError as exc:
                raise InvalidInput(f"instance {i}: {exc}") from None
        return images

    async def predict(self, payload: DecodedBatch | dict | InferRequest, headers: dict[str, str] | None = None
                      ) -> dict | InferResponse:
        """Read the plates of every image of the request in one batch.

        Args:
            payload: what :meth:`preprocess` returned, or a raw V1 dict / V2 ``InferRequest`` (then preprocessed here).
            headers: the HTTP request headers (unused).

        Returns:
            V1: ``{"predictions": [<reading>, ...]}``; V2: an ``InferResponse`` with the output ``plates``.

        Raises:
            InvalidInput: a raw payload is invalid (see :meth:`preprocess`).
            InferenceError: the model is not loaded, or failed on the batch.
        """
        batch = payload if isinstance(payload, DecodedBatch) else await self.preprocess(payload, headers)
        readings = await asyncio.get_running_loop().run_in_executor(None, self._read, batch.images)
        if batch.protocol == "v2":
            return self._v2_response(batch.request, readings)
        return {"predictions": readings}

    def _read(self, images: list[np.ndarray]) -> list[dict]:
        """Run the reader on one batch, one batch at a time; model errors become InferenceError."""
        if self._reader is None:
            raise InferenceError(f"model {self.name} is not loaded: call load() first")
        with self._lock:
            try:
                readings = self._reader.read(images)
            except Exception as exc:  # noqa: BLE001 - any model failure is reported as an inference error
                log.exception("model %s failed on a batch of %d images", self.name, len(images))
                raise InferenceError(f"model {self.name} failed on a batch of {len(images)} images: "
                                     f"{type(exc).__name__}: {exc}") from exc
        if len(readings) != len(images):
            raise InferenceError(f"model {self.name} returned {len(readings)} readings for {len(images)} images")
        return readings

    def _v2_response(self, request: InferRequest, readings: list[dict]) -> InferResponse:
        texts = [json.dumps(r, ensure_ascii=False) for r in readings]
        output = InferOutput(name=OUTPUT_NAME, shape=[len(texts)], datatype="BYTES", data=texts)
        return InferResponse(response_id=request.id or str(uuid.uuid4()), model_name=self.name,
                             infer_outputs=[output], use_binary_outputs=request.use_binary_outputs,
                             requested_outputs=request.request_outputs)


# --- CLI ---------------------------------------------------------------------------------------------------------

def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m alpr.serving", allow_abbrev=False,
                                description="Serve the plate reader with KServe (V1 + V2 REST) as model 'alpr'.")
    p.add_argument("--model", required=True, help="model directory, storage URI (gs://…) or 'latest'")
    p.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT, help="HTTP port (default: %(default)s)")
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="server processes, each with its own copy of the model (default: %(default)s)")
    p.add_argument("--max-instances", type=_positive_int, default=DEFAULT_MAX_INSTANCES,
                   help="most images per request (default: %(default)s)")
    p.add_argument("--max-megapixels", type=float, default=DEFAULT_MAX_PIXELS / 1e6,
                   help="most megapixels per image (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    return p.parse_args(argv)


def build_model(model: str, *, device: str = "cpu", max_instances: int = DEFAULT_MAX_INSTANCES,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> ALPRModel:
    """Resolve ``model`` (``latest`` through the metadata store) and return the loaded :class:`ALPRModel`.

    Raises:
        alpr.inference.ModelError: no selected model, or the model does not load.
        FileNotFoundError: nothing at the model URI.
    """
    from alpr.inference import resolve_model_uri
    from alpr.settings import load_settings

    settings = load_settings()
    uri = resolve_model_uri(model, db_url=settings.db_url)
    served = ALPRModel(MODEL_NAME, model_uri=uri, cache_dir=settings.cache_dir / "models", device=device,
                       max_instances=max_instances, max_pixels=max_pixels)
    served.load()
    return served


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: load the model, then serve until interrupted; returns the exit code (1: model error)."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    from alpr.inference import ModelError

    try:
        model = build_model(args.model, device=args.device, max_instances=args.max_instances,
                            max_pixels=int(args.max_megapixels * 1e6))
    except (ModelError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    kserve.ModelServer(http_port=args.http_port, workers=args.workers, enable_grpc=False).start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
