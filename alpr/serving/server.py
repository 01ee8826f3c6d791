"""The KServe model server: ``python -m alpr.serving --model URI [--http-port 8080] [--workers 1] [--max-instances 32]``

:class:`ALPRModel` (model name ``alpr``) is a ``kserve.Model`` reading plates with
:class:`alpr.model.inference.PlateReader`. The API is ``docs/PLATE_SPEC.md`` "Serving (KServe)" (image indexes in
error messages count from 0):

- V1: ``POST /v1/models/alpr:predict`` with ``{"instances": [{"image_bytes": {"b64": "<base64 JPEG or PNG>"}}, ...]}``
  -> ``{"predictions": [<reading>, ...]}``, one reading per instance, in order.
- V2 (Open Inference Protocol): ``POST /v2/models/alpr/infer`` with one input ``image``, datatype ``BYTES``, shape
  ``[N]``, data = N base64 strings -> one output ``plates``, datatype ``BYTES``, shape ``[N]``, data = N readings as
  JSON strings. Requests must carry ``Content-Type: application/json``.

All the instances of one request are decoded (:mod:`alpr.serving.codec`: base64 JPEG/PNG to BGR arrays, with its
size limits) and read in one batch. A bad request gets HTTP 400 (``kserve.errors.InvalidInput``, from the codec's
:class:`~alpr.serving.codec.RequestError`) with ``{"error": "instance 1: ..."}`` naming the instance and the
problem; a model failure gets HTTP 500 (``kserve.errors.InferenceError``); the server keeps answering either way.
V2 bodies that do not match the Open Inference Protocol schema (no ``inputs`` list, an input without ``name``/
``shape``/``datatype``/``data``) are refused by kserve's own request validation with HTTP 422 before they reach the
model.

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
import json
import logging
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kserve
import numpy as np
from kserve.errors import InferenceError, InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from alpr import logs
from alpr.model.inference import ModelError, PlateReader, fetch_model, resolve_model_uri
from alpr.serving.codec import (
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_INSTANCES,
    DEFAULT_MAX_PIXELS,
    INPUT_NAME,
    OUTPUT_NAME,
    RequestError,
    decode_images,
    v1_encoded_images,
    v2_encoded_images,
)
from alpr.settings import load_settings

__all__ = [
    "ALPRModel",
    "DecodedBatch",
    "MODEL_NAME",
    "DEFAULT_HTTP_PORT",
    "build_model",
    "main",
]

log = logging.getLogger(__name__)

#: The served model's name (PLATE_SPEC.md): it appears in every endpoint path.
MODEL_NAME = "alpr"
#: Default HTTP port (KServe's).
DEFAULT_HTTP_PORT = 8080


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


# --- the model ---------------------------------------------------------------------------------------------------


class ALPRModel(kserve.Model):
    """The plate reader as a KServe model (name ``alpr``), V1 and V2 (see the module docstring).

    Args:
        name: the model name in the endpoint paths (PLATE_SPEC.md: ``alpr``).
        model_uri: a model directory, ``file://`` or ``gs://`` URI (see :func:`alpr.model.inference.fetch_model`).
        cache_dir: where ``gs://`` models are downloaded.
        device: torch device string (``cpu``, ``cuda:0``).
        max_instances: most images in one request.
        max_pixels: most pixels (width x height) in one image.
        max_image_bytes: most bytes in one encoded image.
    """

    def __init__(
        self,
        name: str = MODEL_NAME,
        model_uri: str = "",
        cache_dir: str | Path = ".alpr/cache/models",
        *,
        device: str = "cpu",
        max_instances: int = DEFAULT_MAX_INSTANCES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    ) -> None:
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
        except Exception:  # logged; the worker stays not ready, which its readiness probe reports
            log.exception("model %s failed to load from %s", self.name, self.model_uri)

    @property
    def reader(self):
        """The loaded :class:`alpr.model.inference.PlateReader` (None before :meth:`load`)."""
        return self._reader

    def load(self) -> bool:
        """Fetch the model directory and build the PlateReader, once; later calls do nothing.

        Returns:
            True (``self.ready``).

        Raises:
            alpr.model.inference.ModelError: the model directory lacks a file or does not load.
            FileNotFoundError: nothing at ``model_uri``.
        """
        with self._load_lock:
            if self._reader is None:
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
        """Validate a V1 body (dict) or V2 ``InferRequest`` and decode its images (in kserve's thread pool) with
        :mod:`alpr.serving.codec`.

        Raises:
            InvalidInput: any problem with the request or an image (a :class:`alpr.serving.codec.RequestError`);
                the message names the instance index.
        """
        try:
            if isinstance(payload, InferRequest):
                encoded, protocol, request = v2_encoded_images(payload, self.max_instances), "v2", payload
            else:
                encoded, protocol, request = v1_encoded_images(payload, self.max_instances), "v1", None
            images = await asyncio.get_running_loop().run_in_executor(None, self._decode_all, encoded)
        except RequestError as exc:
            raise InvalidInput(str(exc)) from None
        return DecodedBatch(images=images, protocol=protocol, request=request)

    def _decode_all(self, encoded: list[Any]) -> list[np.ndarray]:
        return decode_images(encoded, max_pixels=self.max_pixels, max_bytes=self.max_image_bytes)

    async def predict(
        self, payload: DecodedBatch | dict | InferRequest, headers: dict[str, str] | None = None
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
            except Exception as exc:  # any model failure is reported as an inference error
                log.exception("model %s failed on a batch of %d images", self.name, len(images))
                raise InferenceError(
                    f"model {self.name} failed on a batch of {len(images)} images: {type(exc).__name__}: {exc}"
                ) from exc
        if len(readings) != len(images):
            raise InferenceError(f"model {self.name} returned {len(readings)} readings for {len(images)} images")
        return readings

    def _v2_response(self, request: InferRequest, readings: list[dict]) -> InferResponse:
        texts = [json.dumps(r, ensure_ascii=False) for r in readings]
        output = InferOutput(name=OUTPUT_NAME, shape=[len(texts)], datatype="BYTES", data=texts)
        return InferResponse(
            response_id=request.id or str(uuid.uuid4()),
            model_name=self.name,
            infer_outputs=[output],
            use_binary_outputs=request.use_binary_outputs,
            requested_outputs=request.request_outputs,
        )


# --- CLI ---------------------------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m alpr.serving",
        allow_abbrev=False,
        description="Serve the plate reader with KServe (V1 + V2 REST) as model 'alpr'.",
    )
    p.add_argument("--model", required=True, help="model directory, storage URI (gs://…) or 'latest'")
    p.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT, help="HTTP port (default: %(default)s)")
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="server processes, each with its own copy of the model (default: %(default)s)",
    )
    p.add_argument(
        "--max-instances",
        type=_positive_int,
        default=DEFAULT_MAX_INSTANCES,
        help="most images per request (default: %(default)s)",
    )
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=DEFAULT_MAX_PIXELS / 1e6,
        help="most megapixels per image (default: %(default)s)",
    )
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    return p.parse_args(argv)


def build_model(
    model: str, *, device: str = "cpu", max_instances: int = DEFAULT_MAX_INSTANCES, max_pixels: int = DEFAULT_MAX_PIXELS
) -> ALPRModel:
    """Resolve ``model`` (``latest`` through the metadata store) and return the loaded :class:`ALPRModel`.

    Raises:
        alpr.model.inference.ModelError: no selected model, or the model does not load.
        FileNotFoundError: nothing at the model URI.
    """
    settings = load_settings()
    uri = resolve_model_uri(model, db_url=settings.db_url)
    served = ALPRModel(
        MODEL_NAME,
        model_uri=uri,
        cache_dir=settings.cache_dir / "models",
        device=device,
        max_instances=max_instances,
        max_pixels=max_pixels,
    )
    served.load()
    return served


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: load the model, then serve until interrupted; returns the exit code (1: model error)."""
    args = _parse_args(argv)
    logs.setup()
    try:
        model = build_model(
            args.model, device=args.device, max_instances=args.max_instances, max_pixels=int(args.max_megapixels * 1e6)
        )
    except (ModelError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    kserve.ModelServer(http_port=args.http_port, workers=args.workers, enable_grpc=False).start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
