"""The prediction log: one row per image the served model read, its corrections, trends and the model's baseline.

:class:`PredictionLog` is the monitor's (and the review page's) view of three tables of the metadata store
(:mod:`alpr.metadata.schema`: ``predictions``, ``corrections``, ``model_baselines``; migration ``0003``), over the
same SQLite or MySQL/MariaDB URL as the rest of the store. Sampled images go to blob storage (:mod:`alpr.storage`)
under ``monitor/images/<yyyy-mm-dd>/<sha256>.<ext>`` (the day the image was received, UTC); the row keeps the
object's URI in ``image_uri`` until the retention purge (:meth:`PredictionLog.purge_images`) deletes the object
and clears the URI: the images show plate numbers, personal data in many jurisdictions (the EU's GDPR among
them), so they are kept only as long as a review needs them. The readings stay: the metrics and trends need them.

Plate texts (and every other string) are stored exactly as given, through bound parameters: a text shaped like
SQL or HTML is data, never part of a statement. Escaping for display is the page's job.

Records are frozen dataclasses (:class:`PredictionRecord`, :class:`PlateRecord`, :class:`CharRecord`,
:class:`Correction`, :class:`CorrectionPlate`, :class:`TrendPoint`, :class:`~alpr.monitoring.baseline.Baseline`);
:func:`plates_from_reading` checks a reading against PLATE_SPEC "A reading" and turns it into plate records.

Errors: :class:`PredictionNotFound` (a ``KeyError`` and a :class:`~alpr.metadata.errors.NotFound`) for an unknown
prediction id; ``ValueError`` naming the field for a malformed argument;
:class:`~alpr.metadata.errors.AlreadyExists` when a prediction's ``event_id`` was logged before;
:class:`~alpr.metadata.errors.MetadataConnectionError` when the database cannot be reached.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import sqlalchemy as sa

from alpr import storage
from alpr.metadata import MetadataStore, NotFound
from alpr.metadata.rows import check_lengths, check_sha256, duplicates_as
from alpr.metadata.schema import CORRECTION_STATUSES, corrections, models, predictions
from alpr.monitoring.baseline import Baseline
from alpr.spec import PLATE_SIZE_MM, is_valid_text

__all__ = [
    "IMAGE_PREFIX",
    "Baseline",
    "CharRecord",
    "Correction",
    "CorrectionPlate",
    "CorrectionStatus",
    "PlateRecord",
    "PredictionLog",
    "PredictionNotFound",
    "PredictionRecord",
    "TrendPoint",
    "image_extension",
    "image_key",
    "plates_from_reading",
]

#: Where sampled images go, below the workspace's storage root: ``<IMAGE_PREFIX>/<yyyy-mm-dd>/<sha256>.<ext>``.
IMAGE_PREFIX = "monitor/images"
#: The layouts of PLATE_SPEC "Two layouts".
LAYOUTS: tuple[str, ...] = tuple(PLATE_SIZE_MM)
#: What a reviewer says of one plate: see :data:`alpr.metadata.schema.CORRECTION_STATUSES`.
CorrectionStatus = Literal["confirmed", "corrected", "missed", "false"]
assert get_args(CorrectionStatus) == CORRECTION_STATUSES  # one vocabulary, stated twice for the type checker
#: Longest plate text a correction may give (a plate has 7 characters; room for odd plates, not for essays).
MAX_CORRECTION_TEXT = 32

Box = tuple[float, float, float, float]


class PredictionNotFound(NotFound, KeyError):
    """No prediction with the id asked for; the message names the id."""

    def __str__(self) -> str:  # KeyError's str() would quote the message
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class CharRecord:
    """One character of a plate: ``char`` (one of ``0-9``, ``A-E`` as the model read it), ``box`` (x1, y1, x2, y2,
    pixels of the original image) and ``score`` (0..1)."""

    char: str
    box: Box
    score: float


@dataclass(frozen=True)
class PlateRecord:
    """One plate of a reading (PLATE_SPEC "A reading"): its ``text`` as read (stored verbatim), whether it is
    ``valid`` (matches the canonical pattern), its ``score`` (0..1), ``box`` (x1, y1, x2, y2, pixels), ``layout``
    (``one_line`` | ``two_line``) and ``characters``."""

    text: str
    valid: bool
    score: float
    box: Box
    layout: str
    characters: tuple[CharRecord, ...] = ()

    def to_reading(self) -> dict[str, Any]:
        """This plate as PLATE_SPEC's JSON object (``text``, ``layout``, ``valid``, ``box``, ``score``,
        ``characters``)."""
        return {
            "text": self.text,
            "layout": self.layout,
            "valid": self.valid,
            "box": list(self.box),
            "score": self.score,
            "characters": [{"char": c.char, "box": list(c.box), "score": c.score} for c in self.characters],
        }


@dataclass(frozen=True)
class PredictionRecord:
    """One image read by the served model.

    Attributes:
        id: the row id (None before it is stored).
        event_id: ``"<ce-id>/<index of the image in the request>"`` (unique).
        received_at: when the response event arrived (timezone-aware UTC).
        model_name: the served model's name (``alpr``).
        model_version: the served model: its metadata-store id as a string (``"12"``), or ``""`` when unknown.
        image_sha256: hex SHA-256 of the encoded image bytes.
        image_bytes: size of the encoded image, bytes.
        width, height: the image's size, pixels (from its header).
        latency_ms: response time minus request time, milliseconds (None when a time is missing).
        plates: the reading, by descending score.
        image_uri: where the sampled image is (None: not sampled, or purged by retention).
    """

    id: int | None
    event_id: str
    received_at: datetime
    model_name: str
    model_version: str
    image_sha256: str
    image_bytes: int
    width: int
    height: int
    latency_ms: float | None
    plates: tuple[PlateRecord, ...]
    image_uri: str | None = None

    @property
    def valid_count(self) -> int:
        """How many plates have a valid text."""
        return sum(p.valid for p in self.plates)

    def reading(self) -> dict[str, Any]:
        """The reading as PLATE_SPEC's JSON object ``{"plates": [...]}``."""
        return {"plates": [p.to_reading() for p in self.plates]}


@dataclass(frozen=True)
class CorrectionPlate:
    """What a reviewer says of one plate: its ``box`` (x1, y1, x2, y2, pixels), its true ``text`` (ignored, may be
    empty, for ``false``) and ``status``: ``confirmed`` (the reading was right), ``corrected`` (the text was wrong),
    ``missed`` (a plate the model did not find) or ``false`` (no plate there)."""

    box: Box
    text: str
    status: CorrectionStatus


@dataclass(frozen=True)
class Correction:
    """A review of one prediction: who (``author``), when (``created_at``, UTC) and the ``plates`` as they truly
    are (see :class:`CorrectionPlate`)."""

    id: int
    prediction_id: int
    author: str
    created_at: datetime
    plates: tuple[CorrectionPlate, ...]


@dataclass(frozen=True)
class TrendPoint:
    """One hour of readings (``hour``: its start, UTC): images read (``readings``), the share of plates with a valid
    text (``valid_share``) and the mean plate score (``mean_score``) -- both NaN for an hour without plates -- and
    the number of ``plates``."""

    hour: datetime
    readings: int
    valid_share: float
    mean_score: float
    plates: int = field(default=0)


# --------------------------------------------------------------------------------------------------- checks


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return number


def _score(value: Any, what: str) -> float:
    score = _number(value, what)
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"{what} must be in [0, 1], got {value!r}")
    return score


def _box(value: Any, what: str) -> Box:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ValueError(f"{what} must be [x1, y1, x2, y2], got {value!r}")
    x1, y1, x2, y2 = (_number(v, f"{what}[{i}]") for i, v in enumerate(value))
    if x2 < x1 or y2 < y1:
        raise ValueError(f"{what} must have x1 <= x2 and y1 <= y2, got {list(value)!r}")
    return (x1, y1, x2, y2)


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {value!r}")
    return value


def _plate(item: Any, what: str) -> PlateRecord:
    if not isinstance(item, Mapping):
        raise ValueError(f"{what} must be an object, got {type(item).__name__}")
    missing = [k for k in ("text", "layout", "valid", "box", "score") if k not in item]
    if missing:
        raise ValueError(f"{what} lacks {', '.join(missing)}")
    text = _string(item["text"], f"{what}.text")
    layout = item["layout"]
    if layout not in LAYOUTS:
        raise ValueError(f"{what}.layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    valid = item["valid"]
    if not isinstance(valid, bool):
        raise ValueError(f"{what}.valid must be true or false, got {valid!r}")
    if valid != is_valid_text(text):
        raise ValueError(f"{what}.valid is {valid} but text {text!r} {'does' if not valid else 'does not'} match")
    chars = item.get("characters", [])
    if not isinstance(chars, list):
        raise ValueError(f"{what}.characters must be a list, got {type(chars).__name__}")
    records = []
    for j, char in enumerate(chars):
        where = f"{what}.characters[{j}]"
        if not isinstance(char, Mapping) or not {"char", "box", "score"} <= set(char):
            raise ValueError(f"{where} must be an object with char, box and score")
        letter = _string(char["char"], f"{where}.char")
        if len(letter) != 1:
            raise ValueError(f"{where}.char must be one character, got {letter!r}")
        records.append(CharRecord(letter, _box(char["box"], f"{where}.box"), _score(char["score"], f"{where}.score")))
    return PlateRecord(
        text=text,
        valid=valid,
        score=_score(item["score"], f"{what}.score"),
        box=_box(item["box"], f"{what}.box"),
        layout=layout,
        characters=tuple(records),
    )


def plates_from_reading(reading: Any, what: str = "reading") -> tuple[PlateRecord, ...]:
    """Check ``reading`` against PLATE_SPEC "A reading" and return its plates (in the order given).

    Args:
        reading: the decoded JSON object ``{"plates": [{"text", "layout", "valid", "box", "score",
            "characters": [{"char", "box", "score"}]}]}``.
        what: how error messages name the reading (``"response.predictions[1]"``).

    Raises:
        ValueError: naming the field at fault: not an object, ``plates`` missing or not a list, a plate lacking a
            key, a layout not ``one_line``/``two_line``, ``valid`` not a bool or not agreeing with the text, a box
            that is not four finite numbers with x1 <= x2 and y1 <= y2, a score outside [0, 1].
    """
    if not isinstance(reading, Mapping):
        raise ValueError(f"{what} must be an object with plates, got {type(reading).__name__}")
    plates = reading.get("plates")
    if not isinstance(plates, list):
        raise ValueError(f"{what}.plates must be a list, got {plates!r}")
    return tuple(_plate(item, f"{what}.plates[{i}]") for i, item in enumerate(plates))


def _correction_plate(plate: Any, what: str) -> CorrectionPlate:
    if not isinstance(plate, CorrectionPlate):
        raise ValueError(f"{what} must be a CorrectionPlate, got {type(plate).__name__}")
    if plate.status not in CORRECTION_STATUSES:
        raise ValueError(f"{what}.status must be one of {', '.join(CORRECTION_STATUSES)}, got {plate.status!r}")
    text = _string(plate.text, f"{what}.text")
    if plate.status != "false":
        if not text or text != text.strip():
            raise ValueError(f"{what}.text must be the plate's text without surrounding whitespace, got {text!r}")
        if len(text) > MAX_CORRECTION_TEXT:
            raise ValueError(f"{what}.text holds at most {MAX_CORRECTION_TEXT} characters, got {len(text)}")
    return CorrectionPlate(_box(plate.box, f"{what}.box"), text, plate.status)


# --------------------------------------------------------------------------------------------------- helpers


def image_extension(data: bytes) -> str:
    """``"jpg"`` or ``"png"`` from the first bytes of an encoded image.

    Raises:
        ValueError: neither a JPEG nor a PNG signature.
    """
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    raise ValueError("image is neither JPEG nor PNG (unknown signature)")


def image_key(record: PredictionRecord, data: bytes) -> str:
    """The storage key of a sampled image: ``monitor/images/<yyyy-mm-dd>/<sha256>.<ext>`` (UTC day of
    ``record.received_at``)."""
    day = record.received_at.astimezone(UTC).strftime("%Y-%m-%d")
    return f"{IMAGE_PREFIX}/{day}/{record.image_sha256}.{image_extension(data)}"


def _plates_json(plates: Iterable[PlateRecord]) -> list[dict[str, Any]]:
    return [p.to_reading() for p in plates]


def _plates_from_json(value: Any) -> tuple[PlateRecord, ...]:
    return plates_from_reading({"plates": value}, "stored reading")


def _aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {value!r}")
    return value


def _check_record(record: PredictionRecord, what: str) -> None:
    if not isinstance(record, PredictionRecord):
        raise ValueError(f"{what} must be a PredictionRecord, got {type(record).__name__}")
    if not record.event_id or record.event_id != record.event_id.strip():
        raise ValueError(f"{what}.event_id must be a non-empty string without surrounding whitespace")
    _aware(record.received_at, f"{what}.received_at")
    check_sha256(record.image_sha256, f"{what}.image_sha256")
    for name in ("image_bytes", "width", "height"):
        value = getattr(record, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{what}.{name} must be a non-negative integer, got {value!r}")
    if record.latency_ms is not None:
        _number(record.latency_ms, f"{what}.latency_ms")
    # the plates are re-checked as PLATE_SPEC readings (a record built by hand gets the same checks as an event)
    plates_from_reading({"plates": _plates_json(record.plates)}, f"{what}")


_COLUMNS = (
    predictions.c.id,
    predictions.c.event_id,
    predictions.c.received_at,
    predictions.c.model_name,
    predictions.c.model_version,
    predictions.c.image_sha256,
    predictions.c.image_bytes,
    predictions.c.width,
    predictions.c.height,
    predictions.c.latency_ms,
    predictions.c.plates,
    predictions.c.image_uri,
)


def _record(m: Mapping[str, Any]) -> PredictionRecord:
    return PredictionRecord(
        id=int(m["id"]),
        event_id=m["event_id"],
        received_at=m["received_at"],
        model_name=m["model_name"],
        model_version=m["model_version"],
        image_sha256=m["image_sha256"],
        image_bytes=int(m["image_bytes"]),
        width=int(m["width"]),
        height=int(m["height"]),
        latency_ms=None if m["latency_ms"] is None else float(m["latency_ms"]),
        plates=_plates_from_json(m["plates"]),
        image_uri=m["image_uri"],
    )


def _correction(m: Mapping[str, Any]) -> Correction:
    plates = tuple(CorrectionPlate(tuple(p["box"]), p["text"], p["status"]) for p in m["plates"])
    return Correction(int(m["id"]), int(m["prediction_id"]), m["author"], m["created_at"], plates)  # type: ignore[arg-type]


def _hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


# --------------------------------------------------------------------------------------------------- the log


class PredictionLog:
    """The prediction log in the metadata store at ``db_url``, sampled images in the blob storage at
    ``storage_uri``.

    Args:
        db_url: the metadata store's URL (``sqlite:///...`` or ``mysql+pymysql://...``; see
            :class:`~alpr.metadata.store.MetadataStore`).
        storage_uri: the workspace's storage root (a folder or ``gs://bucket/prefix``); None: images are not
            kept (:meth:`add_predictions` refuses image bytes, :meth:`image` returns None).
        migrate: bring the schema to the newest revision first (idempotent; what ``alpr db init`` does).

    Raises:
        ValueError: a malformed URL.
        MetadataConnectionError, MigrationError: the database cannot be reached or migrated (``migrate=True``).
    """

    def __init__(self, db_url: str, storage_uri: str | None = None, *, migrate: bool = True) -> None:
        self._store = MetadataStore(db_url)
        self._storage = storage.open_storage(storage_uri) if storage_uri else None
        if migrate:
            self._store.create_schema()

    def __repr__(self) -> str:
        shown = self._storage.uri if self._storage is not None else None
        return f"PredictionLog({self._store.url_for_display!r}, {shown!r})"

    @property
    def store(self) -> MetadataStore:
        """The metadata store underneath (for the served model's lookup and tests)."""
        return self._store

    # -- writes

    def add_predictions(self, records: Sequence[PredictionRecord], images: Sequence[bytes | None]) -> list[int]:
        """Store ``records`` (their ``id`` and ``image_uri`` are ignored) and the sampled ``images`` (``images[i]``
        the encoded bytes of ``records[i]``, None when not sampled), all or nothing; return the new ids in order.

        Sampled images are written to blob storage (:func:`image_key`) inside the database transaction: a failed
        write rolls the rows back. An image written before a failed commit stays in storage until the retention
        purge of its day.

        Raises:
            ValueError: ``images`` not as long as ``records``, a malformed record (naming ``records[i].field``),
                image bytes that are not a JPEG or PNG, or image bytes without a storage root.
            AlreadyExists: a record's ``event_id`` is in the log already (nothing is stored).
        """
        if len(images) != len(records):
            raise ValueError(f"images has {len(images)} items for {len(records)} records: give one per record")
        rows, keyed = [], []
        for i, (record, data) in enumerate(zip(records, images, strict=True)):
            _check_record(record, f"records[{i}]")
            key = None
            if data is not None:
                if self._storage is None:
                    raise ValueError(f"images[{i}] given but the log has no storage_uri to keep it in")
                key = image_key(record, bytes(data))
                keyed.append((key, bytes(data)))
            row = {
                "event_id": record.event_id,
                "received_at": record.received_at,
                "model_name": record.model_name,
                "model_version": record.model_version,
                "image_sha256": record.image_sha256,
                "image_bytes": record.image_bytes,
                "width": record.width,
                "height": record.height,
                "latency_ms": record.latency_ms,
                "plates": _plates_json(record.plates),
                "plate_count": len(record.plates),
                "valid_count": record.valid_count,
                "score_sum": math.fsum(p.score for p in record.plates),
                "min_score": min((p.score for p in record.plates), default=None),
                "image_uri": None if key is None else self._storage.join(key),  # type: ignore[union-attr]
            }
            check_lengths(predictions, row)
            rows.append(row)
        ids = []
        with self._store.transaction() as tx, duplicates_as("an event_id of these records is in the log already"):
            for row in rows:
                ids.append(int(tx.connection.execute(sa.insert(predictions), row).inserted_primary_key[0]))
            for key, data in keyed:
                self._storage.write_bytes(key, data)  # type: ignore[union-attr]
        return ids

    def add_correction(self, prediction_id: int, author: str, plates: Sequence[CorrectionPlate]) -> Correction:
        """Record ``author``'s review of prediction ``prediction_id`` (now); return it. A later correction of the
        same prediction supersedes this one (:meth:`corrections_since` returns the latest).

        Args:
            prediction_id: the prediction reviewed.
            author: who reviewed it (the authenticated user's name or e-mail; at most 128 characters).
            plates: every plate of the image as it truly is; empty: the image has no plate and none was read.

        Raises:
            PredictionNotFound: no prediction ``prediction_id``.
            ValueError: naming the bad field: an empty or over-long author, a plate's status, box or text.
        """
        if not isinstance(author, str) or not author.strip() or author != author.strip():
            raise ValueError(f"author must be a non-empty name without surrounding whitespace, got {author!r}")
        checked = tuple(_correction_plate(p, f"plates[{i}]") for i, p in enumerate(plates))
        row = {
            "prediction_id": prediction_id,
            "author": author,
            "plates": [{"box": list(p.box), "text": p.text, "status": p.status} for p in checked],
            "created_at": datetime.now(UTC),
        }
        check_lengths(corrections, row)
        with self._store.transaction() as tx:
            self._require(tx.connection, prediction_id)
            new_id = int(tx.connection.execute(sa.insert(corrections), row).inserted_primary_key[0])
        return Correction(new_id, int(prediction_id), author, row["created_at"], checked)

    def purge_images(self, older_than: datetime) -> int:
        """Delete the sampled images received before ``older_than`` from storage and clear their rows'
        ``image_uri`` (the readings stay); return how many rows lost their image. An object still referred to by a
        newer row (the same image received again the same day) is kept for it; day folders older than
        ``older_than``'s day are removed whole (objects left by a failed transaction go with them).

        Raises:
            ValueError: ``older_than`` is naive.
        """
        _aware(older_than, "older_than")
        p = predictions
        old = (p.c.received_at < older_than) & p.c.image_uri.is_not(None)
        with self._store.transaction() as tx:
            conn = tx.connection
            uris = sorted({u for (u,) in conn.execute(sa.select(p.c.image_uri).where(old).distinct())})
            cleared = conn.execute(sa.update(p).where(old).values(image_uri=None)).rowcount
            still = set()
            if uris:
                query = sa.select(p.c.image_uri).where(p.c.image_uri.in_(uris)).distinct()
                still = {u for (u,) in conn.execute(query)}
        if self._storage is not None:
            for uri in uris:
                key = self._key(uri)
                if uri not in still and key is not None:
                    self._storage.delete_prefix(key)
            cutoff = older_than.astimezone(UTC).strftime("%Y-%m-%d")
            days = {k.split("/")[2] for k in self._storage.list(IMAGE_PREFIX + "/") if k.count("/") >= 3}
            for day in sorted(d for d in days if d < cutoff):
                self._storage.delete_prefix(f"{IMAGE_PREFIX}/{day}")
        return int(cleared or 0)

    # -- reads

    def get(self, prediction_id: int) -> PredictionRecord:
        """The prediction ``prediction_id``.

        Raises:
            PredictionNotFound: there is none.
        """
        with self._store.engine.connect() as conn:
            row = conn.execute(sa.select(*_COLUMNS).where(predictions.c.id == prediction_id)).first()
        if row is None:
            raise PredictionNotFound(f"prediction {prediction_id} does not exist")
        return _record(row._mapping)

    def recent(
        self,
        limit: int = 50,
        *,
        max_score: float | None = None,
        invalid_only: bool = False,
        since: datetime | None = None,
    ) -> list[PredictionRecord]:
        """The newest predictions first, at most ``limit``.

        Args:
            limit: most rows returned (1..1000).
            max_score: only readings with a plate scored at or below this (low-confidence readings; a reading
                without plates is left out).
            invalid_only: only readings with a plate whose text is not valid.
            since: only predictions received at or after this moment (timezone-aware).

        Raises:
            ValueError: ``limit`` outside 1..1000, a naive ``since``, a ``max_score`` that is not a number.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ValueError(f"limit must be an integer in 1..1000, got {limit!r}")
        p = predictions
        query = sa.select(*_COLUMNS).order_by(p.c.received_at.desc(), p.c.id.desc()).limit(limit)
        if max_score is not None:
            query = query.where(p.c.min_score <= _number(max_score, "max_score"))
        if invalid_only:
            query = query.where(p.c.valid_count < p.c.plate_count)
        if since is not None:
            query = query.where(p.c.received_at >= _aware(since, "since"))
        with self._store.engine.connect() as conn:
            return [_record(r._mapping) for r in conn.execute(query)]

    def image(self, prediction_id: int) -> bytes | None:
        """The sampled image of prediction ``prediction_id``; None when it was not sampled, was purged, or its
        object is gone.

        Raises:
            PredictionNotFound: no prediction ``prediction_id``.
        """
        uri = self.get(prediction_id).image_uri
        key = None if uri is None else self._key(uri)
        if key is None or self._storage is None:
            return None
        try:
            return self._storage.read_bytes(key)
        except FileNotFoundError:
            return None

    def corrections_since(self, since: datetime) -> list[tuple[PredictionRecord, Correction]]:
        """The latest correction of each prediction, for predictions whose latest correction was made at or
        after ``since``, oldest correction first.

        Raises:
            ValueError: ``since`` is naive.
        """
        _aware(since, "since")
        c = corrections
        latest = sa.select(c.c.prediction_id, sa.func.max(c.c.id).label("id")).group_by(c.c.prediction_id).subquery()
        query = (
            sa.select(c, *[col.label(f"p_{col.name}") for col in _COLUMNS])
            .join(latest, latest.c.id == c.c.id)
            .join(predictions, predictions.c.id == c.c.prediction_id)
            .where(c.c.created_at >= since)
            .order_by(c.c.created_at, c.c.id)
        )
        out = []
        with self._store.engine.connect() as conn:
            for row in conn.execute(query):
                m = row._mapping
                record = _record({col.name: m[f"p_{col.name}"] for col in _COLUMNS})
                out.append((record, _correction(m)))
        return out

    def hourly_trend(self, since: datetime) -> list[TrendPoint]:
        """Per hour (UTC) since ``since``'s hour, oldest first: images read, valid-plate share, mean plate score.
        Hours without readings are left out.

        Raises:
            ValueError: ``since`` is naive.
        """
        p = predictions
        start = _hour(_aware(since, "since"))
        query = sa.select(p.c.received_at, p.c.plate_count, p.c.valid_count, p.c.score_sum).where(
            p.c.received_at >= start
        )
        hours: dict[datetime, list[float]] = {}
        with self._store.engine.connect() as conn:
            for received_at, plate_count, valid_count, score_sum in conn.execute(query):
                acc = hours.setdefault(_hour(received_at), [0, 0, 0, 0.0])
                acc[0] += 1
                acc[1] += plate_count
                acc[2] += valid_count
                acc[3] += score_sum
        return [
            TrendPoint(
                hour=hour,
                readings=int(n),
                valid_share=valid / plates if plates else math.nan,
                mean_score=score / plates if plates else math.nan,
                plates=int(plates),
            )
            for hour, (n, plates, valid, score) in sorted(hours.items())
        ]

    def baseline(self, model_version: str) -> Baseline | None:
        """The newest Test-step baseline of the model ``model_version`` (its metadata-store id as a string,
        ``"12"``, or its URI); None when the model or its baseline is unknown (a model tested before baselines
        were recorded)."""
        version = (model_version or "").strip()
        if not version:
            return None
        if version.isdigit():
            model_id: int | None = int(version)
        else:
            with self._store.engine.connect() as conn:
                query = sa.select(models.c.id).where(models.c.uri == version).order_by(models.c.id.desc()).limit(1)
                model_id = conn.execute(query).scalar()
        row = None if model_id is None else self._store.model_baseline(model_id)
        return None if row is None else Baseline.from_row(row)

    def served_model_version(self, target: str) -> str:
        """The model served at deploy ``target`` (``"local"`` or ``"<namespace>/<name>"``) according to the
        Deploy step's records, as a :attr:`PredictionRecord.model_version` (its id as a string); ``""`` when
        nothing was deployed there."""
        current = self._store.current_deployment(target)
        return "" if current is None else str(current["model_id"])

    # -- internals

    def _require(self, conn: sa.engine.Connection, prediction_id: Any) -> None:
        if isinstance(prediction_id, bool) or not isinstance(prediction_id, int):
            raise ValueError(f"prediction_id must be an integer, got {prediction_id!r}")
        if conn.execute(sa.select(predictions.c.id).where(predictions.c.id == prediction_id)).scalar() is None:
            raise PredictionNotFound(f"prediction {prediction_id} does not exist")

    def _key(self, uri: str) -> str | None:
        if self._storage is None:
            return None
        root = self._storage.uri.rstrip("/") + "/"
        return uri[len(root) :] if uri.startswith(root) else None
