"""The review page (alpr.monitoring.review) through FastAPI's test client, on a real prediction log (SQLite and
MariaDB, images in a folder) and a real HTTP model server stand-in on loopback (a fixed V1 reading).

Checked: every page renders and escapes HTML-shaped plate text; uploads are read through the model server's V1 API
and drawn as an SVG overlay; corrections are stored with who (the ``kubeflow-userid`` header, else the form's name,
else ``local``) and when; cross-site posts and bad input get a 4xx naming the field and store nothing; the trend
plot is SVG with the baseline drawn.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from alpr.monitoring import review
from alpr.monitoring.baseline import Baseline
from alpr.monitoring.plots import baseline_mean_score, trend_svg
from alpr.monitoring.store import (
    CharRecord,
    CorrectionPlate,
    PlateRecord,
    PredictionLog,
    PredictionRecord,
    TrendPoint,
)

HTML_TEXT = "<script>alert('x')</script>"
SQL_TEXT = "x'); DROP TABLE predictions; --"
WIDTH, HEIGHT = 320, 200


def _png(width: int = WIDTH, height: int = HEIGHT) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (40, 90, 160)).save(out, format="PNG")
    return out.getvalue()


def _plate(text: str, box=(20.0, 30.0, 160.0, 64.0), score: float = 0.9, chars: bool = True) -> PlateRecord:
    from alpr import spec

    x1, y1, x2, y2 = box
    step = (x2 - x1) / max(len(text), 1)
    characters = (
        tuple(CharRecord(c, (x1 + i * step, y1 + 2, x1 + (i + 1) * step - 1, y2 - 2), 0.8) for i, c in enumerate(text))
        if chars
        else ()
    )
    return PlateRecord(text, spec.is_valid_text(text), score, box, "one_line", characters)


def _record(event: str, plates, *, data: bytes | None = None, minutes_ago: float = 1.0) -> PredictionRecord:
    data = data or _png()
    return PredictionRecord(
        id=None,
        event_id=event,
        received_at=datetime.now(UTC) - timedelta(minutes=minutes_ago),
        model_name="alpr",
        model_version="1",
        image_sha256=hashlib.sha256(data).hexdigest(),
        image_bytes=len(data),
        width=WIDTH,
        height=HEIGHT,
        latency_ms=12.5,
        plates=tuple(plates),
        image_uri=None,
    )


# ---------------------------------------------------------------------------------------------- a model server


class _ModelServer:
    """A V1 model server stand-in on 127.0.0.1: answers ``POST /v1/models/alpr:predict`` with ``reading`` for
    every instance, records the bodies it got; ``status`` overrides the answer's HTTP status."""

    def __init__(self) -> None:
        self.reading: dict = {"plates": []}
        self.status = 200
        self.bodies: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # http.server names its handlers so
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.bodies.append({"path": self.path, "body": body})
                if owner.status != 200:
                    payload = json.dumps({"error": "instance 0: cannot decode the image"}).encode()
                else:
                    payload = json.dumps({"predictions": [owner.reading for _ in body["instances"]]}).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass(frozen=True)
class _Config:
    db_url: str
    storage_uri: str | None
    model_url: str | None
    model_name: str = "alpr"


@pytest.fixture(scope="module")
def model_server():
    server = _ModelServer()
    yield server
    server.close()


@pytest.fixture
def site(db_url, tmp_path, model_server):
    """``(client, log, model server)``: the review router alone in a FastAPI app, on a fresh prediction log."""
    model_server.reading, model_server.status, model_server.bodies[:] = {"plates": []}, 200, []
    config = _Config(db_url, str(tmp_path / "storage"), model_server.url)
    log = PredictionLog(config.db_url, config.storage_uri)
    app = FastAPI()
    app.include_router(review.router(config, store=log))
    with TestClient(app) as client:
        yield client, log, model_server


def _token(client: TestClient) -> str:
    page = client.get("/")
    assert page.status_code == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def _add(log: PredictionLog, *records: PredictionRecord, with_image: bool = True) -> list[int]:
    images = [_png() if with_image else None for _ in records]
    return log.add_predictions(list(records), images)


# ---------------------------------------------------------------------------------------------- pages


def test_index_sets_the_csrf_cookie_and_a_strict_content_security_policy(site):
    client, _, _ = site
    page = client.get("/")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "'unsafe-inline'" not in page.headers["content-security-policy"]
    cookie = page.cookies.get(review.CSRF_COOKIE)
    assert cookie and f'value="{cookie}"' in page.text
    assert 'type="file" name="file"' in page.text
    for name in review.STATIC_FILES:
        static = client.get(f"/static/{name}")
        assert static.status_code == 200 and static.content
    assert client.get("/static/../review.py").status_code == 404


def test_upload_is_read_by_the_model_server_and_drawn_over_the_image_escaped(site):
    client, _, server = site
    server.reading = {
        "plates": [
            {
                "text": HTML_TEXT,
                "layout": "one_line",
                "valid": False,
                "box": [10.0, 20.0, 150.5, 60.0],
                "score": 0.42,
                "characters": [],
            }
        ]
    }
    image = _png()
    answer = client.post(
        "/upload", data={"csrf_token": _token(client)}, files={"file": ("car <b>.png", image, "image/png")}
    )
    assert answer.status_code == 200, answer.text
    sent = server.bodies[-1]
    assert sent["path"] == "/v1/models/alpr:predict"
    assert base64.b64decode(sent["body"]["instances"][0]["image_bytes"]["b64"]) == image
    assert HTML_TEXT not in answer.text and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in answer.text
    assert "car &lt;b&gt;.png" in answer.text
    assert f'viewBox="0 0 {WIDTH} {HEIGHT}"' in answer.text
    assert '<rect x="10.0" y="20.0" width="140.5" height="40.0"' in answer.text
    assert f"sha256={hashlib.sha256(image).hexdigest()}" in answer.text


@pytest.mark.parametrize(
    ("case", "status", "field"),
    [
        ("no token", 403, "csrf_token"),
        ("wrong token", 403, "csrf_token"),
        ("cross-site origin", 403, None),
        ("no file", 400, "file"),
        ("empty file", 400, "file"),
        ("not an image", 400, "file"),
        ("broken png", 400, "file"),
        ("model refuses", 400, "file"),
    ],
)
def test_bad_uploads_get_a_4xx_naming_the_field(site, case, status, field):
    client, _, server = site
    token = _token(client)
    data, files, headers = {"csrf_token": token}, {"file": ("a.png", _png(), "image/png")}, {}
    if case == "no token":
        data = {}
    elif case == "wrong token":
        data = {"csrf_token": "x" * 43}
    elif case == "cross-site origin":
        headers = {"Origin": "https://evil.example"}
    elif case == "no file":
        files = {"other": ("a.png", _png(), "image/png")}
    elif case == "empty file":
        files = {"file": ("a.png", b"", "image/png")}
    elif case == "not an image":
        files = {"file": ("a.png", b"<html>not an image</html>", "image/png")}
    elif case == "broken png":
        files = {"file": ("a.png", _png()[:40], "image/png")}
    elif case == "model refuses":
        server.status = 400
    answer = client.post("/upload", data=data, files=files, headers=headers)
    assert answer.status_code == status, answer.text
    if field:
        assert f'<code class="field">{field}</code>' in answer.text
    if case in ("no token", "wrong token", "cross-site origin", "not an image", "empty file"):
        assert server.bodies == []  # refused before the model server was asked


def test_upload_with_the_model_server_down_is_a_502(db_url):
    from live_server import free_port

    config = _Config(db_url, None, f"http://127.0.0.1:{free_port()}")
    app = FastAPI()
    app.include_router(review.router(config, store=PredictionLog(db_url)))
    with TestClient(app) as client:
        answer = client.post(
            "/upload", data={"csrf_token": _token(client)}, files={"file": ("a.png", _png(), "image/png")}
        )
    assert answer.status_code == 502 and "cannot be reached" in answer.text


def test_readings_list_filters_and_escapes(site):
    client, log, _ = site
    good, html, sql, low = _add(
        log,
        _record("e1/0", [_plate("12A3456", score=0.95)], minutes_ago=4),
        _record("e2/0", [_plate(HTML_TEXT, chars=False, score=0.9)], minutes_ago=3),
        _record("e3/0", [_plate(SQL_TEXT, chars=False, score=0.8)], minutes_ago=2),
        _record("e4/0", [_plate("34B5678", score=0.2)], minutes_ago=1),
    )
    page = client.get("/readings")
    assert page.status_code == 200
    ids = [int(i) for i in re.findall(r'<tr data-id="(\d+)">', page.text)]
    assert ids == [low, sql, html, good]  # newest first
    assert HTML_TEXT not in page.text and "&lt;script&gt;" in page.text
    assert "x&#39;); DROP TABLE predictions; --" in page.text
    invalid = client.get("/readings", params={"invalid": "true"})
    assert [int(i) for i in re.findall(r'<tr data-id="(\d+)">', invalid.text)] == [sql, html]
    low_page = client.get("/readings", params={"max_score": "0.5", "limit": "", "invalid": ""})
    assert [int(i) for i in re.findall(r'<tr data-id="(\d+)">', low_page.text)] == [low]
    by_image = client.get("/readings", params={"sha256": hashlib.sha256(_png()).hexdigest(), "limit": "2"})
    assert len(re.findall(r'<tr data-id="(\d+)">', by_image.text)) == 2
    for params, field in (
        ({"max_score": "high"}, "max_score"),
        ({"max_score": "1.5"}, "max_score"),
        ({"limit": "0"}, "limit"),
        ({"invalid": "maybe"}, "invalid"),
        ({"sha256": "<b>"}, "sha256"),
    ):
        bad = client.get("/readings", params=params)
        assert bad.status_code == 400 and f'<code class="field">{field}</code>' in bad.text, params
        assert "<b>" not in bad.text


def test_reading_page_and_its_image(site):
    client, log, _ = site
    (pid,) = _add(log, _record("e1/0", [_plate("12A3456")]))
    (bare,) = _add(log, _record("e2/0", [_plate("12A3456")]), with_image=False)
    page = client.get(f"/readings/{pid}")
    assert page.status_code == 200
    assert f'src="/readings/{pid}/image"' in page.text and 'name="plate-0-text" value="12A3456"' in page.text
    image = client.get(f"/readings/{pid}/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png" and image.content == _png()
    assert image.headers["x-content-type-options"] == "nosniff"
    assert client.get(f"/readings/{bare}/image").status_code == 404
    assert "not stored" in client.get(f"/readings/{bare}").text
    missing = client.get("/readings/999999")
    assert missing.status_code == 404 and "prediction 999999 does not exist" in missing.text
    assert client.get("/readings/999999/image").status_code == 404
    assert client.get("/readings/abc").status_code == 422


# ---------------------------------------------------------------------------------------------- corrections


def _correct(client, pid, fields, headers=None, token=None):
    data = {"csrf_token": token or _token(client), "prediction_id": str(pid), **fields}
    return client.post("/corrections", data=data, headers=headers or {}, follow_redirects=False)


def test_a_correction_is_stored_with_who_and_when(site):
    client, log, _ = site
    (pid,) = _add(log, _record("e1/0", [_plate("12A3456"), _plate("99E9999", box=(200, 120, 300, 150))]))
    before = datetime.now(UTC) - timedelta(seconds=1)
    answer = _correct(
        client,
        pid,
        {
            "plate-0-text": "12a 3457",
            "plate-1-false": "1",
            "missed-0-text": "45C6789",
            "missed-0-x1": "10",
            "missed-0-y1": "150",
            "missed-0-x2": "120.5",
            "missed-0-y2": "180",
            "missed-1-text": "",
            "name": "ignored <name>",
        },
        headers={review.AUTHOR_HEADER: "reviewer@example.com"},
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith(f"/readings/{pid}?saved=")
    ((record, correction),) = log.corrections_since(before)
    assert record.id == pid and correction.author == "reviewer@example.com"
    assert correction.created_at >= before
    assert [(p.status, p.text, tuple(p.box)) for p in correction.plates] == [
        ("corrected", "12A3457", (20.0, 30.0, 160.0, 64.0)),
        ("false", "99E9999", (200.0, 120.0, 300.0, 150.0)),
        ("missed", "45C6789", (10.0, 150.0, 120.5, 180.0)),
    ]
    page = client.get(answer.headers["location"])
    assert f"Correction {correction.id} saved" in page.text and "reviewer@example.com" in page.text
    assert re.search(r'<tr class="valid">\s*<td>1</td>\s*<td class="text">12A3457</td>', page.text)
    listing = client.get("/corrections")
    assert listing.status_code == 200 and "45C6789" in listing.text


@pytest.mark.parametrize(
    ("header", "name", "author"),
    [(None, "Ann <b>", "Ann <b>"), (None, "  ", "local"), (None, None, "local"), ("bob", "Ann", "bob")],
)
def test_the_author_is_the_kubeflow_user_else_the_form_name_else_local(site, header, name, author):
    client, log, _ = site
    (pid,) = _add(log, _record("e1/0", [_plate("12A3456")]))
    fields = {} if name is None else {"name": name}
    answer = _correct(client, pid, fields, headers={review.AUTHOR_HEADER: header} if header else None)
    assert answer.status_code == 303, answer.text
    ((_, correction),) = log.corrections_since(datetime.now(UTC) - timedelta(minutes=1))
    assert correction.author == author
    assert correction.plates[0].status == "confirmed"
    page = client.get(f"/readings/{pid}")
    assert "Ann <b>" not in page.text


@pytest.mark.parametrize(
    ("fields", "field", "status"),
    [
        ({"plate-0-text": "12A34"}, "plate-0-text", 400),
        ({"plate-0-text": HTML_TEXT}, "plate-0-text", 400),
        ({"plate-0-text": "1" * 100}, "plate-0-text", 400),
        ({"plate-3-text": "12A3456"}, "plate-3-text", 400),
        ({"missed-0-text": "45C6789", "missed-0-x1": "1", "missed-0-y1": "1", "missed-0-x2": "2"}, "missed-0-y2", 400),
        ({"missed-0-text": "45C6789", "missed-0-x1": "a", "missed-0-y1": "1", "missed-0-x2": "2",
          "missed-0-y2": "3"}, "missed-0-x1", 400),
        ({"missed-0-text": "45C6789", "missed-0-x1": "1", "missed-0-y1": "1", "missed-0-x2": "9999",
          "missed-0-y2": "3"}, "missed-0-x2", 400),
        ({"missed-0-text": "45C6789", "missed-0-x1": "5", "missed-0-y1": "1", "missed-0-x2": "2",
          "missed-0-y2": "3"}, "missed-0-x2", 400),
        ({"missed-0-text": "45C6789", "missed-0-x1": "nan", "missed-0-y1": "1", "missed-0-x2": "2",
          "missed-0-y2": "3"}, "missed-0-x1", 400),
        ({"missed-0-x1": "1", "missed-0-y1": "1", "missed-0-x2": "2", "missed-0-y2": "3"}, "missed-0-text", 400),
        ({"missed-99-text": "45C6789"}, "missed-99-text", 400),
        ({"prediction_id": "abc"}, "prediction_id", 400),
        ({"prediction_id": "424242"}, "prediction_id", 404),
        ({"csrf_token": "wrong"}, "csrf_token", 403),
    ],
)  # fmt: skip
def test_bad_corrections_get_a_4xx_naming_the_field_and_store_nothing(site, fields, field, status):
    client, log, _ = site
    (pid,) = _add(log, _record("e1/0", [_plate("12A3456")]))
    data = {"csrf_token": _token(client), "prediction_id": str(pid), **fields}
    answer = client.post("/corrections", data=data, follow_redirects=False)
    assert answer.status_code == status, answer.text
    assert f'<code class="field">{field}</code>' in answer.text
    assert HTML_TEXT not in answer.text
    assert log.corrections_since(datetime.now(UTC) - timedelta(hours=1)) == []


def test_a_read_text_that_is_not_a_plate_must_be_corrected_or_marked_false(site):
    client, log, _ = site
    (pid,) = _add(log, _record("e1/0", [_plate(HTML_TEXT, chars=False)]))
    answer = _correct(client, pid, {"plate-0-text": HTML_TEXT})
    assert answer.status_code == 400 and '<code class="field">plate-0-text</code>' in answer.text
    assert _correct(client, pid, {"plate-0-false": "1"}).status_code == 303
    ((_, correction),) = log.corrections_since(datetime.now(UTC) - timedelta(minutes=1))
    assert [p.status for p in correction.plates] == ["false"]


def test_cross_site_posts_are_refused(site):
    client, log, _ = site
    (pid,) = _add(log, _record("e1/0", [_plate("12A3456")]))
    token = _token(client)
    answer = _correct(client, pid, {}, headers={"Origin": "https://evil.example"}, token=token)
    assert answer.status_code == 403 and "cross-site" in answer.text
    same = _correct(client, pid, {}, headers={"Origin": "http://testserver"}, token=token)
    assert same.status_code == 303
    client.cookies.clear()  # a post from another site carries no cookie of ours (SameSite=Strict)
    assert _correct(client, pid, {}, token=token).status_code == 403
    json_post = client.post("/corrections", json={"prediction_id": pid})
    assert json_post.status_code == 415


# ---------------------------------------------------------------------------------------------- trends


def _baseline(valid: int = 8) -> Baseline:
    from alpr.monitoring.baseline import SCORE_EDGES

    counts = [0] * (len(SCORE_EDGES) - 1)
    counts[-1] = 10
    return Baseline(model_id=1, split="test", images=10, plates=10, valid_plates=valid,
                    score_edges=SCORE_EDGES, score_counts=tuple(counts))  # fmt: skip


def test_trend_svg_draws_the_baseline_as_lines():
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    points = [
        TrendPoint(now - timedelta(hours=3), 5, 0.8, 0.9, 5),
        TrendPoint(now - timedelta(hours=2), 0, float("nan"), float("nan"), 0),
        TrendPoint(now - timedelta(hours=1), 7, 0.5, 0.7, 9),
    ]
    svg = trend_svg(points, _baseline(), since=now - timedelta(hours=6), until=now, model_version="1")
    root = ET.fromstring(svg)
    ids = {el.get("id") for el in root.iter()}
    assert {"baseline-valid-share", "baseline-mean-score", "live-valid-share", "live-mean-score"} <= ids
    assert baseline_mean_score(_baseline()) == pytest.approx(0.99)
    bare = ET.fromstring(trend_svg([], None, since=now - timedelta(hours=6), until=now))
    assert not {"baseline-valid-share", "live-valid-share"} & {el.get("id") for el in bare.iter()}
    with pytest.raises(ValueError, match="until"):
        trend_svg(points, None, since=now, until=now)


def test_trends_route_serves_svg(site):
    client, log, _ = site
    _add(log, _record("e1/0", [_plate("12A3456")]), _record("e2/0", [_plate("1")], minutes_ago=70))
    answer = client.get("/trends.svg", params={"hours": 6})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(answer.content)
    assert "live-valid-share" in {el.get("id") for el in root.iter()}
    assert client.get("/trends.svg", params={"hours": 0}).status_code == 422


# ---------------------------------------------------------------------------------------------- helpers


def test_parse_correction_keeps_the_read_boxes_and_never_the_forms():
    record = _record("e/0", [_plate("12A3456")])
    plates = review.parse_correction({"plate-0-text": "12A3456", "plate-0-box": "0,0,1,1"}, record)
    assert plates == [CorrectionPlate((20.0, 30.0, 160.0, 64.0), "12A3456", "confirmed")]


def test_author_of_strips_control_characters_and_cuts_long_names():
    assert review.author_of({review.AUTHOR_HEADER: "a\x00b\n"}, "x") == "ab"
    assert review.author_of({}, "n" * 500) == "n" * review.MAX_AUTHOR_LENGTH
    assert review.author_of({}, None) == review.DEFAULT_AUTHOR
