"""The prediction log of the model server: each inference's request and response as CloudEvents, sent the way
KServe's payload logger sends them, without ever holding up or failing a reading.

On a cluster KServe's agent (``spec.predictor.logger`` of the InferenceService) logs the predictor's traffic;
locally ``python -m alpr.serving --log-url URL`` does the same from inside the server (:class:`PayloadLogMiddleware`
installed by :class:`alpr.serving.server.ALPRModelServer`), so that one receiver (``alpr monitor``, ``POST /events``)
reads both alike.

The events (KServe ``pkg/logger``, commit ``aaac4e294dae2c7b1aa1886447793f3aa1c30912`` of kserve/kserve, 2026-08-21:
``handler.go`` and ``worker.go``): binary-mode CloudEvents 1.0 over HTTP POST, one per request and one per response,
both with the same ``ce-id`` (the request's ``Ce-Id`` header when it has one, else a new UUID):

=============================  =======================================================================================
``ce-specversion``             ``1.0``
``ce-id``                      the inference's id (request and response alike)
``ce-type``                    :data:`REQUEST_EVENT_TYPE` / :data:`RESPONSE_EVENT_TYPE`
``ce-source``                  :attr:`EventLogConfig.source` (KServe: the pod's name; its agent's default
                               ``http://localhost:<port>/``)
``ce-time``                    when the request arrived / when the response was complete (RFC 3339, UTC, ``Z``)
``ce-recordedtime``            when the event was handed to the sender (extension :data:`RECORDED_TIME_ATTR`)
``ce-inferenceservicename``    the InferenceService's name (here: the served model's name)
``ce-namespace``               its namespace (``""`` outside a cluster)
``ce-component``               ``predictor``
``ce-endpoint``                ``""`` (KServe: the pod's ``endpoint`` label, which its controllers no longer set)
``ce-metadata``                JSON object of the request headers named in :attr:`EventLogConfig.metadata_headers`
                               (``{"Header-Name": ["value", ...]}``, Go's compact encoding, ``{}`` when none)
``Content-Type``               the **request's** ``Content-Type``, for the response event too (as KServe does); absent
                               when the request had none
body                           the request body as received / the response body as sent, byte for byte
=============================  =======================================================================================

As in KServe, the response is logged only when its status is 200; ``mode`` (:data:`LOG_MODES`) picks the request,
the response or both. Unlike KServe's agent, which logs every path it proxies, only the inference routes are logged
(``POST /v1/models/<name>:predict``, ``POST /v2/models/<name>[/versions/<v>]/infer``; :data:`LOGGED_PATH`).

Sending (:class:`EventLog`): a bounded queue and one background thread that POSTs each event with a short timeout.
A full queue drops the event; a transport error, a timeout or a non-2xx answer counts as failed; neither is retried
and neither reaches the client. The counts are Prometheus counters in the default registry (kserve's ``/metrics``):
:data:`SENT_METRIC`, :data:`DROPPED_METRIC`, :data:`FAILED_METRIC`.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from prometheus_client import Counter

__all__ = [
    "COMPONENT",
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_TIMEOUT_S",
    "DROPPED_METRIC",
    "EXIT_FLUSH_S",
    "EXTENSION_ATTRS",
    "EventLog",
    "EventLogConfig",
    "EventLogStats",
    "FAILED_METRIC",
    "ID_HEADER",
    "LOGGED_PATH",
    "LOG_MODES",
    "LoggedPayload",
    "METADATA_HEADERS",
    "PayloadLogMiddleware",
    "REQUEST_EVENT_TYPE",
    "RESPONSE_EVENT_TYPE",
    "SENT_METRIC",
    "binary_event",
    "install",
    "rfc3339",
]

log = logging.getLogger(__name__)

# --- KServe's names (pkg/logger/worker.go, handler.go) ----------------------------------------------------------

#: ``ce-type`` of a logged request (KServe ``CEInferenceRequest``).
REQUEST_EVENT_TYPE: Final = "org.kubeflow.serving.inference.request"
#: ``ce-type`` of a logged response (KServe ``CEInferenceResponse``).
RESPONSE_EVENT_TYPE: Final = "org.kubeflow.serving.inference.response"
#: Extension attributes (CloudEvents extension names: lower-case letters and digits, as KServe's).
INFERENCE_SERVICE_ATTR: Final = "inferenceservicename"
NAMESPACE_ATTR: Final = "namespace"
COMPONENT_ATTR: Final = "component"
ENDPOINT_ATTR: Final = "endpoint"
METADATA_ATTR: Final = "metadata"
RECORDED_TIME_ATTR: Final = "recordedtime"
#: Every extension attribute an event carries (KServe's ``annotations`` is left out: it has none to send here).
EXTENSION_ATTRS: Final = (
    RECORDED_TIME_ATTR,
    INFERENCE_SERVICE_ATTR,
    NAMESPACE_ATTR,
    COMPONENT_ATTR,
    ENDPOINT_ATTR,
    METADATA_ATTR,
)
#: The request header whose value becomes the event id when present (KServe ``CloudEventsIdHeader``).
ID_HEADER: Final = "Ce-Id"
#: Which events are sent: the request's and the response's, or one of them (KServe's ``LoggerType``; the CRD's enum).
LOG_MODES: Final = ("all", "request", "response")
#: Queue length of unsent events (KServe ``LoggerWorkerQueueSize``).
DEFAULT_QUEUE_SIZE: Final = 100
#: Seconds one POST to the receiver may take (connect, write, read) before it counts as failed.
DEFAULT_TIMEOUT_S: Final = 2.0
#: Seconds the queued events get to go out when the process exits.
EXIT_FLUSH_S: Final = 2.0
#: The ``component`` of a model server (KServe's ``PredictorComponent``).
COMPONENT: Final = "predictor"
#: Request headers copied into ``ce-metadata`` by default: the binary data extension's JSON header length, without
#: which a receiver cannot split a V2 binary body (the InferenceService's ``logger.metadataHeaders`` names it too).
METADATA_HEADERS: Final = ("Inference-Header-Content-Length",)
#: The routes whose traffic is logged (POST only): V1 predict and V2 infer, with or without a model version.
LOGGED_PATH: Final = re.compile(r"/v1/models/[^/]+:predict|/v2/models/[^/]+(/versions/[^/]+)?/infer")

# --- the counters (kserve's /metrics serves the default registry) ------------------------------------------------

#: Events the receiver answered with a 2xx status.
SENT_METRIC: Final = "alpr_payload_log_sent_total"
#: Events dropped because the queue was full (the receiver slower than the traffic, or down).
DROPPED_METRIC: Final = "alpr_payload_log_dropped_total"
#: Events whose POST failed: connection refused, timeout, a non-2xx answer.
FAILED_METRIC: Final = "alpr_payload_log_failed_total"

_SENT = Counter(SENT_METRIC.removesuffix("_total"), "Prediction-log events the receiver accepted (2xx).")
_DROPPED = Counter(DROPPED_METRIC.removesuffix("_total"), "Prediction-log events dropped: the send queue was full.")
_FAILED = Counter(
    FAILED_METRIC.removesuffix("_total"), "Prediction-log events not delivered: transport error, timeout or non-2xx."
)


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC as RFC 3339 with a ``Z`` and the fraction's trailing zeros trimmed, as Go's
    ``time.RFC3339Nano`` writes it (KServe's ``ce-time``): ``2026-11-29T23:42:53.1234Z``, ``...:53Z``.

    Raises:
        ValueError: ``moment`` is naive (no time zone).
    """
    if moment.tzinfo is None:
        raise ValueError(f"rfc3339: {moment!r} has no time zone")
    utc = moment.astimezone(UTC)
    fraction = f"{utc.microsecond:06d}".rstrip("0")
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


@dataclass(frozen=True)
class EventLogConfig:
    """Where and how the prediction log is sent (``python -m alpr.serving --log-url ...``).

    Attributes:
        url: the receiver, ``http://`` or ``https://`` (e.g. ``http://127.0.0.1:8090/events``).
        mode: one of :data:`LOG_MODES`.
        queue_size: most events waiting to be sent; more are dropped (counted).
        timeout_s: seconds one POST may take.
        source: ``ce-source`` (KServe: the pod's name).
        inference_service: ``ce-inferenceservicename`` (the InferenceService's, here the served model's name).
        namespace: ``ce-namespace``.
        component: ``ce-component``.
        endpoint: ``ce-endpoint``.
        metadata_headers: request headers copied into ``ce-metadata`` (names as written here, matched without
            regard to case).

    Raises:
        ValueError: a field is out of range; the message names it.
    """

    url: str
    mode: str = "all"
    queue_size: int = DEFAULT_QUEUE_SIZE
    timeout_s: float = DEFAULT_TIMEOUT_S
    source: str = "http://localhost:8080/"
    inference_service: str = ""
    namespace: str = ""
    component: str = COMPONENT
    endpoint: str = ""
    metadata_headers: tuple[str, ...] = METADATA_HEADERS

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"log url must be an http:// or https:// URL with a host, got {self.url!r}")
        if self.mode not in LOG_MODES:
            raise ValueError(f"log mode must be one of {', '.join(LOG_MODES)}, got {self.mode!r}")
        if self.queue_size < 1:
            raise ValueError(f"log queue size must be >= 1, got {self.queue_size}")
        if not self.timeout_s > 0:
            raise ValueError(f"log timeout must be > 0 s, got {self.timeout_s}")
        if not self.source:
            raise ValueError("log source (ce-source) must not be empty")

    @property
    def logs_requests(self) -> bool:
        """Whether request events are sent (mode ``all`` or ``request``)."""
        return self.mode in ("all", "request")

    @property
    def logs_responses(self) -> bool:
        """Whether response events are sent (mode ``all`` or ``response``)."""
        return self.mode in ("all", "response")


@dataclass(frozen=True)
class LoggedPayload:
    """One request or response to log.

    Attributes:
        event_id: ``ce-id`` (the same for an inference's request and response).
        event_type: :data:`REQUEST_EVENT_TYPE` or :data:`RESPONSE_EVENT_TYPE`.
        occurred: ``ce-time`` (time-zone aware).
        content_type: the event's ``Content-Type`` (the request's), or None for none.
        body: the payload, bytes as received or sent.
        metadata: ``ce-metadata``: header name -> its values.
    """

    event_id: str
    event_type: str
    occurred: datetime
    content_type: str | None
    body: bytes = field(repr=False)
    metadata: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class EventLogStats:
    """What an :class:`EventLog` did so far: events ``sent`` (2xx), ``dropped`` (queue full), ``failed`` (transport
    error, timeout, non-2xx); ``queued``: waiting now."""

    sent: int
    dropped: int
    failed: int
    queued: int


def binary_event(config: EventLogConfig, payload: LoggedPayload, recorded: datetime) -> tuple[dict[str, str], bytes]:
    """The HTTP headers and body of ``payload`` as a binary-mode CloudEvent (the ``cloudevents`` SDK's
    ``to_binary``), with KServe's attributes (module docstring); ``recorded``: ``ce-recordedtime``."""
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    attributes = {
        "specversion": "1.0",
        "id": payload.event_id,
        "type": payload.event_type,
        "source": config.source,
        "time": rfc3339(payload.occurred),
        RECORDED_TIME_ATTR: rfc3339(recorded),
        INFERENCE_SERVICE_ATTR: config.inference_service,
        NAMESPACE_ATTR: config.namespace,
        COMPONENT_ATTR: config.component,
        ENDPOINT_ATTR: config.endpoint,
        # Go's json.Marshal of a map[string][]string: keys sorted, no spaces
        METADATA_ATTR: json.dumps(
            {k: list(v) for k, v in sorted(payload.metadata.items())}, separators=(",", ":"), ensure_ascii=False
        ),
    }
    if payload.content_type:
        attributes["datacontenttype"] = payload.content_type
    headers, body = to_binary(CloudEvent(attributes, payload.body), data_marshaller=lambda data: data)
    return headers, body


class EventLog:
    """Sends :class:`LoggedPayload` events to ``config.url`` from one background thread, never blocking the caller.

    :meth:`log` only puts the event on a queue of ``config.queue_size`` (dropping it, counted, when the queue is
    full); the thread POSTs each event (:func:`binary_event`) with ``config.timeout_s``, counting it as sent (2xx)
    or failed (anything else), and moves on: no retries. The thread starts with the first :meth:`log`; when the
    process exits, what is still queued gets :data:`EXIT_FLUSH_S` seconds to go out (:meth:`close`).

    Args:
        config: where and how.
        transport: an ``httpx`` transport for the client (tests); None: a real connection pool.
    """

    def __init__(self, config: EventLogConfig, *, transport: Any = None) -> None:
        self.config = config
        self._transport = transport
        self._queue: queue.Queue[tuple[LoggedPayload, datetime]] = queue.Queue(maxsize=config.queue_size)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._sent = self._dropped = self._failed = 0
        self._last_warning = 0.0

    def log(self, payload: LoggedPayload) -> bool:
        """Queue ``payload`` for sending; returns False (and counts a drop) when the queue is full or the log is
        closed. Never blocks, never raises on a full queue."""
        if self._stopping.is_set():
            self._count_drop()
            return False
        self._ensure_started()
        try:
            self._queue.put_nowait((payload, datetime.now(UTC)))
        except queue.Full:
            self._count_drop()
            self._warn(f"prediction log queue full ({self.config.queue_size}): event {payload.event_id} dropped")
            return False
        return True

    def stats(self) -> EventLogStats:
        """This log's counts so far (the Prometheus counters add up every log of the process)."""
        with self._lock:
            return EventLogStats(self._sent, self._dropped, self._failed, self._queue.qsize())

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued event was sent or failed, at most ``timeout_s``; True when the queue ran dry."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return self._queue.unfinished_tasks == 0

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop taking events, send what is queued for at most ``timeout_s``, stop the thread; later :meth:`log`
        calls drop."""
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    # --- the sender thread --------------------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="payload-log", daemon=True)
                    self._thread.start()
                    atexit.register(self.close, EXIT_FLUSH_S)

    def _run(self) -> None:
        import httpx

        timeout = httpx.Timeout(self.config.timeout_s)
        with httpx.Client(timeout=timeout, transport=self._transport, trust_env=False) as client:
            while True:
                try:
                    payload, recorded = self._queue.get(timeout=0.1)
                except queue.Empty:
                    if self._stopping.is_set():
                        return
                    continue
                try:
                    self._send(client, payload, recorded)
                finally:
                    self._queue.task_done()

    def _send(self, client: Any, payload: LoggedPayload, recorded: datetime) -> None:
        import httpx

        try:
            headers, body = binary_event(self.config, payload, recorded)
            response = client.post(self.config.url, headers=headers, content=body)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            self._count(failed=True)
            self._warn(f"prediction log: event {payload.event_id} not sent to {self.config.url}: {exc!r}")
            return
        if 200 <= response.status_code < 300:
            self._count(failed=False)
        else:
            self._count(failed=True)
            self._warn(
                f"prediction log: {self.config.url} answered {response.status_code} to event {payload.event_id}: "
                f"{response.text[:200]}"
            )

    def _count(self, *, failed: bool) -> None:
        with self._lock:
            if failed:
                self._failed += 1
            else:
                self._sent += 1
        (_FAILED if failed else _SENT).inc()

    def _count_drop(self) -> None:
        with self._lock:
            self._dropped += 1
        _DROPPED.inc()

    def _warn(self, message: str) -> None:
        """Log a warning, at most one every 10 s (a receiver that is down would otherwise flood the log)."""
        now = time.monotonic()
        if now - self._last_warning >= 10.0:
            self._last_warning = now
            log.warning("%s (further such warnings within 10 s are not shown)", message)


# --- the ASGI middleware --------------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class PayloadLogMiddleware:
    """ASGI middleware that logs the inference routes' traffic (:data:`LOGGED_PATH`, POST) to an :class:`EventLog`.

    The request body is read whole first (as KServe's agent does), its event queued with the arrival time, and the
    body handed on to the app unchanged; the response goes out to the client as the app sends it, a copy of its
    body is kept, and once its last part is sent a 200 response's event is queued. Neither waits for the receiver.

    Args:
        app: the ASGI app (kserve's FastAPI app).
        config: where to send; the middleware makes its own :class:`EventLog` (in the process that serves: kserve's
            worker processes each get theirs).
        event_log: an existing log instead (tests).

    Raises:
        ValueError: neither ``config`` nor ``event_log`` is given.
    """

    def __init__(self, app: Any, *, config: EventLogConfig | None = None, event_log: EventLog | None = None) -> None:
        if event_log is None:
            if config is None:
                raise ValueError("PayloadLogMiddleware needs a config or an event_log")
            event_log = EventLog(config)
        self.app = app
        self.event_log = event_log
        self.config = event_log.config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not LOGGED_PATH.fullmatch(scope["path"]):
            await self.app(scope, receive, send)
            return
        arrived = datetime.now(UTC)
        headers = _headers(scope)
        event_id = headers.get(ID_HEADER.lower(), [""])[0] or str(uuid.uuid4())
        content_type = headers.get("content-type", [None])[0]
        metadata = {name: headers[name.lower()] for name in self.config.metadata_headers if name.lower() in headers}

        # read the whole body (then replay it to the app, followed by whatever the client sends next)
        received: list[Message] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        complete = bool(received) and received[-1]["type"] == "http.request"
        if complete and self.config.logs_requests:
            self._queue(event_id, REQUEST_EVENT_TYPE, arrived, content_type, b"".join(chunks), metadata)

        async def replay() -> Message:
            return received.pop(0) if received else await receive()

        status: list[int] = []
        out: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)
            if message["type"] == "http.response.body" and status and status[0] == 200:
                out.append(message.get("body", b""))
                if not message.get("more_body", False) and complete and self.config.logs_responses:
                    self._queue(event_id, RESPONSE_EVENT_TYPE, datetime.now(UTC), content_type, b"".join(out), metadata)

        await self.app(scope, replay, capture)

    def _queue(
        self,
        event_id: str,
        event_type: str,
        occurred: datetime,
        content_type: str | None,
        body: bytes,
        metadata: Mapping[str, Sequence[str]],
    ) -> None:
        try:
            self.event_log.log(LoggedPayload(event_id, event_type, occurred, content_type, body, metadata))
        except Exception:  # the log must never fail a reading
            log.exception("prediction log: could not queue event %s", event_id)


def _headers(scope: Scope) -> dict[str, list[str]]:
    """The request's headers: lower-case name -> values in order (latin-1, as HTTP/1.1 carries them)."""
    out: dict[str, list[str]] = {}
    for name, value in scope.get("headers", []):
        out.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return out


def install(app: Any, config: EventLogConfig) -> None:
    """Add :class:`PayloadLogMiddleware` sending to ``config`` to the Starlette / FastAPI ``app`` (before it starts
    serving), replacing one added before (a server started again in the same process)."""
    app.user_middleware[:] = [m for m in app.user_middleware if m.cls is not PayloadLogMiddleware]
    app.add_middleware(PayloadLogMiddleware, config=config)
