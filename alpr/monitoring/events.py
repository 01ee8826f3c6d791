"""KServe's payload-logger CloudEvents: parse them, pair a request with its response, decode both into records.

What KServe's logger sends (``pkg/logger`` of kserve/kserve, ``worker.go`` and ``handler.go``, checked at commit
aaac4e2): for each inference, a CloudEvents 1.0 event in *binary* HTTP mode for the request and, when the model
answered 200, one for the response, both with the same id (the request's ``Ce-Id`` header, or a new UUID):

- ``ce-specversion: 1.0``, ``ce-id``, ``ce-type`` :data:`REQUEST_TYPE` / :data:`RESPONSE_TYPE`, ``ce-source`` (the
  predictor's URL), ``ce-time`` (when the request arrived / the response was complete, RFC 3339);
- extensions ``ce-inferenceservicename``, ``ce-namespace``, ``ce-component``, ``ce-endpoint`` (``default`` or
  ``canary``), ``ce-recordedtime``, ``ce-metadata`` (a JSON object of the request headers the InferenceService
  lists in ``metadataHeaders``) and, when set, ``ce-annotations``;
- ``Content-Type``: the *request's* content type, on both events; the body: the request or response body bytes.

Decoded here (PLATE_SPEC "Serving (KServe)"): V1 ``{"instances": [{"image_bytes": {"b64": ...}}]}`` ->
``{"predictions": [reading, ...]}``; V2 JSON (input ``image``, BYTES, base64 strings -> output ``plates``, BYTES,
JSON strings); and V2 with the binary data extension, where the body is a JSON header followed by each tensor's
elements (4-byte little-endian length + bytes). The JSON header's length comes from an
``Inference-Header-Content-Length`` header on the event, or (request events only: ``ce-metadata`` carries the
request's headers on both events) from ``ce-metadata`` when the InferenceService lists that header in
``metadataHeaders``, or else from the end of the JSON value itself (KServe does not forward the response's
headers).

Every refusal is an :class:`EventError` with an HTTP status (400 malformed, 409 unknown or repeated id, 413
oversized, 415 not binary mode, 422 a body or reading that does not follow PLATE_SPEC) and a short ``reason``
(the label of ``alpr_monitor_events_rejected_total``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from cloudevents.exceptions import GenericException
from cloudevents.http import from_http

from alpr.monitoring.store import PlateRecord, PredictionRecord, image_extension, plates_from_reading

__all__ = [
    "ANNOTATIONS_EXT",
    "COMPONENT_EXT",
    "ENDPOINT_EXT",
    "HEADER_LENGTH_HEADER",
    "INFERENCE_SERVICE_EXT",
    "METADATA_EXT",
    "NAMESPACE_EXT",
    "RECORDED_TIME_EXT",
    "REQUEST_TYPE",
    "RESPONSE_TYPE",
    "SPEC_VERSION",
    "EventError",
    "EventPairer",
    "ImageInfo",
    "LoggedEvent",
    "PendingRequest",
    "decode_request",
    "decode_response",
    "image_info",
    "is_sampled",
    "parse_event",
]

#: ``ce-type`` of a logged request (kserve ``pkg/logger/worker.go``: ``CEInferenceRequest``).
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
#: ``ce-type`` of a logged response (``CEInferenceResponse``).
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
#: The CloudEvents version KServe sends (``cloudevents.VersionV1``).
SPEC_VERSION = "1.0"
#: KServe's extension attributes (``ce-<name>`` headers in binary mode): ``InferenceServiceAttr``, ...
INFERENCE_SERVICE_EXT = "inferenceservicename"
NAMESPACE_EXT = "namespace"
COMPONENT_EXT = "component"
ENDPOINT_EXT = "endpoint"
METADATA_EXT = "metadata"
ANNOTATIONS_EXT = "annotations"
RECORDED_TIME_EXT = "recordedtime"
#: The Open Inference Protocol's binary data extension: length of the JSON part of a body (bytes).
HEADER_LENGTH_HEADER = "inference-header-content-length"
#: The V2 tensors: input ``image``, output ``plates`` (PLATE_SPEC).
INPUT_NAME = "image"
OUTPUT_NAME = "plates"
#: Longest KServe extension value accepted (a Kubernetes name is at most 63 characters; the rows keep 128).
MAX_EXTENSION_CHARS = 128
#: Most images in one logged request (the model server's own default limit is lower).
MAX_IMAGES = 256


class EventError(ValueError):
    """An event the monitor refuses: ``status`` (the HTTP status to answer), ``reason`` (a short label: ``malformed``,
    ``not_binary``, ``unknown_type``, ``unknown_id``, ``duplicate_id``, ``too_large``, ``bad_request_body``,
    ``bad_image``, ``bad_response_body``, ``bad_reading``) and the message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class LoggedEvent:
    """One payload-logger event.

    Attributes:
        id: ``ce-id`` (the same for a request and its response).
        type: :data:`REQUEST_TYPE` or :data:`RESPONSE_TYPE`.
        source: ``ce-source``.
        time: ``ce-time`` (timezone-aware), None when absent.
        inference_service, namespace, component, endpoint: KServe's extensions (``""`` when absent).
        metadata: ``ce-metadata`` decoded (``{header: [values]}``; empty when absent).
        content_type: the ``Content-Type`` of the body (the request's, on both events).
        header_length: the binary data extension's JSON length, when the event says it (else None).
        body: the payload bytes.
    """

    id: str
    type: str
    source: str
    time: datetime | None
    inference_service: str
    namespace: str
    component: str
    endpoint: str
    metadata: Mapping[str, Any]
    content_type: str
    header_length: int | None
    body: bytes


@dataclass(frozen=True)
class ImageInfo:
    """One image of a request: its SHA-256 (hex), size (bytes), width and height (pixels, from its header),
    extension (``jpg`` | ``png``), and its bytes when it is sampled for storage (else None)."""

    sha256: str
    size: int
    width: int
    height: int
    extension: str
    data: bytes | None = None


@dataclass(frozen=True)
class PendingRequest:
    """A request event waiting for its response: the event (without its body: the images are decoded), its images
    (the bytes kept only for the sampled ones), and when it arrived (``time.monotonic``)."""

    event: LoggedEvent
    images: tuple[ImageInfo, ...]
    arrived: float = field(default=0.0)


# --------------------------------------------------------------------------------------------------- parsing


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _parse_time(value: Any, what: str) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise EventError(400, "malformed", f"{what} is not an RFC 3339 time: {value!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _header_length(value: str | None, what: str) -> int | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise EventError(400, "malformed", f"{what} must be a positive byte count, got {value!r}")
    return int(text)


def parse_event(headers: Mapping[str, str], body: bytes, *, max_body_bytes: int) -> LoggedEvent:
    """Parse one HTTP POST of KServe's payload logger with the CloudEvents SDK (``cloudevents.http.from_http``).

    Args:
        headers: the HTTP headers (any case).
        body: the body bytes.
        max_body_bytes: the largest body accepted.

    Raises:
        EventError: 413 a body over ``max_body_bytes``; 415 a structured or batched event (KServe sends binary
            mode); 400 a missing or malformed required attribute (``ce-specversion`` other than 1.0, no ``ce-id``, a
            bad time or ``ce-metadata``, no ``ce-source``); 400 ``unknown_type`` a missing ``ce-type`` or one other
            than KServe's two.
    """
    if len(body) > max_body_bytes:
        raise EventError(413, "too_large", f"event body has {len(body)} bytes, more than the {max_body_bytes} accepted")
    lowered = {k.lower(): v for k, v in headers.items()}
    if _header(lowered, "ce-specversion") is None:
        content_type = lowered.get("content-type", "")
        if content_type.startswith("application/cloudevents"):
            raise EventError(415, "not_binary", "structured/batched CloudEvents are not accepted: send binary mode")
        raise EventError(400, "malformed", "not a CloudEvent: no ce-specversion header")
    if lowered["ce-specversion"] != SPEC_VERSION:
        raise EventError(400, "malformed", f"ce-specversion must be {SPEC_VERSION}, got {lowered['ce-specversion']!r}")
    # checked before the SDK, which would make up a missing id (a random UUID) and time (now)
    event_id = (lowered.get("ce-id") or "").strip()
    if not event_id:
        raise EventError(400, "malformed", "ce-id is missing or empty")
    if len(event_id) > 160:
        raise EventError(400, "malformed", f"ce-id has {len(event_id)} characters, at most 160 are accepted")
    kind = lowered.get("ce-type")
    if kind not in (REQUEST_TYPE, RESPONSE_TYPE):
        raise EventError(400, "unknown_type", f"ce-type must be {REQUEST_TYPE} or {RESPONSE_TYPE}, got {kind!r}")
    occurred = _parse_time(lowered.get("ce-time"), "ce-time")
    try:
        event = from_http(lowered, body, data_unmarshaller=lambda data: data)
    except GenericException as exc:
        raise EventError(400, "malformed", f"malformed CloudEvent: {exc}") from None
    attributes = event.get_attributes()
    metadata: Any = attributes.get(METADATA_EXT) or "{}"
    try:
        metadata = json.loads(metadata) if isinstance(metadata, (str, bytes)) else metadata
    except ValueError:
        raise EventError(400, "malformed", f"ce-metadata is not JSON: {str(metadata)[:80]!r}") from None
    if not isinstance(metadata, dict):
        raise EventError(400, "malformed", "ce-metadata must be a JSON object of header lists")
    length = _header(lowered, HEADER_LENGTH_HEADER)
    if length is None and kind == REQUEST_TYPE:  # ce-metadata holds the request's headers, on both events
        values = {k.lower(): v for k, v in metadata.items()}.get(HEADER_LENGTH_HEADER)
        length = values[0] if isinstance(values, list) and values else values
    for name in (INFERENCE_SERVICE_EXT, NAMESPACE_EXT, COMPONENT_EXT, ENDPOINT_EXT):
        if len(str(attributes.get(name) or "")) > MAX_EXTENSION_CHARS:
            raise EventError(400, "malformed", f"ce-{name} is longer than {MAX_EXTENSION_CHARS} characters")
    data = event.data if event.data is not None else b""
    if isinstance(data, str):
        data = data.encode()
    return LoggedEvent(
        id=event_id,
        type=kind,
        source=str(attributes.get("source") or ""),
        time=occurred,
        inference_service=str(attributes.get(INFERENCE_SERVICE_EXT) or ""),
        namespace=str(attributes.get(NAMESPACE_EXT) or ""),
        component=str(attributes.get(COMPONENT_EXT) or ""),
        endpoint=str(attributes.get(ENDPOINT_EXT) or ""),
        metadata=metadata,
        content_type=str(lowered.get("content-type", "")),
        header_length=_header_length(length, HEADER_LENGTH_HEADER),
        body=bytes(data),
    )


# --------------------------------------------------------------------------------------------------- bodies


def _split_body(event: LoggedEvent, what: str, reason: str) -> tuple[Any, bytes]:
    """The JSON part of a body (decoded) and the bytes after it (the binary data; empty for a JSON body)."""
    body = event.body
    if event.header_length is not None and event.header_length <= len(body):
        head, rest = body[: event.header_length], body[event.header_length :]
        try:
            return json.loads(head), rest
        except (UnicodeDecodeError, ValueError) as exc:
            raise EventError(422, reason, f"{what}: the JSON part is not JSON: {exc}") from None
    if event.header_length is not None:
        raise EventError(422, reason, f"{what}: {HEADER_LENGTH_HEADER} is {event.header_length}, body {len(body)}")
    try:
        text = body.decode("utf-8", errors="surrogateescape")
        value, end = json.JSONDecoder().raw_decode(text)
    except ValueError as exc:
        raise EventError(422, reason, f"{what} is not JSON: {exc}") from None
    consumed = len(text[:end].encode("utf-8", errors="surrogateescape"))
    return value, body[consumed:]


def _bytes_elements(raw: bytes, what: str, reason: str) -> list[bytes]:
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise EventError(422, reason, f"{what}: truncated 4-byte length of element {len(elements)}")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise EventError(422, reason, f"{what}: element {len(elements)} claims {length} bytes, fewer are left")
        elements.append(raw[offset : offset + length])
        offset += length
    return elements


def _v2_tensor(document: dict, key: str, name: str, rest: bytes, what: str, reason: str) -> list[Any]:
    """The data of tensor ``name`` in ``document[key]`` (``inputs``/``outputs``), from JSON or the binary part."""
    tensors = document.get(key)
    if not isinstance(tensors, list) or not all(isinstance(t, dict) for t in tensors):
        raise EventError(422, reason, f'{what}: "{key}" must be a list of tensors')
    offset, found = 0, None
    for tensor in tensors:
        parameters = tensor.get("parameters") if isinstance(tensor.get("parameters"), dict) else {}
        size = parameters.get("binary_data_size")
        data: Any = tensor.get("data")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(rest):
                raise EventError(422, reason, f"{what}: tensor {tensor.get('name')!r} has a bad binary_data_size")
            data = _bytes_elements(rest[offset : offset + size], f"{what} tensor {tensor.get('name')!r}", reason)
            offset += size
        if tensor.get("name") == name:
            found = (tensor, data)
    if found is None:
        names = [t.get("name") for t in tensors]
        raise EventError(422, reason, f'{what}: no tensor "{name}" in {key} (got {names})')
    tensor, data = found
    if tensor.get("datatype") != "BYTES" or not isinstance(data, list):
        raise EventError(422, reason, f'{what}: tensor "{name}" must be BYTES with a data list')
    return data


def decode_request(event: LoggedEvent) -> list[bytes]:
    """The encoded images of a logged request (V1, V2 JSON, V2 binary), in order.

    Raises:
        EventError: 422 ``bad_request_body``: not JSON, neither V1 ``instances`` nor V2 ``inputs``, an instance
            without ``image_bytes.b64``, bad base64, no images or more than :data:`MAX_IMAGES`.
    """
    what, reason = "request body", "bad_request_body"
    document, rest = _split_body(event, what, reason)
    if not isinstance(document, dict):
        raise EventError(422, reason, f"{what} must be a JSON object")
    if "instances" in document:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise EventError(422, reason, f'{what}: "instances" must be a list')
        encoded: list[Any] = []
        for i, instance in enumerate(instances):
            b64 = instance.get("image_bytes") if isinstance(instance, dict) else None
            b64 = b64.get("b64") if isinstance(b64, dict) else None
            if not isinstance(b64, str):
                raise EventError(422, reason, f'{what}: instances[{i}] has no "image_bytes": {{"b64": ...}}')
            encoded.append(b64)
    elif "inputs" in document:
        encoded = _v2_tensor(document, "inputs", INPUT_NAME, rest, what, reason)
    else:
        raise EventError(422, reason, f'{what} is neither V1 ("instances") nor V2 ("inputs")')
    if not encoded or len(encoded) > MAX_IMAGES:
        raise EventError(422, reason, f"{what} has {len(encoded)} images: 1 to {MAX_IMAGES} are accepted")
    images = []
    for i, item in enumerate(encoded):
        if isinstance(item, bytes):
            images.append(item)
            continue
        if not isinstance(item, str):
            raise EventError(422, reason, f"{what}: image {i} is neither base64 text nor bytes")
        try:
            images.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise EventError(422, reason, f"{what}: image {i} is not valid base64") from None
    return images


def decode_response(event: LoggedEvent, count: int) -> list[tuple[PlateRecord, ...]]:
    """The readings of a logged response (V1 ``predictions``, V2 output ``plates``), one per image, checked against
    PLATE_SPEC (:func:`alpr.monitoring.store.plates_from_reading`).

    Args:
        event: the response event.
        count: how many images its request had.

    Raises:
        EventError: 422 ``bad_response_body`` (not JSON, neither V1 nor V2, not ``count`` readings) or
            ``bad_reading`` (a reading not per PLATE_SPEC; the message names the field).
    """
    what, reason = "response body", "bad_response_body"
    document, rest = _split_body(event, what, reason)
    if not isinstance(document, dict):
        raise EventError(422, reason, f"{what} must be a JSON object")
    if "predictions" in document:
        readings = document["predictions"]
        key = "predictions"
        if not isinstance(readings, list):
            raise EventError(422, reason, f'{what}: "predictions" must be a list')
    elif "outputs" in document:
        key = f"outputs[{OUTPUT_NAME}].data"
        readings = []
        for i, item in enumerate(_v2_tensor(document, "outputs", OUTPUT_NAME, rest, what, reason)):
            try:
                readings.append(json.loads(item))
            except (TypeError, ValueError, UnicodeDecodeError):
                raise EventError(422, "bad_reading", f"{what}: {key}[{i}] is not a JSON reading") from None
    else:
        raise EventError(422, reason, f'{what} is neither V1 ("predictions") nor V2 ("outputs")')
    if len(readings) != count:
        raise EventError(422, reason, f"{what} has {len(readings)} readings for the request's {count} images")
    try:
        return [plates_from_reading(r, f"{what}.{key}[{i}]") for i, r in enumerate(readings)]
    except ValueError as exc:
        raise EventError(422, "bad_reading", str(exc)) from None


def is_sampled(sha256: str, fraction: float) -> bool:
    """Whether the image with this SHA-256 (hex) is kept: its first 64 bits, as a number in [0, 1), are below
    ``fraction`` -- the same decision for the same image everywhere, so a test can choose an image that is
    (or is not) kept."""
    if fraction <= 0:
        return False
    if fraction >= 1:
        return True
    return int(sha256[:16], 16) / 2**64 < fraction


def image_info(data: bytes, index: int, *, sample: float = 0.0) -> ImageInfo:
    """SHA-256, size, dimensions (Pillow reads the header, not the pixels) and type of one encoded image; its bytes
    kept when :func:`is_sampled`.

    Raises:
        EventError: 422 ``bad_image``: not a JPEG or PNG, or a header Pillow cannot read.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        extension = image_extension(data)
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (ValueError, OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise EventError(422, "bad_image", f"image {index} cannot be decoded: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    kept = data if is_sampled(digest, sample) else None
    return ImageInfo(digest, len(data), int(width), int(height), extension, kept)


# --------------------------------------------------------------------------------------------------- pairing


class EventPairer:
    """Pairs each request event with its response by ``ce-id``; thread-safe.

    Requests wait in a bounded map: past ``max_pending`` the oldest is dropped, and one older than ``ttl_s``
    (a request whose response never came: the model failed, or the logger lost it) expires.

    Args:
        sample: the fraction of images kept (:func:`is_sampled`).
        max_pending: most requests waiting at once.
        ttl_s: how long a request waits for its response, seconds.
        clock: ``time.monotonic`` (tests pass their own).
    """

    def __init__(
        self,
        *,
        sample: float = 0.0,
        max_pending: int = 1000,
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_pending < 1 or ttl_s <= 0:
            raise ValueError("max_pending must be >= 1 and ttl_s > 0")
        self.sample = sample
        self.max_pending = max_pending
        self.ttl_s = ttl_s
        self._clock = clock
        self._pending: OrderedDict[str, PendingRequest] = OrderedDict()
        self._lock = threading.Lock()
        self.expired = 0  # requests dropped without a response (too old, or pushed out)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def _expire(self, now: float) -> None:
        while self._pending:
            oldest = next(iter(self._pending.values()))
            if now - oldest.arrived <= self.ttl_s and len(self._pending) <= self.max_pending:
                break
            self._pending.popitem(last=False)
            self.expired += 1

    def add_request(self, event: LoggedEvent) -> PendingRequest:
        """Decode a request event's images and keep it until its response.

        Raises:
            EventError: 409 ``duplicate_id`` (a request with this id is waiting), or as :func:`decode_request` and
                :func:`image_info`.
        """
        images = tuple(image_info(data, i, sample=self.sample) for i, data in enumerate(decode_request(event)))
        with self._lock:
            now = self._clock()
            self._expire(now)
            if event.id in self._pending:
                raise EventError(409, "duplicate_id", f"a request with event id {event.id!r} is already waiting")
            pending = PendingRequest(replace(event, body=b""), images, now)  # the body is decoded: not kept
            self._pending[event.id] = pending
            self._expire(now)
        return pending

    def complete(
        self, event: LoggedEvent, *, model_name: str, model_version: str, received_at: datetime | None = None
    ) -> list[tuple[PredictionRecord, bytes | None]]:
        """Pair a response event with its request; return one record per image (``event_id`` ``"<ce-id>/<i>"``) with
        the sampled image's bytes (None when not sampled). The request is released only when the response decodes.

        Raises:
            EventError: 409 ``unknown_id`` (no request waiting with this id: never received, or expired), or as
                :func:`decode_response`.
        """
        with self._lock:
            self._expire(self._clock())
            pending = self._pending.get(event.id)
        if pending is None:
            raise EventError(409, "unknown_id", f"no request is waiting for event id {event.id!r} (unknown or expired)")
        readings = decode_response(event, len(pending.images))
        with self._lock:
            if self._pending.pop(event.id, None) is None:  # another response with this id won the race
                raise EventError(409, "unknown_id", f"event id {event.id!r} was answered already")
        received = received_at or datetime.now(UTC)
        latency = None
        if pending.event.time is not None and event.time is not None:
            latency = (event.time - pending.event.time).total_seconds() * 1000.0
        return [
            (
                PredictionRecord(
                    id=None,
                    event_id=f"{event.id}/{i}",
                    received_at=received,
                    model_name=model_name,
                    model_version=model_version,
                    image_sha256=info.sha256,
                    image_bytes=info.size,
                    width=info.width,
                    height=info.height,
                    latency_ms=latency,
                    plates=plates,
                ),
                info.data,
            )
            for i, (info, plates) in enumerate(zip(pending.images, readings, strict=True))
        ]
