# The reader of the two-stage design (docs/detection_design.md): RTMDet-tiny (plates + characters, 17 classes)
# reading the crop around one plate that the plate detector found (alpr.model.crops.READER_GEOMETRY: the plate and a
# quarter of its width either side, at least 16:9). It trains on the reader dataset that the Train step cuts from
# the training version (alpr.model.reader_data: a context crop around every readable plate), from which
# PlateZoomCrop draws the reader's crop around the central plate with jittered margins, height and centre. The
# crops are landscape, so batches are padded to a multiple of the stride, not to a square: a 256 x 144 crop costs
# 256 x 160, not 256 x 256, as at inference.
_base_ = ["rtmdet_tiny_alpr.py"]
backend_args = None
train_pipeline = [
    dict(type="LoadImageFromFile", backend_args=backend_args),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="PlateZoomCrop", prob=1.0, geometry="reader", central=True),
    dict(type="RandomResize", ratio_range=(0.8, 1.25), keep_ratio=True),
    dict(type="RandomCrop", allow_negative_crop=False, recompute_bbox=False),
    dict(type="YOLOXHSVRandomAug"),
    dict(type="Pad", size_divisor=32, pad_val=dict(img=(114, 114, 114))),
    dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type="PackDetInputs"),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
