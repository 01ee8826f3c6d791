# The zoom reader of the two-stage design (docs/detection_design.md, "The zoom reader"): the reader of
# rtmdet_tiny_reader_alpr.py, but reading the one-detector design's zoom crop (alpr.model.crops.ZOOM_GEOMETRY: the
# plate half the crop's width, at least 16:9), as the default model's zoom pass does. Meant for 320 px
# (--input-size 320) and for data that mixes classic and road frames (--bootstrap-conditions classic+road): the
# classic frames' large plates teach the glyphs, the road frames' plates the night, blur, angles and JPEG.
# Only the crop geometry differs from the base; mmengine replaces a list whole, so the pipeline is restated.
_base_ = ["rtmdet_tiny_reader_alpr.py"]
backend_args = None
train_pipeline = [
    dict(type="LoadImageFromFile", backend_args=backend_args),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="PlateZoomCrop", prob=1.0, geometry="zoom", central=True),
    dict(type="RandomResize", ratio_range=(0.8, 1.25), keep_ratio=True),
    dict(type="RandomCrop", allow_negative_crop=False, recompute_bbox=False),
    dict(type="YOLOXHSVRandomAug"),
    dict(type="Pad", size_divisor=32, pad_val=dict(img=(114, 114, 114))),
    dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type="PackDetInputs"),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
