"""PlateReadingMetric: the mmengine metric that feeds EIR etc. into validation, TensorBoard and save_best."""

import json
import math

import numpy as np
import pytest
import torch

from alpr import spec
from alpr.model.plugins import PlateReadingMetric


def _plate_boxes(text, x0=10.0, y0=10.0, cw=10.0, ch=20.0):
    boxes = [[x0 - 5, y0 - 5, x0 + cw * len(text) + 5, y0 + ch + 5]]
    labels = [spec.class_id("plate_one_line")]
    for i, c in enumerate(text):
        boxes.append([x0 + i * cw + 1, y0, x0 + (i + 1) * cw - 1, y0 + ch])
        labels.append(spec.class_id(c))
    return np.array(boxes, float), np.array(labels)


def _sample(img_id, text):
    boxes, labels = _plate_boxes(text)
    return {
        "img_id": img_id,
        "pred_instances": {
            "bboxes": torch.tensor(boxes),
            "labels": torch.tensor(labels),
            "scores": torch.full((len(labels),), 0.9),
        },
    }


def test_metric_reads_predictions_against_coco_truth(tmp_path):
    truth_box = [5.0, 5.0, 85.0, 35.0]
    ann = {
        "images": [
            {"id": 1, "plates": [{"box": truth_box, "text": "12A3456", "layout": "one_line"}]},
            {"id": 2, "plates": [{"box": truth_box, "text": "98B7654", "layout": "one_line"}]},
            {"id": 3, "plates": []},
        ]
    }
    path = tmp_path / "val.json"
    path.write_text(json.dumps(ann))
    metric = PlateReadingMetric(ann_file=str(path))
    metric.process({}, [_sample(1, "12A3456"), _sample(2, "98B7659"), _sample(3, "11C1111")])
    result = metric.compute_metrics(metric.results)
    assert result["eir"] == 0.5  # one of two truth plates read exactly
    assert math.isclose(result["plate_precision"], 1 / 3)  # three predictions, one exact
    assert math.isclose(result["char_accuracy"], 1 - 1 / 14)  # one wrong character out of 14


def test_metric_without_detections(tmp_path):
    path = tmp_path / "val.json"
    path.write_text(json.dumps({"images": [{"id": 1, "plates": [{"box": [0, 0, 10, 10], "text": "12A3456"}]}]}))
    metric = PlateReadingMetric(ann_file=str(path))
    empty = {
        "img_id": 1,
        "pred_instances": {
            "bboxes": torch.zeros((0, 4)),
            "labels": torch.zeros((0,), dtype=torch.long),
            "scores": torch.zeros((0,)),
        },
    }
    metric.process({}, [empty])
    result = metric.compute_metrics(metric.results)
    assert result["eir"] == 0.0 and result["char_accuracy"] == 0.0 and math.isnan(result["plate_precision"])


# --------------------------------------------------------------------------------------------- PlateZoomCrop


def _crop_results(boxes, labels, hw=(720, 1280)):
    from mmdet.structures.bbox import HorizontalBoxes

    img = np.zeros((*hw, 3), np.uint8)
    return {
        "img": img,
        "img_shape": hw,
        "gt_bboxes": HorizontalBoxes(np.array(boxes, np.float32).reshape(-1, 4)),
        "gt_bboxes_labels": np.array([spec.class_id(c) for c in labels], np.int64),
        "gt_ignore_flags": np.zeros(len(labels), bool),
    }


def test_plate_zoom_crop_centres_a_plate_and_moves_its_boxes():
    from alpr.model.plugins import PlateZoomCrop

    np.random.seed(0)
    boxes = [[600, 400, 700, 430], [610, 405, 620, 425], [100, 100, 120, 120]]
    out = PlateZoomCrop(prob=1.0, shift=0.0, margin_range=(0.5, 0.5), height_range=(3.0, 3.0))(
        _crop_results(boxes, ["plate_one_line", "1", "2"])
    )
    assert out["img"].shape[:2] == out["img_shape"] == (113, 200)  # 2 plate widths x 9/16 of that (rounded out)
    got = out["gt_bboxes"].tensor.numpy()
    assert np.allclose(got[0], [50, 42, 150, 72]) and np.allclose(got[1], [60, 47, 70, 67])
    assert list(out["gt_bboxes_labels"]) == [spec.class_id("plate_one_line"), spec.class_id("1")]  # "2" is outside
    assert len(out["gt_ignore_flags"]) == 2


def test_plate_zoom_crop_drops_boxes_mostly_cut_off():
    from alpr.model.plugins import PlateZoomCrop

    np.random.seed(0)
    # The crop spans x 550-750; a character at 740-770 keeps a third of its area: dropped; one at 545-575 keeps 5/6.
    boxes = [[600, 400, 700, 430], [740, 405, 770, 425], [545, 405, 575, 425]]
    out = PlateZoomCrop(prob=1.0, shift=0.0, margin_range=(0.5, 0.5), height_range=(3.0, 3.0))(
        _crop_results(boxes, ["plate_one_line", "1", "2"])
    )
    assert [spec.CLASSES[i] for i in out["gt_bboxes_labels"]] == ["plate_one_line", "2"]
    assert np.allclose(out["gt_bboxes"].tensor.numpy()[1], [0, 47, 25, 67])


def test_plate_zoom_crop_leaves_images_without_a_readable_plate():
    from alpr.model.plugins import PlateZoomCrop

    results = _crop_results([[600, 400, 620, 405], [10, 10, 20, 30]], ["plate_one_line", "3"])
    out = PlateZoomCrop(prob=1.0, min_plate_px=24)(results)
    assert out["img"].shape[:2] == (720, 1280) and len(out["gt_bboxes_labels"]) == 2
    empty = PlateZoomCrop(prob=1.0)(_crop_results([], []))
    assert empty["img"].shape[:2] == (720, 1280) and len(empty["gt_bboxes_labels"]) == 0
    never = PlateZoomCrop(prob=0.0)(_crop_results([[600, 400, 700, 430]], ["plate_one_line"]))
    assert never["img"].shape[:2] == (720, 1280)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"prob": 1.5}, "prob"),
        ({"margin_range": (0.7, 0.3)}, "margin_range"),
        ({"height_range": (-1.0, 2.0)}, "height_range"),
        ({"min_visible": 2.0}, "min_visible"),
    ],
)
def test_plate_zoom_crop_rejects_bad_parameters(kwargs, field):
    from alpr.model.plugins import PlateZoomCrop

    with pytest.raises(ValueError, match=field):
        PlateZoomCrop(**kwargs)


def test_plate_zoom_crop_central_takes_the_plate_nearest_the_centre_with_its_geometry():
    from alpr.model.plugins import PlateZoomCrop

    np.random.seed(0)
    # 1280 x 720: the plate at 600-700 is central, the one at 50-150 is not; both are wide enough.
    boxes = [[50, 50, 150, 80], [600, 350, 700, 380], [610, 355, 620, 375]]
    transform = PlateZoomCrop(prob=1.0, geometry="reader", central=True, shift=0.0)
    for _ in range(5):
        out = transform(_crop_results(boxes, ["plate_one_line", "plate_one_line", "1"]))
        got = out["gt_bboxes"].tensor.numpy()
        assert [spec.CLASSES[i] for i in out["gt_bboxes_labels"]] == ["plate_one_line", "1"]
        width = out["img"].shape[1]
        # reader margins: 0.6-1.4 x 0.25 of the plate's width either side of it
        assert 100 * 1.3 - 1 <= width <= 100 * 1.7 + 1
        assert 0.15 * 100 - 1 <= got[0, 0] <= 0.35 * 100 + 1
    assert "geometry='reader'" in repr(transform)


def test_plate_zoom_crop_rejects_an_unknown_geometry():
    from alpr.model.plugins import PlateZoomCrop

    with pytest.raises(ValueError, match="unknown crop geometry 'tiles'"):
        PlateZoomCrop(geometry="tiles")
