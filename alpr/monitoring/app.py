"""The monitor service: :func:`create_app` builds the FastAPI application from a :class:`MonitorConfig`.

Routes:

=====================  ===========================================================================================
``POST /events``       one KServe payload-logger CloudEvent (binary mode, :mod:`alpr.monitoring.events`). A request
                       waits for its response (200 ``{"status": "pending"}``); a response is paired with it and
                       one row per image is stored (200 ``{"status": "stored", "ids": [...]}``). A refused event
                       gets its 4xx with ``{"error": ..., "reason": ...}`` and nothing is stored; the database
                       unreachable gets 503.
``GET /metrics``       Prometheus text format (:mod:`alpr.monitoring.metrics`).
``GET /healthz``       liveness: ``{"status": "ok", "pending": N}``.
review page            :mod:`alpr.monitoring.review`'s router: ``/``, ``/readings``, ``/upload``, ``/corrections``, ...
=====================  ===========================================================================================

Sampled images (``sample_images``, a fraction, decided per image SHA-256) go to blob storage; a retention purge at
start-up and every ``purge_interval_s`` deletes those older than ``retention_days`` and clears their rows'
``image_uri``. Why: the images show plate numbers, which are personal data in many jurisdictions (the EU's GDPR
among them); the readings are needed for the trends, the images only for review, and only for a while.

The served model (a row's ``model_version``, and the baseline the drift is measured against) is
``config.model_version`` when given; else the model the Deploy step last deployed at ``config.deploy_target``,
or when that is not set at ``"<ce-namespace>/<ce-inferenceservicename>"`` of the event (KServe's extensions), or
``"local"`` for events without them; looked up at most every ``SERVED_MODEL_TTL_S`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from alpr.metadata import AlreadyExists, MetadataError
from alpr.monitoring import review
from alpr.monitoring.events import REQUEST_TYPE, EventError, EventPairer, LoggedEvent, parse_event
from alpr.monitoring.metrics import MonitorMetrics
from alpr.monitoring.store import PredictionLog

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_PORT",
    "LOCAL_TARGET",
    "SERVED_MODEL_TTL_S",
    "MonitorConfig",
    "create_app",
]

log = logging.getLogger(__name__)

#: The monitor's port (the Service maps 80 to it on a cluster).
DEFAULT_PORT = 8090
#: Largest event body accepted, bytes: the model server's own limits (a batch of encoded images, base64) with room.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
#: The Deploy step's target name for a model served on this machine (``alpr.steps.deploy``).
LOCAL_TARGET = "local"
#: How long a served-model lookup (and its baseline) is reused, seconds.
SERVED_MODEL_TTL_S = 60.0


@dataclass(frozen=True)
class MonitorConfig:
    """The monitor's settings.

    Attributes:
        db_url: the metadata store (``sqlite:///...`` or ``mysql+pymysql://...``).
        storage_uri: the workspace's blob storage (sampled images), None to keep no images.
        sample_images: the fraction of images kept, 0..1 (decided per image SHA-256).
        retention_days: how long kept images stay, days (> 0).
        max_body_bytes: largest event body accepted, bytes.
        model_url: the model server's base URL (the review page's upload reads through it).
        model_name: the served model's name (``alpr``; events without ``ce-inferenceservicename`` get it).
        host: the address to listen on: loopback by default; ``0.0.0.0`` only behind a Service on a cluster.
        port: the port to listen on.
        model_version: the served model's metadata-store id, when known; else looked up (see the module doc).
        deploy_target: the Deploy target whose served model the events come from (None: from the events).
        window_s: the sliding window of the live gauges, seconds.
        min_drift_plates: fewest plates in the window for the drift gauges.
        pending_ttl_s: how long a request waits for its response, seconds.
        max_pending: most requests waiting at once.
        purge_interval_s: seconds between retention purges.
    """

    db_url: str
    storage_uri: str | None = None
    sample_images: float = 0.1
    retention_days: int = 30
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    model_url: str = "http://127.0.0.1:8080"
    model_name: str = "alpr"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    model_version: str | None = None
    deploy_target: str | None = None
    window_s: float = 3600.0
    min_drift_plates: int = 50
    pending_ttl_s: float = 300.0
    max_pending: int = 1000
    purge_interval_s: float = 3600.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample_images <= 1.0:
            raise ValueError(f"sample_images must be a fraction in [0, 1], got {self.sample_images}")
        if self.retention_days < 1:
            raise ValueError(f"retention_days must be >= 1, got {self.retention_days}")
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be at least 1024, got {self.max_body_bytes}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.purge_interval_s <= 0:
            raise ValueError(f"purge_interval_s must be > 0, got {self.purge_interval_s}")


class _ServedModel:
    """The served model's version per deploy target, and its baseline, looked up at most every TTL seconds."""

    def __init__(self, config: MonitorConfig, prediction_log: PredictionLog, metrics: MonitorMetrics) -> None:
        self._config = config
        self._log = prediction_log
        self._metrics = metrics
        self._lock = threading.Lock()
        self._versions: dict[str, tuple[float, str]] = {}
        self._baseline_for: tuple[float, str] | None = None

    def version(self, event: LoggedEvent) -> str:
        if self._config.model_version is not None:
            return self._config.model_version
        target = self._config.deploy_target
        if target is None:
            target = (
                f"{event.namespace}/{event.inference_service}"
                if event.namespace and event.inference_service
                else LOCAL_TARGET
            )
        now = time.monotonic()
        with self._lock:
            cached = self._versions.get(target)
        if cached is not None and now - cached[0] < SERVED_MODEL_TTL_S:
            return cached[1]
        try:
            version = self._log.served_model_version(target)
        except MetadataError as exc:  # the database down: the rows say "unknown"; the insert will tell
            log.warning("cannot look up the model served at %s: %s", target, exc)
            version = ""
        with self._lock:
            self._versions[target] = (now, version)
        return version

    def update_baseline(self, version: str) -> None:
        now = time.monotonic()
        with self._lock:
            fresh = self._baseline_for is not None and self._baseline_for[1] == version
            if fresh and now - self._baseline_for[0] < SERVED_MODEL_TTL_S:  # type: ignore[index]
                return
            self._baseline_for = (now, version)
        try:
            self._metrics.set_baseline(self._log.baseline(version))
        except MetadataError as exc:
            log.warning("cannot read the baseline of model %r: %s", version, exc)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise EventError(413, "too_large", f"event body has {int(declared)} bytes, more than the {limit} accepted")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise EventError(413, "too_large", f"event body is over the {limit} bytes accepted")
        chunks.append(chunk)
    return b"".join(chunks)


def _refusal(exc: EventError) -> JSONResponse:
    return JSONResponse({"error": str(exc), "reason": exc.reason}, status_code=exc.status)


def create_app(config: MonitorConfig, *, prediction_log: PredictionLog | None = None) -> FastAPI:
    """The monitor as a FastAPI application (routes in the module docstring).

    Args:
        config: the settings.
        prediction_log: the log to write to (default: ``PredictionLog(config.db_url, config.storage_uri)``, which
            migrates the schema to the newest revision).

    Raises:
        ValueError, MetadataError: as :class:`~alpr.monitoring.store.PredictionLog` (a bad URL, a database that
            cannot be reached or migrated).
    """
    store = prediction_log or PredictionLog(config.db_url, config.storage_uri)
    metrics = MonitorMetrics(window_s=config.window_s, min_plates=config.min_drift_plates)
    pairer = EventPairer(sample=config.sample_images, max_pending=config.max_pending, ttl_s=config.pending_ttl_s)
    served = _ServedModel(config, store, metrics)

    def purge() -> int:
        cutoff = datetime.now(UTC) - timedelta(days=config.retention_days)
        removed = store.purge_images(cutoff)
        log.info("retention: %d image(s) received before %s removed", removed, cutoff.isoformat())
        return removed

    async def purge_forever() -> None:
        while True:
            try:
                await asyncio.to_thread(purge)
            except Exception:  # the next round tries again; the service stays up
                log.exception("retention purge failed")
            await asyncio.sleep(config.purge_interval_s)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(purge_forever(), name="retention-purge")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="ALPR monitor", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.config = config
    app.state.prediction_log = store
    app.state.metrics = metrics
    app.state.pairer = pairer
    app.state.purge = purge

    @app.post("/events")
    async def events(request: Request) -> Response:
        """Receive one payload-logger CloudEvent (see the module docstring)."""
        try:
            body = await _read_body(request, config.max_body_bytes)
            event = parse_event(request.headers, body, max_body_bytes=config.max_body_bytes)
            if event.type == REQUEST_TYPE:
                await run_in_threadpool(pairer.add_request, event)
                metrics.events.labels(type="request").inc()
                metrics.pending.set(len(pairer))
                return JSONResponse({"status": "pending", "id": event.id})
            version = await run_in_threadpool(served.version, event)
            model_name = event.inference_service or config.model_name
            paired = await run_in_threadpool(pairer.complete, event, model_name=model_name, model_version=version)
        except EventError as exc:
            metrics.reject(exc.reason)
            metrics.pending.set(len(pairer))
            log.info("event refused (%s): %s", exc.reason, exc)
            return _refusal(exc)
        records = [record for record, _ in paired]
        try:
            ids = await run_in_threadpool(store.add_predictions, records, [image for _, image in paired])
        except AlreadyExists as exc:
            metrics.reject("duplicate_id")
            return _refusal(EventError(409, "duplicate_id", f"event id {event.id!r} was stored already: {exc}"))
        except ValueError as exc:  # a record the log refuses (parse_event and the decoders check them first)
            metrics.reject("malformed")
            return _refusal(EventError(422, "malformed", f"event {event.id!r}: {exc}"))
        except (MetadataError, SQLAlchemyError, OSError) as exc:  # the database or the storage is unavailable
            metrics.reject("store_error")
            log.error("cannot store the readings of event %s: %s", event.id, exc)
            return JSONResponse({"error": f"cannot store the readings: {exc}", "reason": "store_error"}, 503)
        metrics.events.labels(type="response").inc()
        metrics.pending.set(len(pairer))
        await run_in_threadpool(served.update_baseline, version)
        metrics.observe(records)
        return JSONResponse({"status": "stored", "id": event.id, "ids": ids})

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """The metrics, Prometheus text format."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        metrics.pending.set(len(pairer))
        metrics.refresh()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness: the process answers (the database is not asked: a database outage must not restart it)."""
        return {"status": "ok", "pending": len(pairer)}

    app.include_router(review.router(config, store=store))
    return app
