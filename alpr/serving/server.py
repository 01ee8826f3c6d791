"""The KServe model server: ``python -m alpr.serving [--model URI | --model_dir DIR] [KServe's options]``

Command line (:func:`build_parser`): KServe's own options, through ``kserve.model_server.parser`` as the parent
parser (``--model_name`` (default ``alpr``), ``--http_port`` (default 8080), ``--grpc_port``, ``--workers``,
``--enable_grpc`` (default false here), ``--max_asyncio_workers``, ...), and the project's: ``--model`` (a model
directory, ``gs://`` URI or ``latest``), ``--model_dir`` (KServe's convention: a ServingRuntime passes
``--model_name={{.Name}} --model_dir=/mnt/models --http_port=8080``), ``--http-port`` (alias of ``--http_port``),
``--max-instances``, ``--max-megapixels``, ``--device``, ``--backend``, ``--onnx-threads``, ``--concurrency``, and
the prediction log's (KServe's payload logger, :mod:`alpr.serving.eventlog`): ``--log-url`` (none: no log),
``--log-mode`` (``all``, ``request``, ``response``), ``--log-queue-size``, ``--log-timeout``. The model comes from
``--model``, else ``--model_dir``, else ``$STORAGE_URI``; with none of them the command exits with status 2 naming
the three.

:class:`ALPRModel` (model name ``alpr`` by default, ``--model_name`` otherwise: ``<name>`` below) is a
``kserve.Model`` reading plates with :class:`alpr.model.inference.PlateReader`. The API is ``docs/PLATE_SPEC.md``
"Serving (KServe)" (image indexes in error messages count from 0):

- V1: ``POST /v1/models/<name>:predict`` with ``{"instances": [{"image_bytes": {"b64": "<base64 JPEG or PNG>"}},
  ...]}`` -> ``{"predictions": [<reading>, ...]}``, one reading per instance, in order.
- V2 (Open Inference Protocol): ``POST /v2/models/<name>/infer`` with one input ``image``, datatype ``BYTES``,
  shape ``[N]`` -> one output ``plates``, datatype ``BYTES``, shape ``[N]``, data = N readings as JSON strings.
  In JSON the input's data are N base64 strings; with the binary data extension (header
  ``Inference-Header-Content-Length``, as tritonclient sends it) each element is the raw JPEG/PNG file. A body
  sent without ``Content-Type: application/json`` is read by :class:`ALPRDataPlane` (the whole body is JSON when
  the header is absent); ``binary_data_output`` / an output's ``binary_data`` ask for the output in binary.

All the instances of one request are decoded (:mod:`alpr.serving.codec`: JPEG/PNG to BGR arrays, with its size
limits) and read in one batch. A bad request gets HTTP 400 (``kserve.errors.InvalidInput``, from the codec's
:class:`~alpr.serving.codec.RequestError`) with ``{"error": "instance 1: ..."}`` naming the instance and the
problem; a model failure gets HTTP 500 (``kserve.errors.InferenceError``); the server keeps answering either way.
JSON V2 bodies that do not match the Open Inference Protocol schema are refused by kserve's own request validation
with HTTP 422 before they reach the model.

Endpoints (:class:`ALPRModelServer`, kserve 0.21; it listens on 0.0.0.0, all interfaces):

====================================  ========================================================================
``GET /``, ``GET /v2/health/live``    liveness: ``{"status": "alive"}`` / ``{"live": true}``; 503 once the model
                                      is gone (it had loaded and is not ready any more, or a worker's background
                                      load failed): :class:`ALPRDataPlane`
``GET /v2/health/ready``              server readiness: ``{"ready": true}``
``GET /v1/models/<name>``             model readiness: ``{"name": "<name>", "ready": true}`` (503 while not loaded)
``GET /v2/models/<name>/ready``       the same, V2
``GET /v2/models/<name>``             V2 model metadata: inputs ``image`` / outputs ``plates`` (BYTES, shape [-1])
``GET /v1/models``, ``/v2/models``    the model names; ``GET /v2``: server metadata
``GET /metrics``                      Prometheus: kserve's histograms ``request_preprocess_seconds``,
                                      ``request_predict_seconds``, ``request_postprocess_seconds`` (label
                                      ``model_name="<name>"``; seconds), the prediction log's counters
                                      ``alpr_payload_log_sent_total``, ``..._dropped_total``, ``..._failed_total``
                                      (:mod:`alpr.serving.eventlog`), ``alpr_stage_seconds`` (label ``stage``:
                                      where each request's time went, :mod:`alpr.model.stages`) and the
                                      process/python collectors
``GET /openapi.json``                 FastAPI's OpenAPI document of these routes
``POST /v1/models/<name>:predict``    V1 inference
``POST /v2/models/<name>/infer``      V2 inference
``POST /v2/repository/models/<name>/load``, ``.../unload``: refused, 403 (:class:`RefusingRepositoryExtension`)
====================================  ========================================================================

With ``--log-url URL`` every V1 predict and V2 infer request and its 200 response are also sent to URL as
CloudEvents, as KServe's payload logger sends them (:class:`alpr.serving.eventlog.PayloadLogMiddleware`, installed
in each process that serves): from a bounded queue by a background thread, so a slow or absent receiver never holds
up or fails a reading; the drops and failures are counted on ``/metrics``.

The model is loaded once (:meth:`ALPRModel.load`). Inference runs in kserve's thread pool, at most
``--concurrency`` batches at a time in one process (:data:`DEFAULT_CONCURRENCY`; a semaphore guards the model), so
liveness, readiness and metrics stay answered while batches are being read. ONNX Runtime, OpenCV and NumPy release
the GIL, so two reads at once keep both cores of a 2-core machine busy while one request's serial steps (JPEG
decoding, NMS, the reading rules) run beside another's network (docs/serving.md, "Throughput").
With ``--workers N`` (N > 1) kserve spawns N processes that each load their own copy of the model in the
background (each answers 503 on readiness and inference until its copy is loaded, and stays live meanwhile; the
parent keeps one copy too).

Note: ``import kserve`` parses ``sys.argv`` with kserve's own lenient parser (``parse_known_args``, abbreviations
allowed) and reads ``--configure_logging`` / ``--log_config_file`` / the predictor options from there. The
project's options do not collide with it: ``--model`` is read there as an abbreviation of ``--model_name`` and
then ignored (this CLI parses the command line again, without abbreviations); ``--model_dir``, ``--http-port``,
``--max-instances``, ``--max-megapixels``, ``--device``, ``--backend``, ``--onnx-threads`` and ``--concurrency``
are unknown to it and skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kserve
import numpy as np
import pydantic
from fastapi import HTTPException
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InferenceError, InvalidInput, ServerNotLive
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from prometheus_client import Histogram

from alpr import logs
from alpr.model import stages
from alpr.model.inference import DEFAULT_BACKEND, ModelError, PlateReader, fetch_model, resolve_model_uri
from alpr.model.stages import StageClock
from alpr.serving import eventlog
from alpr.serving.codec import (
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_INSTANCES,
    DEFAULT_MAX_PIXELS,
    INPUT_NAME,
    OUTPUT_NAME,
    RequestError,
    decode_images,
    split_v2_body,
    v1_encoded_images,
    v2_encoded_images,
)
from alpr.serving.predict import add_backend_argument
from alpr.settings import load_settings

__all__ = [
    "ALPRDataPlane",
    "ALPRModel",
    "ALPRModelServer",
    "DecodedBatch",
    "RefusingRepositoryExtension",
    "STORAGE_URI_ENV",
    "build_parser",
    "MODEL_NAME",
    "DEFAULT_HTTP_PORT",
    "DEFAULT_CONCURRENCY",
    "build_model",
    "main",
    "payload_log_config",
]

log = logging.getLogger(__name__)

#: The served model's name (PLATE_SPEC.md): it appears in every endpoint path.
MODEL_NAME = "alpr"
#: Default HTTP port (KServe's).
DEFAULT_HTTP_PORT = 8080
#: Batches one model copy reads at the same time (``--concurrency``). Two: while one request's serial steps run
#: (JPEG decoding, NMS, the reading rules, Python), the other's network keeps the second core busy; measured against
#: one, and against two worker processes, in docs/serving.md ("Throughput").
DEFAULT_CONCURRENCY = 2
#: Prometheus histogram :data:`alpr.model.stages.STAGE_METRIC` of the seconds one request spends in each stage of a
#: reading (label ``stage``, one of :data:`alpr.model.stages.STAGES`; ``model_name``): ``make bench-serve`` prints
#: each stage's share from it (:func:`alpr.model.stages.stage_totals`).
_STAGE_SECONDS = Histogram(
    stages.STAGE_METRIC,
    "Seconds a request spent in each stage of reading its plates (alpr.model.stages).",
    ["model_name", "stage"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)


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
    #: Seconds spent decoding the images (:data:`alpr.model.stages.DECODE`).
    decode_s: float = 0.0


# --- the model ---------------------------------------------------------------------------------------------------


class ALPRModel(kserve.Model):
    """The plate reader as a KServe model (name ``alpr``), V1 and V2 (see the module docstring).

    Args:
        name: the model name in the endpoint paths (PLATE_SPEC.md: ``alpr``).
        model_uri: a model directory, ``file://`` or ``gs://`` URI (see :func:`alpr.model.inference.fetch_model`).
        cache_dir: where ``gs://`` models are downloaded.
        device: torch device string (``cpu``, ``cuda:0``) of the PyTorch back end.
        backend: :class:`~alpr.model.inference.PlateReader`'s back end (``auto``: ONNX Runtime when the model has
            an export, else PyTorch; ``onnx``; ``pytorch``).
        threads: ONNX Runtime intra-op threads (0: one per core).
        concurrency: most batches this copy reads at the same time (>= 1; 1: one at a time).
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
        backend: str = DEFAULT_BACKEND,
        threads: int = 0,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_instances: int = DEFAULT_MAX_INSTANCES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    ) -> None:
        super().__init__(name)
        if concurrency < 1 or max_instances < 1 or max_pixels < 1 or max_image_bytes < 1:
            raise ValueError("concurrency, max_instances, max_pixels and max_image_bytes must be positive")
        self.model_uri = str(model_uri)
        self.cache_dir = Path(cache_dir)
        self.device = device
        self.backend = backend
        self.threads = int(threads)
        self.concurrency = int(concurrency)
        self.max_instances = max_instances
        self.max_pixels = max_pixels
        self.max_image_bytes = max_image_bytes
        self._reader = None
        self._slots = threading.BoundedSemaphore(self.concurrency)  # at most `concurrency` batches in the model
        self._load_lock = threading.Lock()
        self._loaded_once = False  # this copy's reader was built (liveness: see lost)
        self._load_error: str | None = None  # why this copy's background load failed

    # kserve spawns worker processes (--workers > 1) by pickling the model: send the settings, load again there.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_reader=None, _slots=None, _load_lock=None)
        return state

    def __setstate__(self, state: dict) -> None:
        """Restore the settings; a model that was loaded loads again in a background thread.

        In the background because kserve's parent process pings each worker and kills one that has not answered
        within 5 s: the worker reports not ready (503) until its model is loaded.
        """
        was_ready = state.get("ready", False)
        self.__dict__.update(
            state,
            _slots=threading.BoundedSemaphore(state["concurrency"]),
            _load_lock=threading.Lock(),
            ready=False,
            _loaded_once=False,
            _load_error=None,
        )
        if was_ready:
            threading.Thread(target=self._load_in_background, name=f"load-{self.name}", daemon=True).start()

    def _load_in_background(self) -> None:
        try:
            self.load()
        except Exception as exc:  # logged; the worker is then not ready and not live (see lost)
            self._load_error = f"{type(exc).__name__}: {exc}"
            log.exception("model %s failed to load from %s", self.name, self.model_uri)

    @property
    def lost(self) -> bool:
        """True when this copy is gone for good: it had loaded and is no longer ready (unloaded or stopped), or its
        background load failed. A copy still loading is not lost. :class:`ALPRDataPlane` fails liveness on it."""
        return self._load_error is not None or (self._loaded_once and not self.ready)

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
                self._reader = PlateReader(local, device=self.device, backend=self.backend, threads=self.threads)
                log.info(
                    "model %s loaded from %s (%s), %s back end", self.name, self.model_uri, local, self._reader.backend
                )
            self.ready = self._loaded_once = True
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
            images, seconds = await asyncio.get_running_loop().run_in_executor(None, self._decode_all, encoded)
        except RequestError as exc:
            raise InvalidInput(str(exc)) from None
        return DecodedBatch(images=images, protocol=protocol, request=request, decode_s=seconds)

    def _decode_all(self, encoded: list[Any]) -> tuple[list[np.ndarray], float]:
        """The decoded images and the seconds decoding took (:data:`alpr.model.stages.DECODE`)."""
        start = time.perf_counter()
        images = decode_images(encoded, max_pixels=self.max_pixels, max_bytes=self.max_image_bytes)
        return images, time.perf_counter() - start

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
        clock = StageClock()
        readings = await asyncio.get_running_loop().run_in_executor(None, self._read, batch.images, clock)
        if batch.protocol == "v2":
            with clock.stage(stages.ENCODE):
                response = self._v2_response(batch.request, readings)
        else:
            response = {"predictions": readings}
        self._observe(batch, clock)
        return response

    def _observe(self, batch: DecodedBatch, clock: StageClock) -> None:
        """Add one request's stages to the :data:`alpr.model.stages.STAGE_METRIC` histogram: every stage of
        :data:`alpr.model.stages.STAGES` (0 for one it did not pass, such as the zoomed pass of a frame without
        plates), but the encoding on V1, which kserve does after the model."""
        for stage in stages.STAGES:
            if stage == stages.ENCODE and batch.protocol != "v2":
                continue
            seconds = batch.decode_s if stage == stages.DECODE else clock.seconds.get(stage, 0.0)
            _STAGE_SECONDS.labels(model_name=self.name, stage=stage).observe(seconds)

    def _read(self, images: list[np.ndarray], clock: StageClock | None = None) -> list[dict]:
        """Run the reader on one batch, at most :attr:`concurrency` batches at a time (``clock``: its stages,
        :mod:`alpr.model.stages`); model errors become InferenceError."""
        if self._reader is None:
            raise InferenceError(f"model {self.name} is not loaded: call load() first")
        with self._slots:
            try:
                readings = self._reader.read(images, clock=clock)
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


# --- the server: kserve's ModelServer, with the repository extension refused and liveness tied to the model --------


class ALPRDataPlane(DataPlane):
    """kserve's ``DataPlane`` with two changes (see the module docstring):

    - :meth:`live` (``GET /``, ``GET /v2/health/live``) fails with ``ServerNotLive`` (HTTP 503) once a served model
      is gone: it had loaded and is no longer ready, its background load failed, or it left the registry;
    - :meth:`decode_inference_request` reads V2 bodies that were not parsed as JSON (no ``Content-Type:
      application/json``: what tritonclient sends) with :func:`alpr.serving.codec.split_v2_body`, binary data
      extension included, and answers every malformed body with ``InvalidInput`` (HTTP 400).

    It also carries the prediction log's settings into kserve's worker processes (``--workers N``): unpickled
    there, it installs :class:`alpr.serving.eventlog.PayloadLogMiddleware` on that process's kserve app.

    Args:
        model_registry: kserve's ``ModelRepository`` of the served models.
        payload_log: where the prediction log goes (None: no log).
    """

    def __init__(self, model_registry: ModelRepository, payload_log: eventlog.EventLogConfig | None = None) -> None:
        super().__init__(model_registry)
        self.served: dict[str, Any] = {}
        self.payload_log = payload_log

    def __setstate__(self, state: dict) -> None:
        """Restore the data plane in a kserve worker process, and install the prediction log on its app there."""
        self.__dict__.update(state)
        self.install_payload_log()

    def install_payload_log(self) -> None:
        """Add the prediction log's middleware to kserve's app (``kserve.model_server.app``) of this process, when
        ``payload_log`` is set; before the app starts serving."""
        if self.payload_log is not None:
            from kserve.model_server import app

            eventlog.install(app, self.payload_log)

    def watch(self, models: list) -> None:
        """Remember ``models`` (the models the server starts with): :meth:`live` fails once one of them is gone."""
        self.served = {model.name: model for model in models}

    def gone(self) -> list[str]:
        """The names of the watched models that are gone (see the class docstring), in watch order."""
        return [
            name
            for name, model in self.served.items()
            if self.model_registry.get_model(name) is not model or getattr(model, "lost", False)
        ]

    async def live(self) -> dict[str, str]:
        """``{"status": "alive"}`` while every watched model is there (loading counts as there).

        Raises:
            ServerNotLive: a watched model is gone (HTTP 503): the kubelet restarts the container.
        """
        gone = self.gone()
        if gone:
            raise ServerNotLive(f"model {', '.join(gone)} was loaded and is gone: restart the server")
        return {"status": "alive"}

    def decode_inference_request(self, body: Any, headers: dict | None, model_name: str) -> InferRequest:
        """A V2 request from FastAPI's parsed JSON (kserve's own path) or from raw body bytes (ours).

        Raises:
            InvalidInput: the body is not an Open Inference Protocol request (JSON or binary data extension); the
                message says what is wrong.
        """
        if not isinstance(body, (bytes, bytearray)):
            return super().decode_inference_request(body, headers, model_name)
        model = self.model_registry.get_model(model_name)
        limit = getattr(model, "max_instances", None)
        length = (headers or {}).get(INFERENCE_CONTENT_LENGTH_HEADER)
        try:
            request = InferenceRequest.model_validate(split_v2_body(bytes(body), length, max_elements=limit))
        except RequestError as exc:
            raise InvalidInput(str(exc)) from None
        except pydantic.ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
            raise InvalidInput(f"not an Open Inference Protocol request: {problems}") from None
        return InferRequest.from_inference_request(request, model_name)


class RefusingRepositoryExtension(ModelRepositoryExtension):
    """KServe's model repository extension with load and unload refused (HTTP 403).

    kserve serves ``POST /v2/repository/models/{name}/load`` and ``.../unload`` to anyone who can reach the server;
    an unload would leave the pod alive but never ready again. The served model is fixed by the command line, so
    both answer ``403 {"detail": "..."}`` and change nothing.
    """

    async def load(self, model_name: str) -> None:
        """Refuse: raises ``fastapi.HTTPException`` 403."""
        raise HTTPException(status_code=403, detail=_REPOSITORY_REFUSED.format(verb="load", name=model_name))

    async def unload(self, model_name: str) -> None:
        """Refuse: raises ``fastapi.HTTPException`` 403."""
        raise HTTPException(status_code=403, detail=_REPOSITORY_REFUSED.format(verb="unload", name=model_name))


_REPOSITORY_REFUSED = (
    "model repository extension disabled: cannot {verb} model {name!r}; the served model is fixed when the server"
    " starts (--model, --model_dir or $STORAGE_URI)"
)


class ALPRModelServer(kserve.ModelServer):
    """``kserve.ModelServer`` with :class:`ALPRDataPlane` and :class:`RefusingRepositoryExtension`.

    Takes ``kserve.ModelServer``'s keyword arguments, and ``payload_log``: where the prediction log goes (None: no
    log; :mod:`alpr.serving.eventlog`). :meth:`start` also serves from a thread other than the main one (no signal
    handlers there; stop it through its uvicorn server's ``should_exit``).
    """

    def __init__(self, *, payload_log: eventlog.EventLogConfig | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataplane = ALPRDataPlane(model_registry=self.registered_models, payload_log=payload_log)
        self.model_repository_extension = RefusingRepositoryExtension(model_registry=self.registered_models)

    def start(self, models: list) -> None:
        """Watch ``models`` for liveness (:meth:`ALPRDataPlane.watch`), install the prediction log (one process;
        kserve's worker processes install theirs), then serve them until stopped."""
        self.dataplane.watch(models)
        if self.workers == 1:
            self.dataplane.install_payload_log()
        super().start(models)

    def register_signal_handler(self) -> None:
        """kserve's SIGINT/SIGTERM/SIGQUIT handlers, in the main thread only (Python allows no others)."""
        if threading.current_thread() is threading.main_thread():
            super().register_signal_handler()


# --- CLI ---------------------------------------------------------------------------------------------------------

#: KServe's options that reach :class:`ALPRModelServer` (``kserve.model_server.parser`` defines them).
_SERVER_OPTIONS = (
    "http_port",
    "grpc_port",
    "workers",
    "max_threads",
    "max_asyncio_workers",
    "enable_grpc",
    "enable_docs_url",
    "enable_latency_logging",
    "access_log_format",
    "event_loop",
    "timeout_keep_alive",
    "ssl_certfile",
    "ssl_keyfile",
)
#: The environment variable read when neither --model nor --model_dir is given (KServe's custom-container
#: convention; the serving image sets it).
STORAGE_URI_ENV = "STORAGE_URI"
_MODEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line: KServe's own options (``kserve.model_server.parser`` as the parent: ``--model_name``,
    ``--http_port``, ``--grpc_port``, ``--workers``, ``--enable_grpc``, ...) and the project's."""
    from kserve.model_server import parser as kserve_parser

    p = argparse.ArgumentParser(
        prog="python -m alpr.serving",
        parents=[kserve_parser],
        allow_abbrev=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "Serve the plate reader with KServe (V1 + V2 REST). The model comes from --model, else --model_dir, "
            f"else ${STORAGE_URI_ENV}."
        ),
    )
    own = p.add_argument_group("ALPR options")
    own.add_argument("--model", default=None, help="model directory, storage URI (gs://…) or 'latest'")
    own.add_argument(
        "--model_dir",
        default=None,
        help="model directory, KServe's convention (its storage initializer downloads storageUri to /mnt/models)",
    )
    own.add_argument("--http-port", dest="http_port", type=int, default=argparse.SUPPRESS, help="alias of --http_port")
    own.add_argument(
        "--max-instances", type=_positive_int, default=DEFAULT_MAX_INSTANCES, help="most images per request"
    )
    own.add_argument("--max-megapixels", type=float, default=DEFAULT_MAX_PIXELS / 1e6, help="most megapixels per image")
    own.add_argument("--device", default="cpu", help="torch device (the PyTorch back end)")
    add_backend_argument(own)
    own.add_argument(
        "--onnx-threads",
        dest="threads",
        type=int,
        default=0,
        help="ONNX Runtime intra-op threads per model copy (0: one per core); with --workers N, cores / N",
    )
    own.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        help="most requests one model copy reads at the same time (1: one at a time)",
    )
    plog = p.add_argument_group("prediction log (KServe's payload logger format: CloudEvents, alpr.serving.eventlog)")
    plog.add_argument(
        "--log-url", default=None, help="send each inference's request and response to this URL (default: no log)"
    )
    plog.add_argument("--log-mode", choices=eventlog.LOG_MODES, default="all", help="which events to send")
    plog.add_argument(
        "--log-queue-size",
        type=_positive_int,
        default=eventlog.DEFAULT_QUEUE_SIZE,
        help="most events waiting to be sent; more are dropped (alpr_payload_log_dropped_total)",
    )
    plog.add_argument(
        "--log-timeout",
        type=float,
        default=eventlog.DEFAULT_TIMEOUT_S,
        help="seconds one event's POST may take (then it counts in alpr_payload_log_failed_total)",
    )
    p.set_defaults(model_name=MODEL_NAME, http_port=DEFAULT_HTTP_PORT, enable_grpc=False)
    return p


def _parse_args(argv: list[str] | None, environ: dict[str, str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; ``args.model`` becomes the model source (--model > --model_dir >
    $STORAGE_URI). Exits with status 2 and a message naming the flag on a bad value or no model."""
    p = build_parser()
    args = p.parse_args(argv)
    env = os.environ if environ is None else environ
    source = args.model or args.model_dir or env.get(STORAGE_URI_ENV, "").strip()
    if not source:
        p.error(
            f"no model to serve: pass --model URI or --model_dir DIR, or set ${STORAGE_URI_ENV} "
            "(a model directory, gs:// URI or 'latest')"
        )
    args.model = source
    if not _MODEL_NAME_RE.fullmatch(args.model_name):
        p.error(
            f"--model_name must be letters, digits, '_', '.' or '-' (it is part of every path), got {args.model_name!r}"
        )
    if args.workers < 1:
        p.error(f"--workers must be >= 1, got {args.workers}")
    if args.threads < 0:
        p.error(f"--onnx-threads must be >= 0 (0: one per core), got {args.threads}")
    if not args.max_megapixels > 0:
        p.error(f"--max-megapixels must be > 0, got {args.max_megapixels}")
    if not args.log_timeout > 0:
        p.error(f"--log-timeout must be > 0 s, got {args.log_timeout}")
    args.payload_log = None
    if args.log_url is not None:
        try:
            args.payload_log = payload_log_config(args)
        except ValueError as exc:  # the URL: mode, queue size and timeout were checked above
            p.error(f"--log-url: {exc}")
    return args


def payload_log_config(args: argparse.Namespace) -> eventlog.EventLogConfig:
    """The prediction log's settings from the parsed command line: ``--log-*``, ``ce-source``
    ``http://localhost:<http_port>/`` (KServe's agent's default), ``ce-inferenceservicename`` the model's name.

    Raises:
        ValueError: a bad ``--log-url`` or ``--log-timeout`` (the message says which).
    """
    return eventlog.EventLogConfig(
        url=args.log_url,
        mode=args.log_mode,
        queue_size=args.log_queue_size,
        timeout_s=args.log_timeout,
        source=f"http://localhost:{args.http_port}/",
        inference_service=args.model_name,
    )


def build_model(
    model: str,
    *,
    name: str = MODEL_NAME,
    device: str = "cpu",
    backend: str = DEFAULT_BACKEND,
    threads: int = 0,
    concurrency: int = DEFAULT_CONCURRENCY,
    max_instances: int = DEFAULT_MAX_INSTANCES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ALPRModel:
    """Resolve ``model`` (``latest`` through the metadata store) and return the loaded :class:`ALPRModel` ``name``.

    Raises:
        alpr.model.inference.ModelError: no selected model, or the model does not load.
        FileNotFoundError: nothing at the model URI.
    """
    settings = load_settings()
    uri = resolve_model_uri(model, db_url=settings.db_url)
    served = ALPRModel(
        name,
        model_uri=uri,
        cache_dir=settings.cache_dir / "models",
        device=device,
        backend=backend,
        threads=threads,
        concurrency=concurrency,
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
            args.model,
            name=args.model_name,
            device=args.device,
            backend=args.backend,
            threads=args.threads,
            concurrency=args.concurrency,
            max_instances=args.max_instances,
            max_pixels=int(args.max_megapixels * 1e6),
        )
    except (ModelError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    options = {key: getattr(args, key) for key in _SERVER_OPTIONS}
    ALPRModelServer(payload_log=args.payload_log, **options).start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
