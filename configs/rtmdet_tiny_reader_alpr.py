# The reader of the two-stage design (docs/detection_design.md): RTMDet-tiny (plates + characters, 17 classes)
# trained on zoomed crops around one plate (PlateZoomCrop, alpr.model.crops: the crop the reader is given at
# inference around each plate the plate detector finds), at the same 320-px input as the one-stage model. The
# crops are landscape (at least 16:9), so batches are padded to a multiple of the stride, not to a square: a
# 320 x 180 crop costs 320 x 192, not 320 x 320, as at inference.
_base_ = ["rtmdet_tiny_alpr.py"]
backend_args = None
train_pipeline = [
    dict(type="LoadImageFromFile", backend_args=backend_args),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="PlateZoomCrop", prob=0.9),
    dict(type="RandomResize", ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type="RandomCrop", allow_negative_crop=False, recompute_bbox=False),
    dict(type="YOLOXHSVRandomAug"),
    dict(type="Pad", size_divisor=32, pad_val=dict(img=(114, 114, 114))),
    dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type="PackDetInputs"),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
