"""The two-stage reader's crop dataset (alpr.model.reader_data)."""

import json

import cv2
import numpy as np
import pytest

from alpr import spec
from alpr.model.crops import READER_GEOMETRY, ZOOM_GEOMETRY, CropGeometry, zoom_crop
from alpr.model.reader_data import (
    CONTEXT_HEIGHT_FACTOR,
    CONTEXT_MARGIN_X,
    context_geometry,
    write_reader_dataset,
)

PLATE = spec.class_id("plate_one_line") + 1  # COCO category ids are 1-based


def _coco_version(root, plates_per_split):
    """A hand-made COCO training version: one 1280x720 frame per split with the given plates
    ``[(x, y, w, h, text)]``, each with a character box per character."""
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    categories = [{"id": i + 1, "name": c} for i, c in enumerate(spec.CLASSES)]
    for split, plates in plates_per_split.items():
        name = f"images/{split}.jpg"
        cv2.imwrite(str(root / name), np.full((720, 1280, 3), 90, np.uint8))
        anns, records = [], []
        for x, y, w, h, text in plates:
            anns.append({"id": len(anns) + 1, "image_id": 1, "category_id": PLATE, "bbox": [x, y, w, h], "iscrowd": 0})
            for k, char in enumerate(text):
                cw = w / len(text)
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": 1,
                        "category_id": spec.class_id(char) + 1,
                        "bbox": [x + k * cw, y + 0.1 * h, cw * 0.9, 0.8 * h],
                        "iscrowd": 0,
                    }
                )
            records.append({"box": [x, y, x + w, y + h], "text": text, "layout": "one_line"})
        image = {"id": 1, "file_name": name, "width": 1280, "height": 720, "plates": records}
        coco = {"info": {}, "licenses": [], "categories": categories, "images": [image], "annotations": anns}
        (root / "annotations" / f"{split}.json").write_text(json.dumps(coco))
    return root


def test_train_gets_a_context_crop_and_val_the_inference_crop_per_readable_plate(tmp_path):
    data = _coco_version(
        tmp_path / "coco",
        {
            "train": [(600, 300, 140, 30, "12A3456"), (100, 100, 20, 5, "98B7654")],  # the second is too narrow
            "val": [(600, 300, 140, 30, "12A3456")],
        },
    )
    out = write_reader_dataset(data, tmp_path / "reader", max_side=4096)
    assert out.crops == {"train": 1, "val": 1} and out.skipped == {"train": 1, "val": 0}
    train = json.loads((out.root / "annotations" / "train.json").read_text())
    val = json.loads((out.root / "annotations" / "val.json").read_text())
    x0, y0, x1, y1 = zoom_crop((600, 300, 740, 330), (720, 1280), geometry=READER_GEOMETRY)
    assert (val["images"][0]["width"], val["images"][0]["height"]) == (x1 - x0, y1 - y0)
    # The context crop is wider: CONTEXT_MARGIN_X of the plate's width either side.
    assert train["images"][0]["width"] == round(140 * (1 + 2 * CONTEXT_MARGIN_X))
    assert train["images"][0]["height"] >= 30 * CONTEXT_HEIGHT_FACTOR - 1
    # Every box moved with the crop: the plate and its 7 characters, nothing of the narrow plate.
    for split in (train, val):
        assert len(split["annotations"]) == 8
        assert split["categories"] == json.loads((data / "annotations" / "val.json").read_text())["categories"]
    plate = next(a for a in val["annotations"] if a["category_id"] == PLATE)
    assert plate["bbox"] == pytest.approx([600 - x0, 300 - y0, 140, 30], abs=0.01)
    # Val crops carry their truth for PlateReadingMetric; train crops need none.
    (truth,) = val["images"][0]["plates"]
    assert truth["text"] == "12A3456" and truth["box"] == pytest.approx([600 - x0, 300 - y0, 740 - x0, 330 - y0])
    assert "plates" not in train["images"][0]
    for split in (train, val):
        img = cv2.imread(str(out.root / split["images"][0]["file_name"]))
        assert img.shape[:2] == (split["images"][0]["height"], split["images"][0]["width"])


def test_crops_are_shrunk_to_max_side_with_their_boxes(tmp_path):
    data = _coco_version(tmp_path / "coco", {"train": [(300, 300, 400, 90, "12A3456")], "val": []})
    out = write_reader_dataset(data, tmp_path / "reader", max_side=256)
    train = json.loads((out.root / "annotations" / "train.json").read_text())
    image = train["images"][0]
    assert max(image["width"], image["height"]) == 256
    scale = 256 / round(400 * (1 + 2 * CONTEXT_MARGIN_X))
    plate = next(a for a in train["annotations"] if a["category_id"] == PLATE)
    assert plate["bbox"][2] == pytest.approx(400 * scale, rel=0.01)
    assert out.crops["val"] == 0


def test_a_neighbour_plate_cut_by_the_crop_is_not_truth_and_its_cut_characters_are_dropped(tmp_path):
    # The second plate starts 10 px right of the first: partly inside the first plate's val crop.
    data = _coco_version(
        tmp_path / "coco", {"train": [], "val": [(400, 300, 140, 30, "12A3456"), (550, 300, 140, 30, "65E4321")]}
    )
    out = write_reader_dataset(data, tmp_path / "reader", max_side=4096)
    val = json.loads((out.root / "annotations" / "val.json").read_text())
    first = val["images"][0]
    assert [p["text"] for p in first["plates"]] == ["12A3456"]
    boxes = [a for a in val["annotations"] if a["image_id"] == first["id"]]
    assert all(a["bbox"][0] + a["bbox"][2] <= first["width"] + 0.01 for a in boxes)
    assert out.crops == {"train": 0, "val": 2}


def test_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="max_side"):
        write_reader_dataset(tmp_path, tmp_path / "out", max_side=0)
    with pytest.raises(FileNotFoundError, match="train.json"):
        write_reader_dataset(tmp_path, tmp_path / "out", max_side=256)
    data = _coco_version(tmp_path / "coco", {"train": [(600, 300, 140, 30, "12A3456")], "val": []})
    (data / "images" / "train.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"train\.jpg: not a decodable image"):
        write_reader_dataset(data, tmp_path / "reader", max_side=256)


def test_the_context_crop_holds_every_jittered_crop_of_the_readers_geometry():
    """A train context crop is cut so that PlateZoomCrop (central, default jitter) finds the whole crop it draws
    inside it, for either geometry: the reader's keeps its constants, the zoom reader's is wider."""
    from mmdet.structures.bbox import HorizontalBoxes

    from alpr.model.plugins import PlateZoomCrop

    assert context_geometry(READER_GEOMETRY) == CropGeometry(
        CONTEXT_MARGIN_X, CONTEXT_HEIGHT_FACTOR, READER_GEOMETRY.min_aspect
    )
    wide = context_geometry(ZOOM_GEOMETRY)
    assert wide.margin_x == pytest.approx(0.88) and wide.height_factor == pytest.approx(3.9)
    np.random.seed(0)
    for geometry, name in ((READER_GEOMETRY, "reader"), (ZOOM_GEOMETRY, "zoom")):
        for w, h in ((140, 30), (100, 50), (300, 60)):  # one-line, two-line, a large plate
            frame = np.zeros((2000, 3000, 3), np.uint8)
            x, y = 1400.0, 950.0
            context = zoom_crop((x, y, x + w, y + h), frame.shape[:2], geometry=context_geometry(geometry))
            cx0, cy0, cx1, cy1 = context
            plate = [x - cx0, y - cy0, x + w - cx0, y + h - cy0]  # the plate in the context crop
            crop = PlateZoomCrop(prob=1.0, geometry=name, central=True)
            for _ in range(200):
                results = {
                    "img": np.zeros((cy1 - cy0, cx1 - cx0, 3), np.uint8),
                    "gt_bboxes": HorizontalBoxes(np.array([plate], np.float32)),
                    "gt_bboxes_labels": np.array([spec.class_id("plate_one_line")]),
                    "gt_ignore_flags": np.array([False]),
                }
                out = crop.transform(results)
                # Not clipped by the context crop's border: the plate is inside and not at the crop's edge.
                (box,) = out["gt_bboxes"].tensor.numpy()
                assert box[0] > 0.05 * w and box[2] < out["img"].shape[1] - 0.05 * w, (name, w, h)
