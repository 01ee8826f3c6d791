"""PlateReadingMetric: the mmengine metric that feeds EIR etc. into validation, TensorBoard and save_best."""

import json
import math

import numpy as np
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
