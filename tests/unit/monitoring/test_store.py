"""Tests of alpr.monitoring.store (the prediction log) and the baseline rows, on SQLite and MariaDB (``db_url``)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from alpr.metadata import AlreadyExists, NotFound
from alpr.metadata.schema import corrections, predictions
from alpr.monitoring.baseline import SCORE_EDGES, baseline_from_plates
from alpr.monitoring.store import (
    CorrectionPlate,
    PredictionLog,
    PredictionNotFound,
    PredictionRecord,
    TrendPoint,
    plates_from_reading,
)

DAY = datetime(2026, 11, 29, 10, 30, tzinfo=UTC)
SQL_TEXT = "12A3456'); DROP TABLE predictions; --"
HTML_TEXT = '<script>alert("x")</script>'


def _record(kserve, data: bytes, *, event_id: str, when: datetime = DAY, plates=None, version: str = "7"):
    plates = plates if plates is not None else [kserve.plate("12A3456", 0.95)]
    return PredictionRecord(
        id=None,
        event_id=event_id,
        received_at=when,
        model_name="alpr",
        model_version=version,
        image_sha256=hashlib.sha256(data).hexdigest(),
        image_bytes=len(data),
        width=64,
        height=32,
        latency_ms=12.5,
        plates=plates_from_reading({"plates": plates}),
    )


def _rows(log: PredictionLog, table=predictions) -> list[dict]:
    with log.store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(table.c.id))]


@pytest.fixture
def log(db_url, storage_root):
    prediction_log = PredictionLog(db_url, str(storage_root))
    yield prediction_log
    prediction_log.store.dispose()


def test_rows_images_and_texts_are_stored_as_given(log, kserve, storage_root):
    jpeg, png = kserve.image(shade=1), kserve.image(fmt="PNG", shade=2)
    odd = [kserve.plate(SQL_TEXT, 0.4), kserve.plate(HTML_TEXT, 0.3, layout="two_line")]
    records = [_record(kserve, jpeg, event_id="e1/0"), _record(kserve, png, event_id="e1/1", plates=odd)]
    ids = log.add_predictions(records, [jpeg, None])
    assert len(ids) == 2 and ids[1] > ids[0]

    rows = _rows(log)
    assert [r["event_id"] for r in rows] == ["e1/0", "e1/1"]
    assert [p["text"] for p in rows[1]["plates"]] == [SQL_TEXT, HTML_TEXT]  # verbatim, and the table is still there
    assert (rows[1]["plate_count"], rows[1]["valid_count"], rows[1]["min_score"]) == (2, 0, 0.3)
    sha = hashlib.sha256(jpeg).hexdigest()
    key = f"monitor/images/2026-11-29/{sha}.jpg"
    assert rows[0]["image_uri"] == str(storage_root / key) and rows[1]["image_uri"] is None
    assert (storage_root / key).read_bytes() == jpeg

    first = log.get(ids[0])
    assert first == replace(records[0], id=ids[0], image_uri=str(storage_root / key))
    assert first.received_at.tzinfo is not None and first.reading()["plates"][0]["text"] == "12A3456"
    assert log.image(ids[0]) == jpeg and log.image(ids[1]) is None
    assert [p.text for p in log.get(ids[1]).plates] == [SQL_TEXT, HTML_TEXT]


def test_all_or_nothing(log, kserve, storage_root, monkeypatch):
    data = kserve.image(shade=3)
    log.add_predictions([_record(kserve, data, event_id="dup/0")], [None])
    again = [_record(kserve, data, event_id="new/0"), _record(kserve, data, event_id="dup/0")]
    with pytest.raises(AlreadyExists, match="event_id"):
        log.add_predictions(again, [data, None])
    assert [r["event_id"] for r in _rows(log)] == ["dup/0"]

    def broken(key: str, payload: bytes) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(log._storage, "write_bytes", broken)
    with pytest.raises(OSError, match="disk full"):
        log.add_predictions([_record(kserve, data, event_id="e2/0")], [data])
    assert [r["event_id"] for r in _rows(log)] == ["dup/0"]  # the row went with the failed image
    with pytest.raises(ValueError, match="images has 0 items for 1 records"):
        log.add_predictions([_record(kserve, data, event_id="e3/0")], [])
    with pytest.raises(ValueError, match=r"records\[0\].image_sha256"):
        log.add_predictions([replace(_record(kserve, data, event_id="e4/0"), image_sha256="xyz")], [None])
    with pytest.raises(ValueError, match="neither JPEG nor PNG"):
        log.add_predictions([_record(kserve, data, event_id="e5/0")], [b"GIF89a..."])
    assert len(_rows(log)) == 1


def test_a_log_without_storage_refuses_images(db_url, kserve):
    log = PredictionLog(db_url)
    data = kserve.image()
    with pytest.raises(ValueError, match="no storage_uri"):
        log.add_predictions([_record(kserve, data, event_id="x/0")], [data])
    (new,) = log.add_predictions([_record(kserve, data, event_id="x/0")], [None])
    assert log.image(new) is None
    log.store.dispose()


def test_unknown_ids_raise_not_found_naming_the_id(log):
    with pytest.raises(PredictionNotFound, match="prediction 99 does not exist") as caught:
        log.get(99)
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, NotFound)
    assert str(caught.value) == "prediction 99 does not exist"
    with pytest.raises(KeyError):
        log.image(99)
    with pytest.raises(PredictionNotFound, match="prediction 99"):
        log.add_correction(99, "ana", [])
    assert _rows(log, corrections) == []


def test_recent_newest_first_with_filters(log, kserve):
    good = [kserve.plate("12A3456", 0.97)]
    low = [kserve.plate("12A3456", 0.97), kserve.plate("34B5678", 0.41)]
    invalid = [kserve.plate("12X", 0.9)]
    records = [
        _record(kserve, kserve.image(shade=i), event_id=f"r{i}/0", when=DAY + timedelta(minutes=i), plates=p)
        for i, p in enumerate([good, low, invalid, []])
    ]
    log.add_predictions(records, [None] * 4)
    assert [r.event_id for r in log.recent()] == ["r3/0", "r2/0", "r1/0", "r0/0"]
    assert [r.event_id for r in log.recent(2)] == ["r3/0", "r2/0"]
    assert [r.event_id for r in log.recent(max_score=0.5)] == ["r1/0"]
    assert [r.event_id for r in log.recent(invalid_only=True)] == ["r2/0"]
    assert [r.event_id for r in log.recent(since=DAY + timedelta(minutes=2))] == ["r3/0", "r2/0"]
    for bad in (0, 1001, True):
        with pytest.raises(ValueError, match="limit"):
            log.recent(bad)
    with pytest.raises(ValueError, match="since must be a timezone-aware"):
        log.recent(since=datetime(2026, 1, 1))


def test_corrections_latest_per_prediction(log, kserve):
    data = kserve.image()
    first, second = log.add_predictions(
        [_record(kserve, data, event_id="c/0"), _record(kserve, data, event_id="c/1")], [None, None]
    )
    start = datetime.now(UTC) - timedelta(seconds=1)
    box = (8.0, 8.0, 60.0, 24.0)
    log.add_correction(first, "ana", [CorrectionPlate(box, "12A3456", "confirmed")])
    latest = log.add_correction(
        first,
        "bob@example.org",
        [CorrectionPlate(box, SQL_TEXT[:30], "corrected"), CorrectionPlate((1, 2, 3, 4), "", "false")],
    )
    other = log.add_correction(second, "ana", [CorrectionPlate((0, 0, 10, 5), "99E9999", "missed")])
    assert latest.author == "bob@example.org" and latest.plates[0].text == SQL_TEXT[:30]
    pairs = log.corrections_since(start)
    assert [(p.id, c.id) for p, c in pairs] == [(first, latest.id), (second, other.id)]
    assert pairs[0][1] == latest and pairs[0][0].event_id == "c/0"
    assert log.corrections_since(datetime.now(UTC) + timedelta(hours=1)) == []

    bad = [
        ("", [], "author"),
        ("ana", [CorrectionPlate(box, "12A3456", "maybe")], r"plates\[0\].status"),
        ("ana", [CorrectionPlate((5, 5, 1, 1), "12A3456", "missed")], r"plates\[0\].box"),
        ("ana", [CorrectionPlate((0, 0, math.inf, 1), "12A3456", "missed")], r"plates\[0\].box\[2\]"),
        ("ana", [CorrectionPlate(box, " ", "corrected")], r"plates\[0\].text"),
        ("ana", [CorrectionPlate(box, "1" * 33, "corrected")], r"plates\[0\].text holds at most 32"),
        ("a" * 129, [], "corrections.author holds at most 128"),
    ]
    for author, plates, message in bad:
        with pytest.raises(ValueError, match=message):
            log.add_correction(first, author, plates)
    assert len(_rows(log, corrections)) == 3


def test_hourly_trend(log, kserve):
    when = datetime(2026, 11, 29, 9, 10, tzinfo=UTC)
    specs = [
        (when, [kserve.plate("12A3456", 0.9), kserve.plate("1", 0.5)]),
        (when + timedelta(minutes=40), [kserve.plate("34B5678", 0.7)]),
        (when + timedelta(hours=2), []),
    ]
    records = [
        _record(kserve, kserve.image(shade=i), event_id=f"t{i}/0", when=w, plates=p) for i, (w, p) in enumerate(specs)
    ]
    log.add_predictions(records, [None] * 3)
    trend = log.hourly_trend(when - timedelta(minutes=5))
    assert trend[0] == TrendPoint(datetime(2026, 11, 29, 9, tzinfo=UTC), 2, 2 / 3, pytest.approx(0.7), 3)
    assert trend[1].hour == datetime(2026, 11, 29, 11, tzinfo=UTC) and trend[1].readings == 1
    assert math.isnan(trend[1].valid_share) and math.isnan(trend[1].mean_score) and trend[1].plates == 0
    assert log.hourly_trend(when + timedelta(hours=3)) == []


def test_purge_deletes_old_images_and_keeps_the_readings(log, kserve, storage_root):
    old, shared, fresh = kserve.image(shade=5), kserve.image(shade=6), kserve.image(shade=7)
    records = [
        _record(kserve, old, event_id="p0/0", when=DAY - timedelta(days=40)),
        _record(kserve, shared, event_id="p1/0", when=DAY.replace(hour=1)),
        _record(kserve, shared, event_id="p2/0", when=DAY.replace(hour=20)),  # same image, same day, later
        _record(kserve, fresh, event_id="p3/0", when=DAY + timedelta(days=1)),
    ]
    ids = log.add_predictions(records, [old, shared, shared, fresh])
    orphan = storage_root / "monitor/images/2026-10-01/stale.jpg"  # left by a failed transaction
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(old)

    assert log.purge_images(DAY.replace(hour=12)) == 2
    uris = {r["event_id"]: r["image_uri"] for r in _rows(log)}
    assert uris["p0/0"] is None and uris["p1/0"] is None
    assert uris["p2/0"] is not None and Path(uris["p2/0"]).read_bytes() == shared  # still needed by p2
    assert not any((storage_root / "monitor/images/2026-10-20").glob("*")) and not orphan.exists()
    assert log.image(ids[0]) is None and log.image(ids[2]) == shared and log.image(ids[3]) == fresh
    assert [p.text for p in log.get(ids[0]).plates] == ["12A3456"]  # the reading stays
    assert log.purge_images(DAY.replace(hour=12)) == 0  # idempotent
    with pytest.raises(ValueError, match="older_than"):
        log.purge_images(datetime(2026, 1, 1))


def test_baseline_recorded_and_found_by_model_id_or_uri(log, make_model):
    model_id = make_model(log.store, uri="gs://bucket/models/m9")
    readings = [
        {"plates": [{"valid": True, "score": 0.99}, {"valid": False, "score": 0.55}]},
        {"plates": []},
        {"plates": [{"valid": True, "score": 1.0}]},
    ]
    baseline = baseline_from_plates(model_id, "test", readings)
    assert (baseline.images, baseline.plates, baseline.valid_plates) == (3, 3, 2)
    assert baseline.score_counts[-1] == 2 and baseline.score_counts[2] == 1  # 0.55 in [0.5, 0.6)
    assert log.baseline(str(model_id)) is None
    with log.store.transaction() as tx:
        for counts in ((0,) * (len(SCORE_EDGES) - 2) + (3,), baseline.score_counts):  # the newest one counts
            tx.add_model_baseline(
                model_id,
                "test",
                images=3,
                plates=3,
                valid_plates=2,
                score_edges=SCORE_EDGES,
                score_counts=counts,
            )
    found = log.baseline(str(model_id))
    assert found == replace(baseline, created_at=found.created_at) and found.valid_share == pytest.approx(2 / 3)
    assert log.baseline("gs://bucket/models/m9") == found
    assert log.baseline("") is None and log.baseline("12345") is None and log.baseline("gs://nope") is None


def test_add_model_baseline_refuses_bad_arguments(log, make_model):
    model_id = make_model(log.store)
    edges = SCORE_EDGES
    ok = {"images": 1, "plates": 1, "valid_plates": 1, "score_edges": edges, "score_counts": (0,) * 9 + (1,)}
    bad = [
        ({"split": "prod"}, "split"),
        ({"valid_plates": 2}, "valid_plates"),
        ({"score_edges": (0.0, 0.5, 0.4)}, "score_edges"),
        ({"score_counts": (1,)}, "score_counts"),
        ({"images": -1}, "images"),
    ]
    for change, message in bad:
        args = {"split": "test", **ok, **change}
        with pytest.raises(ValueError, match=message), log.store.transaction() as tx:
            tx.add_model_baseline(model_id, args.pop("split"), **args)
    with pytest.raises(NotFound, match="model id 999"), log.store.transaction() as tx:
        tx.add_model_baseline(999, "test", **ok)
    assert log.store.model_baseline(model_id) is None


def test_served_model_version_is_the_deployed_model(log, make_model):
    assert log.served_model_version("local") == ""
    model_id = make_model(log.store, deploy_at="local")
    assert log.served_model_version("local") == str(model_id)
    assert log.served_model_version("ns/alpr") == ""


def test_plates_from_reading_names_the_field_at_fault(kserve):
    good = kserve.plate("12A3456", 0.9)
    assert plates_from_reading({"plates": [good]})[0].box == (8.0, 8.0, 60.0, 24.0)
    cases = [
        ([], "reading must be an object"),
        ({"plates": "x"}, r"reading.plates must be a list"),
        ({"plates": [{**good, "score": 1.5}]}, r"plates\[0\].score must be in \[0, 1\]"),
        ({"plates": [{**good, "layout": "round"}]}, r"plates\[0\].layout"),
        ({"plates": [{**good, "valid": False}]}, r"plates\[0\].valid is False"),
        ({"plates": [{**good, "valid": "yes"}]}, r"plates\[0\].valid must be true or false"),
        ({"plates": [{**good, "box": [1, 2, 3]}]}, r"plates\[0\].box must be"),
        ({"plates": [{k: v for k, v in good.items() if k != "text"}]}, r"plates\[0\] lacks text"),
        ({"plates": [{**good, "characters": [{"char": "12", "box": [0, 0, 1, 1], "score": 1}]}]}, "one character"),
        ({"plates": [{**good, "text": 5}]}, r"plates\[0\].text must be a string"),
    ]
    for reading, message in cases:
        with pytest.raises(ValueError, match=message):
            plates_from_reading(reading)
