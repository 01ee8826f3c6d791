"""COCO mAP of served detections (alpr.model.detection_map), against pycocotools on hand-made splits."""

import json
import math

import numpy as np
import pytest

from alpr import spec
from alpr.model.detection_map import detection_map


def _split(tmp_path, boxes_per_image):
    """A COCO split: per image a list of ``(class name, x1, y1, x2, y2)``."""
    images, anns = [], []
    for i, boxes in enumerate(boxes_per_image, start=1):
        images.append({"id": i, "file_name": f"images/{i}.jpg", "width": 640, "height": 480})
        for name, x1, y1, x2, y2 in boxes:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": spec.class_id(name) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": k + 1, "name": c} for k, c in enumerate(spec.CLASSES)]
    path = tmp_path / "val.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    return path


def _dets(boxes, scores=None):
    labels = np.array([spec.class_id(b[0]) for b in boxes], dtype=np.int64)
    xyxy = np.array([b[1:] for b in boxes], dtype=np.float64).reshape(-1, 4)
    return xyxy, labels, np.ones(len(boxes)) if scores is None else np.asarray(scores, dtype=np.float64)


TRUTH = [
    [("plate_one_line", 100, 100, 300, 150), ("1", 110, 110, 130, 140), ("A", 140, 110, 160, 140)],
    [("plate_two_line", 50, 50, 150, 100), ("7", 60, 70, 80, 95)],
]


def test_exact_detections_score_one(tmp_path):
    ann = _split(tmp_path, TRUTH)
    assert detection_map(ann, [_dets(b) for b in TRUTH]) == {"mAP": pytest.approx(1.0), "mAP_50": pytest.approx(1.0)}


def test_boxes_off_by_a_third_pass_at_iou_half_but_not_above(tmp_path):
    ann = _split(tmp_path, TRUTH)
    # Every box shifted right by 20 % of its width: IoU = 0.8 / 1.2 = 0.67.
    shifted = [[(n, x1 + 0.2 * (x2 - x1), y1, x2 + 0.2 * (x2 - x1), y2) for n, x1, y1, x2, y2 in b] for b in TRUTH]
    got = detection_map(ann, [_dets(b) for b in shifted])
    assert got["mAP_50"] == pytest.approx(1.0) and 0.2 < got["mAP"] < 0.5


def test_no_detections_score_zero_and_no_truth_is_undefined(tmp_path):
    ann = _split(tmp_path, TRUTH)
    empty = (np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0))
    assert detection_map(ann, [empty, empty]) == {"mAP": 0.0, "mAP_50": 0.0}
    no_truth = _split(tmp_path, [[], []])
    assert all(math.isnan(v) for v in detection_map(no_truth, [empty, empty]).values())


def test_errors_name_the_mismatch(tmp_path):
    ann = _split(tmp_path, TRUTH)
    with pytest.raises(ValueError, match="1 detections for the 2 images"):
        detection_map(ann, [_dets(TRUTH[0])])
    bad = (np.array([[0.0, 0, 10, 10]]), np.array([17]), np.array([0.9]))
    with pytest.raises(ValueError, match=r"label 17 of image images/1\.jpg"):
        detection_map(ann, [bad, _dets(TRUTH[1])])
