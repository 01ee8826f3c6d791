"""The review page in a real browser: Debian's Chromium driven by Playwright, against a live model server and the
monitor on loopback, then the corrections exported and registered as the next annotation version.

The chain, with nothing faked: ``python -m alpr.serving`` serves the tiny trained model with ``--log-url`` pointing
at the monitor (:func:`alpr.monitoring.app.create_app` under uvicorn, every image sampled); the browser uploads a
synthetic image (its ground truth known), sees the reading drawn, finds the logged reading, draws the box of the
plate the tiny model missed with the mouse, types its true text, marks whatever the model read there as false
plates and saves the correction. Then ``python -m dataset_tools corrections`` writes the labelme files, ``register``
refuses them while their character boxes are missing (all or nothing), and accepts them once they are drawn (here:
copied from the ground truth, as an annotator would draw them in labelme).

Screenshots of each step go to ``$ALPR_TEST_ARTIFACTS/review_page/`` when that variable is set, else to the test's
``tmp_path/screenshots`` (pytest keeps the last three runs' tmp folders); the folder is printed.

Needs ``/usr/bin/chromium`` (Debian's ``chromium`` package: ``apt-get install -y chromium``; ``.ci/run`` installs
it); the test skips, saying so, only where it is absent.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dvc.repo  # noqa: F401 - imported at collection, as test_dataset_tools_cli does (DVC binds its log handlers)
import httpx
import pytest
from live_server import free_port, serve

from alpr import spec
from alpr.data import labelme
from alpr.data.synth import synthesize
from alpr.metadata import MetadataStore
from alpr.monitoring.store import PredictionLog
from dataset_tools.__main__ import main

CHROMIUM = Path("/usr/bin/chromium")
#: Seconds the browser waits for a page element, and the test for the logged reading to arrive.
UI_TIMEOUT_MS = 60_000
LOG_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    """Where the screenshots go (printed)."""
    root = os.environ.get("ALPR_TEST_ARTIFACTS")
    folder = Path(root) / "review_page" if root else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"review page screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> labelme.LabelmeFile:
    """One synthetic image with its labelme ground truth (not one the tiny model was trained on)."""
    folder = tmp_path_factory.mktemp("review_sample")
    synthesize(folder, 1, seed=31, progress=False)
    report = labelme.validate_folder(folder, progress=False)
    assert report.ok, report.format()
    return report.files[0]


@pytest.fixture(scope="module")
def monitor(tmp_path_factory):
    """The monitor (create_app under uvicorn in a thread) on a free loopback port; yields its base URL and
    config. Every image is sampled."""
    import uvicorn

    from alpr.monitoring.app import MonitorConfig, create_app

    work = tmp_path_factory.mktemp("monitor")
    port, model_port = free_port(), free_port()
    config = MonitorConfig(
        db_url=f"sqlite:///{work / 'metadata.db'}",
        storage_uri=str(work / "storage"),
        sample_images=1.0,
        model_url=f"http://127.0.0.1:{model_port}",
        host="127.0.0.1",
        port=port,
    )
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2, trust_env=False).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        pytest.fail("the monitor did not start within 30 s")
    yield base, config, model_port, work
    server.should_exit = True
    thread.join(timeout=15)


@pytest.fixture(scope="module")
def model_server(tiny_model_dir, monitor, tmp_path_factory):
    """The model server with the tiny model, logging every inference to the monitor (``--log-url``)."""
    base, config, port, _ = monitor
    args = [
        "--model_name=alpr",
        f"--model_dir={tiny_model_dir}",
        f"--http_port={port}",
        f"--log-url={base}/events",
    ]
    with serve(args, tmp_path_factory.mktemp("model_server"), port=port) as client:
        yield client


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install -y chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


def _hostile_record(text: str):
    """A logged reading (no image) whose one plate's text is ``text``."""
    from alpr.monitoring.store import PlateRecord, PredictionRecord

    plate = PlateRecord(text, False, 0.5, (1.0, 1.0, 20.0, 10.0), "one_line", ())
    return PredictionRecord(
        id=None, event_id="hostile/0", received_at=datetime.now(UTC), model_name="alpr", model_version="",
        image_sha256="0" * 64, image_bytes=10, width=40, height=20, latency_ms=None, plates=(plate,),
    )  # fmt: skip


def _image_box_to_page(page, box, width, height):
    """Page coordinates of an image box on the reading page's overlay."""
    rect = page.locator(".figure.drawable svg.overlay").bounding_box()
    sx, sy = rect["width"] / width, rect["height"] / height
    x1, y1, x2, y2 = box
    return rect["x"] + x1 * sx, rect["y"] + y1 * sy, rect["x"] + x2 * sx, rect["y"] + y2 * sy


def test_upload_correct_export_register(browser, model_server, monitor, sample, artifacts, tmp_path, capsys):
    base, config, _, work = monitor
    truth = labelme.ground_truth_reading(sample.shapes)["plates"]
    assert 1 <= len(truth) <= 3  # the form shows three rows for missed plates
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    # 1. upload: the reading is shown over the image
    page.goto(f"{base}/")
    page.screenshot(path=artifacts / "01-index.png", full_page=True)
    page.set_input_files('input[name="file"]', str(sample.image_path))
    page.click('form.upload button[type="submit"]')
    page.wait_for_selector("p.summary")
    summary = page.inner_text("p.summary")
    assert "plate(s) read" in summary and f"{sample.width}x{sample.height}" in summary
    read = int(summary.split(" plate(s)")[0])
    assert page.locator(".figure svg.overlay g.plate").count() == read
    assert page.locator("table.plates tbody tr").count() == max(read, 1)
    page.screenshot(path=artifacts / "02-upload-read.png", full_page=True)

    # 2. the model server logged it to the monitor: find the reading
    page.click("a.find-reading")
    deadline = time.monotonic() + LOG_TIMEOUT_S
    while page.locator("table.readings tr[data-id]").count() == 0:
        assert time.monotonic() < deadline, "the logged reading did not reach the monitor"
        time.sleep(1)
        page.reload()
    assert page.locator("table.readings img.thumb").count() == 1  # sampled: its image is stored
    page.screenshot(path=artifacts / "03-readings.png", full_page=True)
    page.click("table.readings a.open")
    page.wait_for_selector("form.correction")
    page.wait_for_function("document.querySelector('.figure img').complete")
    assert page.locator(".figure svg.overlay g.plate").count() == read

    # 3. correct it: whatever was read is a false plate, each true plate is missed: its box drawn, its text typed
    for i in range(read):
        page.check(f'input[name="plate-{i}-false"]')
    for j, plate in enumerate(truth):
        x1, y1, x2, y2 = _image_box_to_page(page, plate["box"], sample.width, sample.height)
        page.mouse.move(x1, y1)
        page.mouse.down()
        page.mouse.move((x1 + x2) / 2, (y1 + y2) / 2, steps=4)
        page.mouse.move(x2, y2, steps=4)
        page.mouse.up()
        drawn = [float(page.input_value(f'input[name="missed-{j}-{k}"]')) for k in ("x1", "y1", "x2", "y2")]
        assert drawn == pytest.approx(plate["box"], abs=3), (drawn, plate["box"])
        for k, value in zip(("x1", "y1", "x2", "y2"), plate["box"], strict=True):  # exact, as typed numbers
            page.fill(f'input[name="missed-{j}-{k}"]', str(value))
        page.fill(f'input[name="missed-{j}-text"]', plate["text"].lower())
    page.fill('input[name="name"]', "Playwright <reviewer>")
    page.screenshot(path=artifacts / "04-correction-form.png", full_page=True)
    page.click('form.correction button[type="submit"]')
    page.wait_for_selector("p.saved")
    assert "Playwright <reviewer>" in page.inner_text("span.author")
    page.screenshot(path=artifacts / "05-correction-saved.png", full_page=True)
    page.goto(f"{base}/corrections")
    assert all(p["text"] in page.inner_text("table.corrections") for p in truth)
    page.screenshot(path=artifacts / "06-corrections.png", full_page=True)
    # HTML-shaped plate text (as a model could read it) is shown as text, never run
    hostile = '<img src=x onerror="window.pwned=1">'
    PredictionLog(config.db_url, config.storage_uri).add_predictions([_hostile_record(hostile)], [None])
    page.goto(f"{base}/readings?invalid=true")
    assert page.locator("table.readings span.text").first.inner_text() == hostile
    assert page.locator("table.readings img").count() == 0
    assert page.evaluate("window.pwned === undefined")
    page.screenshot(path=artifacts / "07-escaped-text.png", full_page=True)
    page.goto(f"{base}/")
    page.wait_for_function("document.querySelector('img.trends').complete")
    assert page.evaluate("document.querySelector('img.trends').naturalWidth") > 0
    page.screenshot(path=artifacts / "08-trends.png", full_page=True)
    context.close()
    assert errors == []

    # 4. export: the missed plates need their character boxes drawn
    out = tmp_path / "corrections"
    backend = ["--workspace", str(tmp_path / "ws"), "--db-url", config.db_url, "--no-progress"]
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert main(["corrections", "--since", since, "--out", str(out), "--storage-uri", config.storage_uri,
                 *backend]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "wrote 1 corrected image(s)" in printed, printed
    (listed,) = (out / "needs_character_boxes.txt").read_text().splitlines()
    name = listed.split(": ", 1)[0]
    exported = json.loads((out / name).read_text())
    assert len(exported["shapes"]) == len(truth) and all(spec.is_plate(s["label"]) for s in exported["shapes"])
    assert (out / exported["imagePath"]).read_bytes() == sample.image_path.read_bytes()

    # 5. register refuses the unfinished folder, publishing nothing ...
    assert main(["register", str(out), "--name", "annotations-reviewed", *backend]) == 1
    assert "was not registered" in capsys.readouterr().err
    store = MetadataStore(config.db_url)
    assert store.get_annotation_version("annotations-reviewed") is None
    # ... and accepts it once the character boxes are drawn (the ground truth's, as an annotator would)
    raw = json.loads(sample.path.read_text())
    exported["shapes"] += [copy.deepcopy(s) for s in raw["shapes"] if spec.is_character(s["label"])]
    (out / name).write_text(json.dumps(exported))
    assert main(["register", str(out), "--name", "annotations-reviewed", *backend]) == 0, capsys.readouterr().err
    assert store.get_annotation_version("annotations-reviewed")["image_count"] == 1
    store.dispose()
