"""alpr.model.onnx_detector and PlateReader's ONNX Runtime back end: the same detections and readings as PyTorch
on trained tiny models, no code from the model directory run, and clear errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alpr.model.onnx_detector import OnnxRecord, batched_nms, decode, letterbox

RECORD = dict(
    file="model.onnx",
    sha256="0" * 64,
    opset=17,
    input_name="image",
    output_names=["scores_8", "scores_16", "scores_32", "boxes_8", "boxes_16", "boxes_32"],
    strides=[8, 16, 32],
    input_size=64,
    mean=[0.0, 0.0, 0.0],
    std=[1.0, 1.0, 1.0],
    num_classes=2,
    score_thr=0.05,
    nms_pre=1000,
    nms_iou=0.6,
    max_per_img=100,
)


def _maps(h: int, w: int, c: int = 2) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return (
        [np.zeros((c, h // s, w // s), np.float32) for s in (8, 16, 32)],
        [np.zeros((4, h // s, w // s), np.float32) for s in (8, 16, 32)],
    )


def test_letterbox_resizes_the_long_side_and_pads_to_the_stride():
    img = np.full((720, 1280, 3), 7, np.uint8)
    out, shape, scale = letterbox(img, 320)
    assert shape == (180, 320) and out.shape == (192, 320, 3) and out.dtype == np.float32
    assert scale == (0.25, 0.25)
    assert (out[:180] == 7).all() and (out[180:] == 114).all()
    square, shape, _ = letterbox(img, 320, pad_to_stride=False)
    assert square.shape == (320, 320, 3) and shape == (180, 320)
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) image, got shape \(4, 4\)"):
        letterbox(np.zeros((4, 4), np.uint8), 32)


def test_decode_points_distances_nms_and_rescale():
    rec = OnnxRecord.from_json(RECORD)
    scores, boxes = _maps(64, 64)
    # stride 8, cell (row 2, col 3): point (24, 16); distances l, t, r, b = 4, 2, 6, 8 -> (20, 14, 30, 24)
    scores[0][1, 2, 3] = 0.9
    boxes[0][:, 2, 3] = (4, 2, 6, 8)
    # a neighbour of the same class overlapping it strongly (suppressed), and one of the other class (kept)
    scores[0][1, 2, 4] = 0.8
    boxes[0][:, 2, 4] = (12, 2, -2, 8)  # point (32, 16) -> (20, 14, 30, 24): the same box
    scores[0][0, 2, 4] = 0.7
    bboxes, labels, sc = decode(scores, boxes, rec, img_shape=(64, 64), scale_factor=(0.5, 0.5))
    assert labels.tolist() == [1, 0]
    np.testing.assert_allclose(sc, [0.9, 0.7], rtol=1e-6)
    np.testing.assert_allclose(bboxes[0], [40, 28, 60, 48])  # divided by the scale factor


def test_decode_clips_to_the_image_and_drops_empty_boxes():
    rec = OnnxRecord.from_json(RECORD)
    scores, boxes = _maps(64, 64)
    scores[2][0, 1, 1] = 0.5
    boxes[2][:, 1, 1] = (100, 100, 100, 100)  # point (32, 32): clipped to the 40 x 50 resized image
    scores[1][0, 0, 0] = 0.6
    boxes[1][:, 0, 0] = (5, 5, -5, 1)  # zero width after clipping at 0: dropped (min_bbox_size 0)
    bboxes, labels, _ = decode(scores, boxes, rec, img_shape=(40, 50), scale_factor=(1.0, 1.0))
    np.testing.assert_allclose(bboxes, [[0, 0, 50, 40]])
    assert labels.tolist() == [0]


@pytest.mark.parametrize("fill", [0.0, 0.05, np.nan])
def test_decode_with_nothing_above_the_threshold(fill):
    rec = OnnxRecord.from_json(RECORD)
    scores, boxes = _maps(64, 64)
    for s in scores:
        s[:] = fill
    bboxes, labels, sc = decode(scores, boxes, rec, img_shape=(64, 64), scale_factor=(1.0, 1.0))
    assert bboxes.shape == (0, 4) and labels.shape == (0,) and sc.shape == (0,)


def test_decode_keeps_nms_pre_per_level_and_max_per_img():
    rec = OnnxRecord.from_json({**RECORD, "nms_pre": 3, "max_per_img": 2, "nms_iou": 1.0})
    scores, boxes = _maps(64, 64)
    scores[0][0, 0, :5] = [0.1, 0.2, 0.3, 0.4, 0.5]
    boxes[0][:] = 2
    bboxes, _, sc = decode(scores, boxes, rec, img_shape=(64, 64), scale_factor=(1.0, 1.0))
    np.testing.assert_allclose(sc, [0.5, 0.4], rtol=1e-6)
    assert len(bboxes) == 2


def test_batched_nms_stopping_at_max_keep_gives_the_first_of_the_full_result():
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 200, (400, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 60, (400, 2))], axis=1)
    scores, labels = rng.uniform(0, 1, 400), rng.integers(0, 3, 400)
    full = batched_nms(boxes, scores, labels, 0.5)
    assert 10 < len(full) < 400 and (np.diff(scores[full]) <= 0).all()
    np.testing.assert_array_equal(batched_nms(boxes, scores, labels, 0.5, max_keep=10), full[:10])
    assert batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5).shape == (0,)


def test_record_errors_name_the_field():
    with pytest.raises(ValueError, match=r"m\.json: onnx record has no field 'strides'"):
        OnnxRecord.from_json({k: v for k, v in RECORD.items() if k != "strides"}, "m.json")
    with pytest.raises(ValueError, match="m.json: onnx record"):
        OnnxRecord.from_json({**RECORD, "opset": "seventeen"}, "m.json")
    assert OnnxRecord.from_json(OnnxRecord.from_json(RECORD).to_json()) == OnnxRecord.from_json(RECORD)


# --- on trained tiny models ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported_models(tiny_model_dir, tiny_two_stage_model_dir, tmp_path_factory):
    """Copies of the tiny one-stage and two-stage model directories, each exported to ONNX."""
    from alpr.model.inference import export_onnx

    out = {}
    for name, src in (("one_stage", tiny_model_dir), ("two_stage", tiny_two_stage_model_dir)):
        dst = tmp_path_factory.mktemp(f"onnx_{name}") / "model"
        shutil.copytree(src, dst)
        # Seconds of training score every box under the config's 0.05: lower it (both networks, both back ends)
        # so that there are detections to compare, and keep all of the reader's (their scores tie, and which of
        # the tied ones make the best 1000 before NMS or the best 100 after it is the sort's choice).
        for cfg in dst.rglob("config.py"):
            text, n = re.subn(r"score_thr=0\.05\)", "score_thr=0.001)", cfg.read_text())
            assert n == 1, cfg
            if cfg.parent == dst:
                text, n = re.subn(r"max_per_img=100,", "max_per_img=100000,", text)
                text, m = re.subn(r"nms_pre=1000,", "nms_pre=100000,", text)
                assert n == m == 1, cfg
            cfg.write_text(text)
        export_onnx(dst)
        out[name] = dst
    return out


def _images(tiny_coco: Path) -> list[np.ndarray]:
    import cv2

    images = json.loads((tiny_coco / "annotations" / "test.json").read_text())["images"]
    return [cv2.imread(str(tiny_coco / img["file_name"]), cv2.IMREAD_COLOR) for img in images]


def _unmatched(a, b, box_px: float = 1.0, score: float = 0.01) -> int:
    """How many detections of ``a`` have no partner in ``b`` and of ``b`` none in ``a``: the same label, every box
    side within ``box_px`` and the score within ``score`` (a nearest-neighbour query in the Chebyshev metric over
    box sides, score scaled by ``box_px / score`` and label spaced far apart; near-tied scores may come in either
    order)."""
    from scipy.spatial import cKDTree

    def points(dets):
        boxes, labels, scores = dets
        return np.column_stack([boxes, scores * (box_px / score), labels * 1e6])

    pa, pb = points(a), points(b)
    if not len(pa) or not len(pb):
        return len(pa) + len(pb)
    far_a = np.isinf(cKDTree(pb).query(pa, p=np.inf, distance_upper_bound=box_px * (1 + 1e-9))[0])
    far_b = np.isinf(cKDTree(pa).query(pb, p=np.inf, distance_upper_bound=box_px * (1 + 1e-9))[0])
    return int(far_a.sum() + far_b.sum())


@pytest.mark.parametrize("design", ["one_stage", "two_stage"])
def test_both_back_ends_give_the_same_detections(exported_models, tiny_coco, design):
    from alpr.model.inference import PlateReader

    model_dir = exported_models[design]
    meta = json.loads((model_dir / "model.json").read_text())["onnx"]
    assert set(meta) == ({"reader", "plate_detector"} if design == "two_stage" else {"reader"})
    assert meta["reader"]["opset"] == 17 and meta["reader"]["input_name"] == "image"
    # Two stages: every plate the plate detector keeps (at most 20 an image) is read from its crop, through both
    # back ends' crop batches. (The one-stage tiny reader scores its plates about 0.01, everywhere: a plate
    # threshold that low would zoom into thousands of crops, so it keeps the model's and compares the first pass.)
    low = {"plate_score_thr": 0.001} if design == "two_stage" else {}
    torch_reader = PlateReader(model_dir, backend="pytorch", zoom_below_px=320, **low)
    onnx_reader = PlateReader(model_dir, zoom_below_px=320, **low)  # auto: the export is there
    assert (torch_reader.backend, onnx_reader.backend) == ("pytorch", "onnx")
    assert onnx_reader.crop_geometry == torch_reader.crop_geometry
    assert onnx_reader.input_size == torch_reader.input_size
    images = _images(tiny_coco)[:2]
    compared = 0
    for batched in (False, True):
        torch_reader.batch_crops = onnx_reader.batch_crops = batched
        for torch_dets, onnx_dets in zip(torch_reader.detect(images), onnx_reader.detect(images), strict=True):
            assert len(torch_dets[0]) == len(onnx_dets[0])
            assert _unmatched(torch_dets, onnx_dets) == 0
            compared += len(torch_dets[0])
    assert compared > 0, "the tiny model detected nothing to compare"


@pytest.mark.parametrize("backend", ["onnx", "pytorch"])
def test_a_clock_gets_every_stage_of_a_two_stage_reading(exported_models, tiny_coco, backend):
    """Both back ends time the first pass's pre-processing, network and decoding, the zoomed pass and the reading;
    the clock changes no reading."""
    from alpr.model import stages
    from alpr.model.inference import PlateReader
    from alpr.model.stages import StageClock

    reader = PlateReader(exported_models["two_stage"], backend=backend, plate_score_thr=0.001)
    images = _images(tiny_coco)[:2]
    clock = StageClock()
    assert reader.read(images, clock=clock) == reader.read(images)
    assert set(clock.seconds) == {
        stages.PREPROCESS, stages.NETWORK, stages.POSTPROCESS, stages.ZOOM, stages.READING
    }  # fmt: skip
    assert all(v > 0 for v in clock.seconds.values()), clock.seconds


def test_the_onnx_back_end_runs_no_code_from_the_model_directory(exported_models, tiny_coco, tmp_path):
    from alpr.model.inference import PlateReader

    model_dir = tmp_path / "model"
    shutil.copytree(exported_models["two_stage"], model_dir)
    marker = tmp_path / "pwned"
    hostile = f"open({str(marker)!r}, 'w').write('ran')\nraise SystemExit('config.py was executed')\n"
    for cfg in (model_dir / "config.py", model_dir / "plate_detector" / "config.py"):
        cfg.write_text(hostile)
    reader = PlateReader(model_dir)
    readings = reader.read(_images(tiny_coco)[:2])
    assert reader.backend == "onnx" and len(readings) == 2
    assert not marker.exists()


def test_the_onnx_back_end_imports_neither_torch_nor_mmdetection(exported_models):
    """What a serving image without torch, mmcv and mmdet needs from the reader (in a fresh interpreter: this one
    has loaded torch already)."""
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from alpr.model.inference import PlateReader\n"
        f"reader = PlateReader({str(exported_models['two_stage'])!r}, plate_score_thr=0.001)\n"
        "assert reader.backend == 'onnx' and reader.two_stage\n"
        "reader.read([np.full((480, 640, 3), 127, np.uint8)])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'mmcv', 'mmdet', 'mmengine'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_onnx_back_end_errors(exported_models, tiny_model_dir, tmp_path):
    from alpr.model.inference import ModelError, PlateReader

    with pytest.raises(ModelError, match="no ONNX export in model.json"):
        PlateReader(tiny_model_dir, backend="onnx")
    with pytest.raises(ValueError, match="backend must be one of auto, onnx, pytorch, got 'tensorrt'"):
        PlateReader(tiny_model_dir, backend="tensorrt")
    model_dir = tmp_path / "model"
    shutil.copytree(exported_models["one_stage"], model_dir)
    with open(model_dir / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match=r"model\.onnx: sha256 [0-9a-f]{64} differs from model\.json's"):
        PlateReader(model_dir)
    (model_dir / "model.onnx").unlink()
    with pytest.raises(ModelError, match=r"model\.onnx: no such ONNX file"):
        PlateReader(model_dir)


def test_sessions_take_the_thread_settings_and_do_not_spin(exported_models):
    """Every session (both networks of a two-stage model) gets ``threads`` and :data:`SESSION_CONFIG`."""
    from alpr.model.inference import PlateReader
    from alpr.model.onnx_detector import SESSION_CONFIG

    reader = PlateReader(exported_models["two_stage"], backend="onnx", threads=1)
    for detector in (reader.detector, reader.plate_detector):
        opts = detector.session.get_session_options()
        assert opts.intra_op_num_threads == 1
        for key, value in SESSION_CONFIG.items():
            assert opts.get_session_config_entry(key) == value
    assert SESSION_CONFIG["session.intra_op.allow_spinning"] == "0"
