"""The Test step's visual report: one self-contained HTML page with annotated thumbnails.

:func:`write_report` writes ``out_dir/index.html`` and ``out_dir/images/*.jpg``: the page links only to those
files (relative links), has its CSS inline and loads nothing from the network, so the folder can be copied to a
bucket, a KFP artifact or a laptop and opened as is. Every text on the page (plate texts, file names, metric
names, lineage) goes through Jinja2 autoescaping: texts come from files and model outputs.

:func:`render_detections` draws one reading (PLATE_SPEC "A reading") on an image; the report uses it for the
thumbnails and other code (TensorBoard image logging) calls it directly.

Colours: a predicted plate is green when it matches a ground-truth plate (PLATE_SPEC matching: one-to-one,
greedy by score, IoU >= 0.5) with exactly the same text, red otherwise, and amber when no ground truth was given
(nothing to judge against). Character boxes are thin lines in their plate's colour. Ground-truth plates are
dashed blue boxes with their text below.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from alpr.model.metrics import match_plates

__all__ = ["ReportEntry", "render_detections", "write_report", "THUMBNAIL_MAX_SIDE"]

#: Longest side of a report thumbnail, in pixels.
THUMBNAIL_MAX_SIDE = 640
_JPEG_QUALITY = 85

GREEN = (0, 190, 60)
RED = (230, 30, 30)
AMBER = (255, 176, 0)  # predictions drawn without ground truth
TRUTH_BLUE = (30, 120, 255)


@dataclass
class ReportEntry:
    """One test image for the report.

    Attributes:
        image_path: the image file (any format Pillow reads); boxes are in its pixel grid.
        truth: ground-truth plates, each ``{"box": [x1, y1, x2, y2], "text": str, "layout": str}`` (pixels).
        reading: the model's reading (PLATE_SPEC "A reading"): ``{"plates": [{"text", "layout", "valid", "box",
            "score", "characters": [{"char", "box", "score"}, ...]}, ...]}``.
    """

    image_path: Path
    truth: list[dict] = field(default_factory=list)
    reading: dict = field(default_factory=lambda: {"plates": []})


# -- helpers on loosely-typed readings -----------------------------------------------------------------------
def _box(value: Any) -> tuple[float, float, float, float] | None:
    """Return ``value`` as a finite ``(x1, y1, x2, y2)`` tuple (pixels), or None when it is not one."""
    try:
        x1, y1, x2, y2 = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def _score(value: Any) -> float:
    """Return ``value`` as a float score, NaN when missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _plates(reading: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The plates of a reading (an empty list for None or a reading without ``plates``)."""
    if not reading:
        return []
    return [p for p in (reading.get("plates") or []) if isinstance(p, Mapping)]


def _exact_predictions(truth: Sequence[Mapping[str, Any]], plates: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    """Match plates to truth (PLATE_SPEC); return {predicted index: truth index} for the exact-text matches only.

    Plates or truths without a usable box never match (an empty box has IoU 0).
    """
    empty = (0.0, 0.0, 0.0, 0.0)
    pairs = match_plates(
        [(_box(t.get("box")) or empty, str(t.get("text", ""))) for t in truth],
        [(_box(p.get("box")) or empty, str(p.get("text", "")), _score(p.get("score"))) for p in plates],
    )
    return {j: i for i, j in pairs if str(truth[i].get("text", "")) == str(plates[j].get("text", ""))}


# -- drawing -------------------------------------------------------------------------------------------------
def _to_pil(image: np.ndarray | Path | str | Image.Image) -> Image.Image:
    """Return ``image`` as an RGB Pillow image.

    Arrays are ``H x W`` (grey) or ``H x W x C`` with C = 1, 3 (RGB order) or 4 (RGBA); uint8 as is, floats in
    [0, 1] scaled by 255 (other floats and integers clipped to 0..255), bool as 0/255.

    Raises:
        FileNotFoundError: a path that does not exist.
        PIL.UnidentifiedImageError / OSError: a file Pillow cannot decode.
        ValueError: an array of another shape.
    """
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as im:
            return im.convert("RGB")
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))) or arr.size == 0:
        raise ValueError(f"expected an H x W or H x W x 3/4 image array, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        finite = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if finite.max(initial=0.0) <= 1.0:
            finite = finite * 255.0
        arr = np.clip(np.rint(finite), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at ``size`` pixels (the bitmap default where FreeType is unavailable)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # very old Pillow or no FreeType
        return ImageFont.load_default()


def _drawable(text: Any, limit: int = 32) -> str:
    """Text safe for the built-in font: printable ASCII only (others -> ``?``), at most ``limit`` characters."""
    s = "".join(c if " " <= c <= "~" else "?" for c in str(text))
    return s if len(s) <= limit else s[: limit - 1] + "~"


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: Sequence[float], colour, width: int) -> None:
    """Draw a dashed rectangle (dashes 4 x width long, gaps 3 x width)."""
    x1, y1, x2, y2 = box
    dash, gap = 4 * width, 3 * width
    for (ax, ay), (bx, by) in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = math.hypot(bx - ax, by - ay)
        if length == 0:
            continue
        ux, uy = (bx - ax) / length, (by - ay) / length
        pos = 0.0
        while pos < length:
            end = min(pos + dash, length)
            draw.line([(ax + ux * pos, ay + uy * pos), (ax + ux * end, ay + uy * end)], fill=colour, width=width)
            pos = end + gap


def _label(
    draw: ImageDraw.ImageDraw,
    text: str,
    anchor_box: Sequence[float],
    colour,
    font,
    *,
    below: bool,
    size: tuple[int, int],
) -> None:
    """Draw ``text`` on a filled ``colour`` tag just above (or ``below``) ``anchor_box``, kept inside the image."""
    if not text:
        return
    width, height = size
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tw, th = right - left + 4, bottom - top + 4
    x1, y1, x2, y2 = anchor_box
    x = min(max(x1, 0), max(width - tw, 0))
    y = y2 + 1 if below else y1 - th - 1
    if y < 0 or y + th > height:  # no room outside the box: put the tag just inside it
        y = y2 - th - 1 if below else y1 + 1
    y = min(max(y, 0), max(height - th, 0))
    draw.rectangle([x, y, x + tw, y + th], fill=colour)
    ink = (0, 0, 0) if sum(colour) > 400 else (255, 255, 255)
    draw.text((x + 2 - left, y + 2 - top), text, fill=ink, font=font)


def render_detections(
    image: np.ndarray | Path | str | Image.Image,
    reading: Mapping[str, Any] | None,
    truth: Sequence[Mapping[str, Any]] | None = None,
    *,
    max_side: int | None = None,
) -> Image.Image:
    """Draw a reading (and optionally the ground truth) on an image.

    Each predicted plate gets its box (green: matches a ground-truth plate with exactly the same text; red:
    does not; amber: ``truth`` is None) with a ``TEXT score`` tag, and its character boxes as thin lines.
    Ground-truth plates are dashed blue boxes with their text below. Plates without a finite box are skipped;
    an empty or None reading draws nothing but the truth.

    Args:
        image: an ``H x W x 3`` RGB (note: OpenCV images are BGR, convert them first), ``H x W`` grey or
            ``H x W x 4`` RGBA array (uint8, or floats in [0, 1]), a Pillow image, or an image file path.
            The reading's boxes are in this image's pixels.
        reading: a PLATE_SPEC reading ``{"plates": [...]}``.
        truth: ground-truth plates ``[{"box", "text", "layout"}, ...]``; None when unknown.
        max_side: when given, the image is first shrunk so its longer side is at most this many pixels and
            the boxes are scaled to match (sharper tags than shrinking a drawn image); None keeps the original size.

    Returns:
        A new RGB Pillow image, of the original size unless ``max_side`` shrank it.

    Raises:
        FileNotFoundError, OSError: ``image`` is a path that cannot be read or decoded.
        ValueError: ``image`` is an array of another shape, or ``max_side`` < 1.
    """
    canvas = _to_pil(image).copy()
    scale = 1.0
    if max_side is not None:
        if max_side < 1:
            raise ValueError(f"max_side must be >= 1 pixel, got {max_side}")
        long_side = max(canvas.size)
        if long_side > max_side:
            scale = max_side / long_side
            new_size = (max(1, round(canvas.width * scale)), max(1, round(canvas.height * scale)))
            canvas = canvas.resize(new_size, Image.Resampling.LANCZOS)
    size = canvas.size
    long_side = max(size)
    line = max(1, round(long_side / 320))
    thin = max(1, line // 2)
    font = _font(max(10, round(long_side / 45)))
    draw = ImageDraw.Draw(canvas)

    def scaled(value: Any) -> tuple[float, float, float, float] | None:
        b = _box(value)
        return None if b is None else tuple(v * scale for v in b)  # type: ignore[return-value]

    plates = _plates(reading)
    truth_list = [t for t in (truth or []) if isinstance(t, Mapping)]
    exact = _exact_predictions(truth_list, plates) if truth is not None else {}

    for t in truth_list:
        b = scaled(t.get("box"))
        if b is None:
            continue
        _dashed_rectangle(draw, b, TRUTH_BLUE, line)
        _label(draw, _drawable(t.get("text", "")), b, TRUTH_BLUE, font, below=True, size=size)

    # Lowest score first, so the most confident plate ends up on top.
    def draw_key(j: int) -> float:
        score = _score(plates[j].get("score"))
        return -math.inf if math.isnan(score) else score

    order = sorted(range(len(plates)), key=draw_key)
    for j in order:
        plate = plates[j]
        b = scaled(plate.get("box"))
        if b is None:
            continue
        colour = AMBER if truth is None else (GREEN if j in exact else RED)
        for ch in plate.get("characters") or []:
            cb = scaled(ch.get("box")) if isinstance(ch, Mapping) else None
            if cb is not None:
                draw.rectangle(cb, outline=colour, width=thin)
        draw.rectangle(b, outline=colour, width=line)
        text = str(plate.get("text", "")) or "(no text)"
        score = _score(plate.get("score"))
        tag = f"{_drawable(text)} {score:.2f}" if not math.isnan(score) else _drawable(text)
        _label(draw, tag, b, colour, font, below=False, size=size)
    return canvas


# -- the page ------------------------------------------------------------------------------------------------
_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem; color: #222; }
h1 { margin-top: 0; }
table { border-collapse: collapse; margin-bottom: 1.5rem; }
th, td { border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.mistake { background: #fff1f1; }
tr.correct { background: #f3fff4; }
.ok { color: #0a8f2c; font-weight: bold; }
.bad { color: #c81e1e; font-weight: bold; }
.plate { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; }
.muted { color: #777; }
img.thumb { max-width: 640px; max-height: 640px; display: block; }
.legend span { display: inline-block; padding: 0 .4rem; margin-right: .6rem; border: 2px solid; }
ul.plates { margin: 0; padding-left: 1.1rem; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="muted">Generated {{ generated }}.</p>

<h2>Summary</h2>
<table class="summary">
<tr><th>images</th><td class="num">{{ summary.images }}</td></tr>
<tr><th>images read exactly</th><td class="num">{{ summary.images_exact }}</td></tr>
<tr><th>images with mistakes</th><td class="num">{{ summary.images_mistakes }}</td></tr>
<tr><th>ground-truth plates</th><td class="num">{{ summary.truth_plates }}</td></tr>
<tr><th>exact reads</th><td class="num">{{ summary.exact_reads }} / {{ summary.truth_plates }}</td></tr>
<tr><th>predicted plates</th><td class="num">{{ summary.predicted_plates }}</td></tr>
</table>

<h2>Metrics</h2>
{% if metrics %}
<table class="metrics">
<tr><th>metric</th><th>value</th></tr>
{% for name, value in metrics %}<tr><td>{{ name }}</td><td class="num">{{ value }}</td></tr>
{% endfor %}
</table>
{% else %}<p class="muted">No metrics.</p>{% endif %}

{% if lineage %}
<h2>Lineage</h2>
<table class="lineage">
<tr><th>key</th><th>value</th></tr>
{% for key, value in lineage %}<tr><td>{{ key }}</td><td><code>{{ value }}</code></td></tr>
{% endfor %}
</table>
{% endif %}

<h2>Images</h2>
<p class="legend">Boxes: <span style="border-color: rgb{{ colours.green }}">read exactly</span>
<span style="border-color: rgb{{ colours.red }}">wrong / unmatched</span>
<span style="border-color: rgb{{ colours.truth }}; border-style: dashed">ground truth</span>
Mistakes are listed first.{% if omitted %} Thumbnails are drawn for the first {{ max_images }} images only.{% endif %}</p>
{% if rows %}
<table class="images">
<tr><th>#</th><th>image</th><th>ground truth</th><th>read</th><th>exact</th></tr>
{% for row in rows %}
<tr class="{{ 'correct' if row.exact else 'mistake' }}">
<td class="num">{{ loop.index }}</td>
<td>
{% if row.thumbnail %}<a href="{{ row.thumbnail }}"><img class="thumb" src="{{ row.thumbnail }}" alt="{{ row.name }}" loading="lazy"></a>
{% elif row.error %}<span class="bad">image could not be drawn: {{ row.error }}</span>
{% else %}<span class="muted">not drawn (max_images = {{ max_images }})</span>{% endif %}
<div class="muted" title="{{ row.path }}">{{ row.name }}</div>
</td>
<td>{% if row.truth %}<ul class="plates">{% for t in row.truth %}
<li><span class="plate">{{ t.text }}</span> <span class="muted">{{ t.layout }}</span>
{% if t.exact %}<span class="ok">&#10003;</span>{% else %}<span class="bad">&#10007;</span>{% endif %}</li>{% endfor %}
</ul>{% else %}<span class="muted">no plate</span>{% endif %}</td>
<td>{% if row.read %}<ul class="plates">{% for p in row.read %}
<li><span class="plate {{ 'ok' if p.exact else 'bad' }}">{{ p.text }}</span> <span class="muted">{{ p.layout }}
score {{ p.score }}{% if not p.valid %}, invalid text{% endif %}</span></li>{% endfor %}
</ul>{% else %}<span class="muted">no plate read</span>{% endif %}</td>
<td>{% if row.exact %}<span class="ok">&#10003;</span>{% else %}<span class="bad">&#10007;</span>{% endif %}</td>
</tr>
{% endfor %}
</table>
{% else %}<p class="muted">No images.</p>{% endif %}
</body>
</html>
"""


def _format_value(value: Any) -> str:
    """Format a metric value: floats with 4 decimals (``NaN`` / ``inf`` spelled out), others as ``str``."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return f"{number:.4f}"


def _format_lineage(value: Any) -> str:
    """Format a lineage value: strings as is, anything else as compact JSON (``str`` for the unserialisable)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def _safe_name(name: str, limit: int = 60) -> str:
    """A file-name-safe version of ``name`` (``[A-Za-z0-9._-]`` only, at most ``limit`` characters)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"
    return cleaned[:limit]


def _analyse(entry: ReportEntry) -> dict[str, Any]:
    """Compare one entry's reading with its truth: per-plate rows and whether the image was read exactly.

    An image is read exactly when every ground-truth plate is matched (PLATE_SPEC) with exactly its text and
    no other plate was read; an image with no plate and no reading counts as exact.
    """
    truth = [t for t in (entry.truth or []) if isinstance(t, Mapping)]
    plates = _plates(entry.reading)
    exact = _exact_predictions(truth, plates)
    exact_truth = set(exact.values())
    truth_rows = [
        {"text": str(t.get("text", "")), "layout": str(t.get("layout", "") or ""), "exact": i in exact_truth}
        for i, t in enumerate(truth)
    ]
    read_rows = []
    for j, p in enumerate(plates):
        score = _score(p.get("score"))
        read_rows.append(
            {
                "text": str(p.get("text", "")) or "(no text)",
                "layout": str(p.get("layout", "") or ""),
                "score": "n/a" if math.isnan(score) else f"{score:.2f}",
                "valid": bool(p.get("valid", True)),
                "exact": j in exact,
            }
        )
    return {
        "truth": truth_rows,
        "read": read_rows,
        "n_exact": len(exact_truth),
        "exact": len(exact) == len(truth) == len(plates),
    }


def write_report(
    out_dir: Path,
    entries: Sequence[ReportEntry],
    metrics: Mapping[str, float],
    *,
    title: str,
    lineage: Mapping[str, Any] | None = None,
    max_images: int = 200,
) -> Path:
    """Write the HTML report of a test run into ``out_dir`` and return ``out_dir/index.html``.

    The page shows the title, a summary (images, images read exactly, ground-truth plates, exact reads,
    predicted plates), the metrics table, the lineage table (when given) and one row per image: an annotated
    thumbnail (see :func:`render_detections`; JPEG, longest side <= :data:`THUMBNAIL_MAX_SIDE` pixels, in
    ``out_dir/images/``), the ground-truth texts, the read texts and an exact ✓/✗. Images with mistakes come
    first, each group in input order. Thumbnails are drawn for the first ``max_images`` rows only (so mistakes
    get them first); every image still gets its row. An image that cannot be read gets a row with the error
    instead of a thumbnail. Earlier ``*.jpg`` files in ``out_dir/images/`` are removed.

    Args:
        out_dir: the report folder (created if missing).
        entries: the test images with their ground truth and readings.
        metrics: metric name -> value (e.g. ``eir``, ``plate_precision``, ``char_accuracy``, ``mAP``).
        title: the page title.
        lineage: optional provenance (dataset version, git revision, config hash, model URI, ...).
        max_images: the most thumbnails to draw (>= 0).

    Returns:
        The path of ``index.html``.

    Raises:
        ValueError: ``max_images`` < 0.
    """
    from jinja2 import Environment

    if max_images < 0:
        raise ValueError(f"max_images must be >= 0, got {max_images}")
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    for stale in images_dir.glob("*.jpg"):
        stale.unlink()

    analysed = [(index, entry, _analyse(entry)) for index, entry in enumerate(entries)]
    analysed.sort(key=lambda item: (item[2]["exact"], item[0]))  # mistakes first, stable

    rows = []
    for position, (index, entry, result) in enumerate(analysed):
        path = Path(entry.image_path)
        row = {
            "name": path.name,
            "path": str(path),
            "truth": result["truth"],
            "read": result["read"],
            "exact": result["exact"],
            "thumbnail": None,
            "error": None,
        }
        if position < max_images:
            thumb_name = f"{index:05d}_{_safe_name(path.stem)}.jpg"
            try:
                picture = render_detections(path, entry.reading, entry.truth, max_side=THUMBNAIL_MAX_SIDE)
                picture.save(images_dir / thumb_name, "JPEG", quality=_JPEG_QUALITY)
                row["thumbnail"] = f"images/{thumb_name}"
            except (OSError, ValueError) as exc:  # unreadable image: report it, keep going
                row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)

    summary = {
        "images": len(analysed),
        "images_exact": sum(1 for _, _, r in analysed if r["exact"]),
        "images_mistakes": sum(1 for _, _, r in analysed if not r["exact"]),
        "truth_plates": sum(len(r["truth"]) for _, _, r in analysed),
        "exact_reads": sum(r["n_exact"] for _, _, r in analysed),
        "predicted_plates": sum(len(r["read"]) for _, _, r in analysed),
    }
    env = Environment(autoescape=True, keep_trailing_newline=True)
    html = env.from_string(_TEMPLATE).render(
        title=title,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        summary=summary,
        metrics=[(str(k), _format_value(v)) for k, v in (metrics or {}).items()],
        lineage=[(str(k), _format_lineage(v)) for k, v in (lineage or {}).items()],
        rows=rows,
        max_images=max_images,
        omitted=len(rows) > max_images,
        colours={"green": GREEN, "red": RED, "truth": TRUTH_BLUE},
    )
    index = out_dir / "index.html"
    tmp = out_dir / ".index.html.tmp"
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, index)
    return index


_LOCAL_IMAGE_REF = re.compile(r'(src|href)="(images/[^"/]+\.jpg)"')


def self_contained_html(report_dir: Path) -> str:
    """The report's ``index.html`` with every thumbnail inlined as a ``data:image/jpeg;base64`` URI.

    For viewers that show a single file (the Kubeflow Pipelines UI renders an HTML artifact on its own, without
    the folder beside it). Links to thumbnails that do not exist are left as they are.

    Raises:
        FileNotFoundError: ``report_dir/index.html`` does not exist.
    """
    import base64

    report_dir = Path(report_dir)
    html = (report_dir / "index.html").read_text(encoding="utf-8")
    cache: dict[str, str] = {}

    def inline(match: re.Match) -> str:
        rel = match.group(2)
        if rel not in cache:
            path = report_dir / rel
            if not path.is_file():
                return match.group(0)
            cache[rel] = "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        return f'{match.group(1)}="{cache[rel]}"'

    return _LOCAL_IMAGE_REF.sub(inline, html)
