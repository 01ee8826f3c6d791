"""The review page of the monitor: read an uploaded image, browse recent readings, see the trends, correct readings.

Served by the monitor (:func:`alpr.monitoring.app.create_app` includes :func:`router`), on loopback by default; on
a cluster it sits behind the Kubeflow profile's authentication and is never open to the world. Pages:

- ``GET /``: upload form, the trend plots and links;
- ``POST /upload``: an image (form field ``file``, JPEG or PNG) is sent to the model server's V1 API
  (``POST {model_url}/v1/models/{model_name}:predict``, docs/PLATE_SPEC.md "Serving") and its reading shown:
  each plate's box drawn as an SVG overlay on the image, its text, score and validity listed. The model server
  logs the request to the monitor itself (``--log-url`` / KServe's payload logger), so the reading shows up under
  ``/readings`` once its events arrive (``/readings?sha256=...`` finds it);
- ``GET /readings``: recent readings with their images (when sampled), filtered by ``max_score`` (a plate
  scored at most this) and ``invalid`` (a plate whose text is not a canonical plate text);
- ``GET /readings/{id}``: one reading over its image, and the correction form: the true text of each plate, a
  plate marked false, missed plates (box as numbers, or drawn on the image with the mouse);
- ``GET /readings/{id}/image``: the stored image (404 when it was not sampled or is past the retention period);
- ``POST /corrections``: stores a correction (:meth:`PredictionLog.add_correction`) with who and when; the author
  is the ``kubeflow-userid`` header set by the Kubeflow profile's authentication when present, else the form's
  ``name``, else ``"local"``;
- ``GET /corrections``: the latest correction of each reading corrected since a date;
- ``GET /trends.svg``: valid-plate share, mean plate score and traffic per hour, with the served model's Test-step
  baseline drawn as a line (:mod:`alpr.monitoring.plots`).

Safety: every page is a Jinja2 template with autoescaping on (plate text may be HTML-shaped); pages carry a
Content-Security-Policy without inline scripts. Every form post must carry the CSRF token of the page it came from
(a random token in a ``SameSite=Strict`` cookie, repeated in the form: the double-submit pattern) and, when the
browser sends an ``Origin`` header, come from this site's own origin; otherwise 403. Bad input is a 4xx whose
message names the form field (``plate-0-text: 'X' is not a plate text ...``); nothing is stored then.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from alpr import spec
from alpr.monitoring import plots
from alpr.monitoring.store import CorrectionPlate, PredictionLog, PredictionNotFound, PredictionRecord

if TYPE_CHECKING:
    from starlette.datastructures import FormData

__all__ = [
    "AUTHOR_HEADER",
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "DEFAULT_AUTHOR",
    "MAX_UPLOAD_BYTES",
    "ReviewConfig",
    "ReviewError",
    "author_of",
    "image_kind",
    "ReadingFilters",
    "parse_correction",
    "parse_filters",
    "router",
]

#: The templates and the page's static files (package data).
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
#: Static files served under ``/static/<name>`` and their media types.
STATIC_FILES: Mapping[str, str] = {"review.css": "text/css; charset=utf-8", "review.js": "text/javascript"}
#: The header the Kubeflow profile's authentication (Istio + oauth2-proxy / dex) sets to the signed-in user's id.
AUTHOR_HEADER = "kubeflow-userid"
#: The author of a correction when neither the header nor the form names one.
DEFAULT_AUTHOR = "local"
#: Longest author name kept (characters).
MAX_AUTHOR_LENGTH = 128
#: Cookie and form field of the CSRF token.
CSRF_COOKIE = "alpr_review_csrf"
CSRF_FIELD = "csrf_token"
#: Largest image accepted by ``POST /upload``: the model server's own limit on one image
#: (``alpr.serving.codec.DEFAULT_MAX_IMAGE_BYTES``, 20 MiB; not imported: the monitor talks to it over HTTP only).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Room for the multipart framing and the other fields of an upload form, on top of the image.
_FORM_OVERHEAD_BYTES = 64 * 1024
#: Largest correction form accepted (bytes): a few kB per plate; 1 MB is far more than any real form.
MAX_FORM_BYTES = 1_000_000
#: Most missed plates one correction may add, and the empty rows the form shows for them.
MAX_MISSED_PLATES = 20
MISSED_ROWS_SHOWN = 3
#: Most read plates a correction form has fields for (the form parser's field limit is sized with it).
MAX_PLATES_SHOWN = 100
#: Longest plate text accepted before it is checked (a canonical text has :data:`alpr.spec.PLATE_LENGTH`).
MAX_TEXT_LENGTH = 32
#: Readings listed per page: default and most.
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: Readings searched for ``/readings?sha256=...`` (the latest ones; the log has no index by image).
SHA_SEARCH_WINDOW = 1000
#: Trend window: default and longest (hours).
DEFAULT_TREND_HOURS = 48
MAX_TREND_HOURS = 24 * 90
#: Seconds the monitor waits for the model server's answer to an upload (a CPU model takes ~1 s per image).
MODEL_TIMEOUT_S = 60.0
#: Sent with every HTML page: no inline script, images only from here (and the uploaded image as a data: URL).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"
# EXIF orientations that rotate by 90 or 270 degrees (tag 0x0112): the displayed image swaps width and height.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION_TAG = 0x0112


class ReviewConfig(Protocol):
    """What the review page reads of the monitor's configuration (``alpr.monitoring.app.MonitorConfig``)."""

    db_url: str
    storage_uri: str | None
    model_url: str | None
    model_name: str


class ReviewError(Exception):
    """Bad input or an unavailable dependency, shown as an error page.

    Attributes:
        status: the HTTP status (4xx for bad input, 502/503 for the model server).
        field: the form or query field at fault (``None`` when none is).
        message: what is wrong; ``str(error)`` is ``"<field>: <message>"``.
    """

    def __init__(self, status: int, field: str | None, message: str) -> None:
        self.status = status
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


# ---------------------------------------------------------------------------------------------------- helpers


def image_kind(data: bytes) -> str | None:
    """Return ``"jpeg"`` or ``"png"`` from the file signature of ``data``, or None for anything else."""
    if data.startswith(_JPEG):
        return "jpeg"
    if data.startswith(_PNG):
        return "png"
    return None


def _displayed_size(data: bytes, field: str) -> tuple[int, int]:
    """Return the ``(width, height)`` in pixels an image is shown (and read by the model, whose OpenCV decoder
    applies the EXIF orientation) at; ReviewError 400 naming ``field`` when Pillow cannot read it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            try:
                orientation = img.getexif().get(_EXIF_ORIENTATION_TAG)
            except Exception:  # a broken EXIF block: the pixels decide
                orientation = None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ReviewError(400, field, f"the file cannot be read as an image ({exc})") from None
    return (h, w) if orientation in _TRANSPOSING_ORIENTATIONS else (w, h)


def author_of(headers: Mapping[str, str], form_name: str | None) -> str:
    """Return who made a correction: the ``kubeflow-userid`` header (set by the Kubeflow profile's authentication)
    when present, else the form's name, else :data:`DEFAULT_AUTHOR`; stripped of control characters and cut to
    :data:`MAX_AUTHOR_LENGTH` characters."""
    for candidate in (headers.get(AUTHOR_HEADER), form_name):
        cleaned = "".join(ch for ch in (candidate or "") if ch.isprintable()).strip()
        if cleaned:
            return cleaned[:MAX_AUTHOR_LENGTH]
    return DEFAULT_AUTHOR


def _normalise_text(raw: str) -> str:
    """A typed plate text as stored: spaces and dashes removed, upper case (``"12a 3456"`` -> ``"12A3456"``)."""
    return "".join(ch for ch in raw if ch not in " -\t").upper()


def _check_text(field: str, raw: str) -> str:
    if len(raw) > MAX_TEXT_LENGTH:
        raise ReviewError(400, field, f"the text is {len(raw)} characters long; a plate text has {spec.PLATE_LENGTH}")
    text = _normalise_text(raw)
    if not text:
        raise ReviewError(400, field, "the plate text is empty")
    if not spec.is_valid_text(text):
        raise ReviewError(
            400,
            field,
            f"{raw!r} is not a plate text: 2 digits, a letter A-E and 4 digits, like 12A3456 "
            f"({spec.PLATE_PATTERN.pattern})",
        )
    return text


def _number(form: Mapping[str, Any], field: str) -> float:
    raw = form.get(field)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise ReviewError(400, field, "missing: a missed plate needs its box (x1, y1, x2, y2 in pixels)")
    if not isinstance(raw, str):
        raise ReviewError(400, field, "must be a number, not a file")
    try:
        value = float(raw)
    except ValueError:
        raise ReviewError(400, field, f"{raw[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise ReviewError(400, field, f"{raw[:40]!r} is not a finite number")
    return value


def _text_field(form: Mapping[str, Any], field: str) -> str:
    raw = form.get(field)
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise ReviewError(400, field, "must be text, not a file")
    return raw


def _check_box(prefix: str, box: tuple[float, float, float, float], width: int, height: int) -> None:
    x1, y1, x2, y2 = box
    if not x1 < x2:
        raise ReviewError(400, f"{prefix}-x2", f"x2 ({x2:g}) must be greater than x1 ({x1:g})")
    if not y1 < y2:
        raise ReviewError(400, f"{prefix}-y2", f"y2 ({y2:g}) must be greater than y1 ({y1:g})")
    for name, value, limit in (("x1", x1, width), ("y1", y1, height), ("x2", x2, width), ("y2", y2, height)):
        if not 0 <= value <= limit:
            raise ReviewError(
                400, f"{prefix}-{name}", f"{value:g} is outside the image (0 to {limit} pixels, {width}x{height})"
            )


def parse_correction(form: Mapping[str, Any], record: PredictionRecord) -> list[CorrectionPlate]:
    """Read a correction form for the reading ``record``.

    Fields, for each read plate ``i`` (from 0, in the reading's order): ``plate-<i>-text`` (its true text;
    empty or unchanged confirms the reading) and ``plate-<i>-false`` (present: not a plate at all). For each
    missed plate ``j`` (from 0, up to :data:`MAX_MISSED_PLATES`): ``missed-<j>-text`` and ``missed-<j>-x1``,
    ``-y1``, ``-x2``, ``-y2`` (pixels of the image; a row left entirely empty is skipped).

    Args:
        form: the posted fields.
        record: the reading being corrected (its plates' boxes are taken from it, never from the form).

    Returns:
        one plate per read plate (status ``confirmed``, ``corrected`` or ``false``, the read box) followed by the
        missed plates (status ``missed``).

    Raises:
        ReviewError: 400 naming the field: a text that is not a canonical plate text (PLATE_SPEC "The plate"),
            a kept read plate whose read text is not one and no true text given, a missed plate without text or
            with a box missing, not a number, empty or outside the image, a field for a plate the reading lacks.
    """
    plates: list[CorrectionPlate] = []
    n = len(record.plates)
    for key in form:
        for prefix, limit in (("plate-", n), ("missed-", MAX_MISSED_PLATES)):
            if key.startswith(prefix):
                index = key[len(prefix) :].split("-", 1)[0]
                if not index.isdigit() or int(index) >= limit:
                    if prefix == "plate-":
                        what = f"reading {record.id} has {n} plate(s)"
                    else:
                        what = f"at most {MAX_MISSED_PLATES} missed plates per correction"
                    raise ReviewError(400, key, f"no such plate: {what}")
    for i, read in enumerate(record.plates):
        field = f"plate-{i}-text"
        if form.get(f"plate-{i}-false") is not None:
            plates.append(CorrectionPlate(box=tuple(read.box), text=read.text, status="false"))
            continue
        raw = _text_field(form, field).strip()
        if not raw or _normalise_text(raw) == read.text:
            if not spec.is_valid_text(read.text):
                raise ReviewError(
                    400,
                    field,
                    f"the read text {read.text!r} is not a plate text: type the true text, or mark the plate false",
                )
            plates.append(CorrectionPlate(box=tuple(read.box), text=read.text, status="confirmed"))
        else:
            plates.append(CorrectionPlate(box=tuple(read.box), text=_check_text(field, raw), status="corrected"))
    for j in range(MAX_MISSED_PLATES):
        prefix = f"missed-{j}"
        names = [f"{prefix}-{k}" for k in ("text", "x1", "y1", "x2", "y2")]
        if all(not _text_field(form, name).strip() for name in names):
            continue
        text = _check_text(names[0], _text_field(form, names[0]).strip())
        box = tuple(_number(form, name) for name in names[1:])
        _check_box(prefix, box, record.width, record.height)  # type: ignore[arg-type]
        plates.append(CorrectionPlate(box=box, text=text, status="missed"))
    return plates


@dataclass(frozen=True)
class ReadingFilters:
    """The filters of the readings list: at most ``limit`` rows, readings with a plate scored at most
    ``max_score``, readings with an invalid text (``invalid``), readings of the image ``sha256``."""

    limit: int = DEFAULT_LIMIT
    max_score: float | None = None
    invalid: bool = False
    sha256: str | None = None


def parse_filters(*, limit: str = "", max_score: str = "", invalid: str = "", sha256: str = "") -> ReadingFilters:
    """Read the query of ``GET /readings`` (an empty value is the default, as a browser sends an empty field).

    Raises:
        ReviewError: 400 naming the parameter: ``limit`` not an integer in 1..:data:`MAX_LIMIT`, ``max_score``
            not a number in [0, 1], ``invalid`` not a boolean word, ``sha256`` not 64 lower-case hex digits.
    """
    out: dict[str, Any] = {}
    if limit.strip():
        if not limit.strip().isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
            raise ReviewError(400, "limit", f"{limit[:40]!r} is not a whole number from 1 to {MAX_LIMIT}")
        out["limit"] = int(limit)
    if max_score.strip():
        try:
            score = float(max_score)
        except ValueError:
            score = math.nan
        if not 0.0 <= score <= 1.0:
            raise ReviewError(400, "max_score", f"{max_score[:40]!r} is not a score from 0 to 1")
        out["max_score"] = score
    if invalid.strip():
        word = invalid.strip().lower()
        if word not in ("1", "true", "on", "yes", "0", "false", "off", "no"):
            raise ReviewError(400, "invalid", f"{invalid[:40]!r} is not true or false")
        out["invalid"] = word in ("1", "true", "on", "yes")
    if sha256.strip():
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ReviewError(400, "sha256", f"{sha256[:80]!r} is not 64 lower-case hex digits")
        out["sha256"] = sha256
    return ReadingFilters(**out)


def _same_origin(request: Request) -> bool:
    """Whether the request's ``Origin`` (when the browser sent one) is this site (its Host or forwarded host)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    host = urlsplit(origin).netloc.lower()
    own = {request.headers.get("host", "").lower(), request.headers.get("x-forwarded-host", "").lower()}
    return host in own - {""}


def _check_csrf(request: Request, form: Mapping[str, Any] | None) -> None:
    """Refuse a cross-site post: 403 unless the origin is this site and the form's token is the cookie's."""
    if not _same_origin(request):
        raise ReviewError(403, None, f"cross-site request refused (Origin {request.headers.get('origin')!r})")
    if form is None:
        return
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
        raise ReviewError(403, CSRF_FIELD, "missing or wrong CSRF token: reload the page and send the form again")


def _declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    return int(raw) if raw is not None and raw.isdigit() else None


# ---------------------------------------------------------------------------------------------------- views


@dataclass(frozen=True)
class _PlateView:
    """One plate as the templates draw it (pixels of the image)."""

    index: int
    text: str
    valid: bool
    score: float | None
    layout: str
    x: float
    y: float
    w: float
    h: float
    status: str = ""


def _plate_views(plates: Any) -> list[_PlateView]:
    """Plate views from reading dicts (``{"text", "valid", "score", "layout", "box"}``), PlateRecords or
    CorrectionPlates (no score or layout; validity from the text)."""
    out = []
    for i, p in enumerate(plates):
        get = p.get if isinstance(p, dict) else (lambda k, p=p: getattr(p, k, None))
        x1, y1, x2, y2 = (float(v) for v in get("box"))
        out.append(
            _PlateView(
                index=i,
                text=str(get("text") or ""),
                valid=bool(get("valid")) if get("valid") is not None else spec.is_valid_text(str(get("text") or "")),
                score=None if get("score") is None else float(get("score")),
                layout=str(get("layout") or ""),
                x=x1,
                y=y1,
                w=max(x2 - x1, 0.0),
                h=max(y2 - y1, 0.0),
                status=str(get("status") or ""),
            )
        )
    return out


class _Pages:
    """Renders the templates (autoescape on) with the helpers every page uses."""

    def __init__(self) -> None:
        import jinja2

        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        token = request.cookies.get(CSRF_COOKIE, "")
        fresh = len(token) < 32 or not token.replace("-", "").replace("_", "").isalnum()
        if fresh:
            token = secrets.token_urlsafe(32)

        def url(route: str, query: Mapping[str, Any] | None = None, **params: Any) -> str:
            base = str(request.url_for(route, **params).path)
            root = request.scope.get("root_path", "")
            if root and not base.startswith(root):
                base = root.rstrip("/") + base
            q = {k: v for k, v in (query or {}).items() if v is not None and v != ""}
            return base + (f"?{urlencode(q)}" if q else "")

        html = self.env.get_template(name).render(
            url=url, csrf_field=CSRF_FIELD, csrf_token=token, request=request, **context
        )
        response = HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)
        if fresh:
            response.set_cookie(
                CSRF_COOKIE,
                token,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
                path="/",
            )
        return response

    def error(self, request: Request, exc: ReviewError) -> HTMLResponse:
        return self.render(
            request, "error.html", status=exc.status, field=exc.field, message=exc.message, status_code=exc.status
        )


# ---------------------------------------------------------------------------------------------------- model server


async def _read_image(config: ReviewConfig, data: bytes) -> dict[str, Any]:
    """Send ``data`` to the model server's V1 API; return its reading (``{"plates": [...]}``).

    Raises:
        ReviewError: 503 when no model server is configured, 502 when it cannot be reached or answers
            something that is not a reading, 400 with its message when it refuses the image.
    """
    import httpx

    if not config.model_url:
        raise ReviewError(503, None, "no model server configured: start the monitor with --model-url")
    url = f"{config.model_url.rstrip('/')}/v1/models/{config.model_name}:predict"
    body = {"instances": [{"image_bytes": {"b64": base64.b64encode(data).decode("ascii")}}]}
    try:
        async with httpx.AsyncClient(timeout=MODEL_TIMEOUT_S, trust_env=False) as client:
            response = await client.post(url, json=body)
    except httpx.HTTPError as exc:
        raise ReviewError(502, None, f"the model server at {url} cannot be reached: {exc!r}") from None
    if 400 <= response.status_code < 500:
        try:
            detail = response.json().get("error") or response.text
        except ValueError:
            detail = response.text
        raise ReviewError(400, "file", f"the model server refused the image: {str(detail)[:500]}")
    if response.status_code != 200:
        raise ReviewError(502, None, f"the model server at {url} answered HTTP {response.status_code}")
    try:
        reading = response.json()["predictions"][0]
        _plate_views(reading["plates"])  # checks the shape: every plate has a 4-number box
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ReviewError(502, None, f"the model server's answer is not a reading ({exc!r})") from None
    return reading


# ---------------------------------------------------------------------------------------------------- router


def router(config: ReviewConfig, *, store: PredictionLog | None = None) -> APIRouter:
    """Return the review page's routes (see the module docstring) for the monitor's ``config``.

    Args:
        config: the monitor's configuration (``db_url``, ``storage_uri``, ``model_url``, ``model_name``).
        store: the prediction log to read and write; by default one is opened on ``config.db_url`` and
            ``config.storage_uri``.
    """
    log = store if store is not None else PredictionLog(config.db_url, config.storage_uri)
    pages = _Pages()
    r = APIRouter()

    def fail(request: Request, exc: ReviewError) -> HTMLResponse:
        return pages.error(request, exc)

    @r.get("/", response_class=HTMLResponse, name="review_index")
    def index(request: Request, hours: int = Query(DEFAULT_TREND_HOURS, ge=1, le=MAX_TREND_HOURS)):
        return pages.render(request, "index.html", hours=hours, model_url=config.model_url)

    @r.get("/static/{name}", name="review_static")
    def static(name: str):
        if name not in STATIC_FILES:
            return Response(f"no static file {name!r}", status_code=404, media_type="text/plain")
        return Response(
            (TEMPLATES_DIR / "static" / name).read_bytes(),
            media_type=STATIC_FILES[name],
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=3600"},
        )

    @r.post("/upload", response_class=HTMLResponse, name="review_upload")
    async def upload(request: Request):
        try:
            length = _declared_length(request)
            if length is not None and length > MAX_UPLOAD_BYTES + _FORM_OVERHEAD_BYTES:
                raise ReviewError(413, "file", f"the upload is {length} bytes; images up to {MAX_UPLOAD_BYTES}")
            _check_csrf(request, None)
            form = await _form(request, max_files=1, max_fields=5)
            _check_csrf(request, form)
            file = form.get("file")
            if file is None or isinstance(file, str):
                raise ReviewError(400, "file", "no image file was sent (choose a JPEG or PNG file)")
            data = await file.read(MAX_UPLOAD_BYTES + 1)
            if len(data) > MAX_UPLOAD_BYTES:
                raise ReviewError(413, "file", f"the image is over {MAX_UPLOAD_BYTES} bytes")
            if not data:
                raise ReviewError(400, "file", "the file is empty")
            kind = image_kind(data)
            if kind is None:
                raise ReviewError(400, "file", "not a JPEG or PNG image (its first bytes are neither signature)")
            width, height = await run_in_threadpool(_displayed_size, data, "file")
            reading = await _read_image(config, data)
        except ReviewError as exc:
            return fail(request, exc)
        sha = hashlib.sha256(data).hexdigest()
        return pages.render(
            request,
            "upload.html",
            image_src=f"data:image/{kind};base64,{base64.b64encode(data).decode('ascii')}",
            width=width,
            height=height,
            plates=_plate_views(reading["plates"]),
            sha256=sha,
            file_name=getattr(file, "filename", "") or "",
        )

    @r.get("/readings", response_class=HTMLResponse, name="review_readings")
    def readings(
        request: Request,
        limit: str = "",
        max_score: str = "",
        invalid: str = "",
        sha256: str = "",
    ):
        try:
            filters = parse_filters(limit=limit, max_score=max_score, invalid=invalid, sha256=sha256)
        except ReviewError as exc:
            return fail(request, exc)
        window = SHA_SEARCH_WINDOW if filters.sha256 else filters.limit
        rows = log.recent(window, max_score=filters.max_score, invalid_only=filters.invalid)
        if filters.sha256:
            rows = [row for row in rows if row.image_sha256 == filters.sha256][: filters.limit]
        return pages.render(
            request,
            "readings.html",
            rows=[(row, _plate_views(row.plates)) for row in rows],
            limit=filters.limit,
            max_score=filters.max_score,
            invalid=filters.invalid,
            sha256=filters.sha256,
        )

    @r.get("/readings/{prediction_id}", response_class=HTMLResponse, name="review_reading")
    def reading(request: Request, prediction_id: int, saved: int | None = None):
        try:
            row = log.get(prediction_id)
        except PredictionNotFound as exc:
            return fail(request, ReviewError(404, "prediction_id", str(exc)))
        earlier = [c for rec, c in log.corrections_since(row.received_at) if rec.id == prediction_id]
        return pages.render(
            request,
            "reading.html",
            row=row,
            plates=_plate_views(row.plates),
            corrections=[(c, _plate_views(c.plates)) for c in earlier],
            saved=saved,
            missed_rows=range(MISSED_ROWS_SHOWN),
        )

    @r.get("/readings/{prediction_id}/image", name="review_image")
    def image(prediction_id: int):
        try:
            data = log.image(prediction_id)
        except PredictionNotFound as exc:
            return Response(str(exc), status_code=404, media_type="text/plain")
        if data is None:
            return Response(
                f"the image of reading {prediction_id} is not stored (not sampled, or removed after the retention "
                "period)",
                status_code=404,
                media_type="text/plain",
            )
        kind = image_kind(data)
        return Response(
            data,
            media_type=f"image/{kind}" if kind else "application/octet-stream",
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"},
        )

    @r.post("/corrections", name="review_correct")
    async def correct(request: Request):
        try:
            length = _declared_length(request)
            if length is not None and length > MAX_FORM_BYTES:
                raise ReviewError(413, None, f"the form is {length} bytes; at most {MAX_FORM_BYTES}")
            _check_csrf(request, None)
            form = await _form(request, max_files=0, max_fields=20 + 8 * MAX_MISSED_PLATES + 4 * MAX_PLATES_SHOWN)
            _check_csrf(request, form)
            raw_id = _text_field(form, "prediction_id").strip()
            if not raw_id.isdigit():
                raise ReviewError(400, "prediction_id", f"{raw_id[:40]!r} is not a reading id")
            prediction_id = int(raw_id)
            try:
                row = await run_in_threadpool(log.get, prediction_id)
            except PredictionNotFound as exc:
                raise ReviewError(404, "prediction_id", str(exc)) from None
            plates = parse_correction(form, row)
            author = author_of(request.headers, _text_field(form, "name"))
            try:
                saved = await run_in_threadpool(log.add_correction, prediction_id, author, plates)
            except ValueError as exc:
                raise ReviewError(400, None, str(exc)) from None
        except ReviewError as exc:
            return fail(request, exc)
        target = str(request.url_for("review_reading", prediction_id=prediction_id).path)
        return RedirectResponse(f"{target}?{urlencode({'saved': saved.id})}", status_code=303)

    @r.get("/corrections", response_class=HTMLResponse, name="review_corrections")
    def corrections(request: Request, days: int = Query(7, ge=1, le=3650)):
        since = datetime.now(UTC) - timedelta(days=days)
        pairs = log.corrections_since(since)
        pairs.sort(key=lambda pair: pair[1].created_at, reverse=True)
        return pages.render(
            request,
            "corrections.html",
            days=days,
            items=[(rec, c, _plate_views(c.plates)) for rec, c in pairs],
        )

    @r.get("/trends.svg", name="review_trends")
    def trends(hours: int = Query(DEFAULT_TREND_HOURS, ge=1, le=MAX_TREND_HOURS)):
        now = datetime.now(UTC)
        since = now - timedelta(hours=hours)
        points = log.hourly_trend(since)
        latest = log.recent(1)
        baseline = log.baseline(latest[0].model_version) if latest else None
        version = latest[0].model_version if latest else None
        svg = plots.trend_svg(points, baseline, since=since, until=now, model_version=version)
        return Response(
            svg,
            media_type="image/svg+xml",
            headers={
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            },
        )

    return r


async def _form(request: Request, *, max_files: int, max_fields: int) -> FormData:
    """Parse the posted form with limits; ReviewError 400 when it is not a form or breaks a limit."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise ReviewError(415, None, f"expected a form (multipart/form-data), got {content_type[:80]!r}")
    try:
        return await request.form(max_files=max_files, max_fields=max_fields)
    except Exception as exc:  # starlette raises HTTPException / MultiPartException with the reason
        detail = getattr(exc, "detail", None) or getattr(exc, "message", None) or str(exc)
        raise ReviewError(400, None, f"the form cannot be read: {detail}") from None
