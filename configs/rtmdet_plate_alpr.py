# The plate detector of the two-stage reader (docs/detection_design.md): a narrower RTMDet (widen 0.25: a third
# of RTMDet-tiny's multiply-adds) that finds plate outlines (2 classes) in the whole frame at a high input
# resolution, so that a plate 3-5 % of a 1920-px frame wide is still 20-30 px wide at the detector's input. The
# characters are then read from a zoomed crop of each plate by the reader (rtmdet_tiny_reader_alpr.py).
# Training sees the same object scale as inference at a fraction of its cost: each frame is resized around the
# detector's input size (scale jitter 0.5-1.5) and a fixed square crop of it is taken.
# Set by alpr.model.training.build_plate_config, so not here: the classes (alpr.spec.PLATE_LABELS) and
# num_classes, the input size (Resize scale) and the training crop size (RandomCrop crop_size, Pad size), data
# location, schedule and workers, as for the reader.
_base_ = [
    "_base_/models/rtmdet_tiny.py",
    "_base_/datasets/alpr_coco.py",
    "_base_/schedules/adamw_cosine.py",
    "_base_/default_runtime.py",
]
model = dict(
    backbone=dict(widen_factor=0.25),
    neck=dict(in_channels=[64, 128, 256], out_channels=64),
    bbox_head=dict(in_channels=64, feat_channels=64),
    # Up to 4 plates a frame: keep few boxes. One plate is one crop to read: class-agnostic NMS keeps one layout
    # of a plate found as both.
    test_cfg=dict(max_per_img=20, nms=dict(class_agnostic=True)),
)
backend_args = None
train_pipeline = [
    dict(type="LoadImageFromFile", backend_args=backend_args),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="RandomResize", ratio_range=(0.5, 1.5), keep_ratio=True),
    # Crops without a plate teach the background (road, cars, text) too.
    dict(type="RandomCrop", allow_negative_crop=True, recompute_bbox=False),
    dict(type="YOLOXHSVRandomAug"),
    dict(type="Pad", pad_val=dict(img=(114, 114, 114))),
    dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1), keep_empty=True),
    dict(type="PackDetInputs"),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline, filter_cfg=dict(filter_empty_gt=False, min_size=1)))
# Plates only: the PLATE_SPEC reading metrics need characters, which the reader finds.
val_evaluator = [dict(type="CocoMetric", metric="bbox", format_only=False, backend_args=backend_args)]
test_evaluator = val_evaluator
