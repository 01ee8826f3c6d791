# The COCO training version written by the pipeline's Record step:
#   <data_root>/annotations/{train,val,test}.json, <data_root>/images/*.jpg
# data_root and input_size are set by alpr.training.build_config from the pipeline's parameters.
dataset_type = "CocoDataset"
data_root = "data/alpr/"
input_size = (320, 320)
classes = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B", "C", "D", "E",
           "plate_one_line", "plate_two_line")
metainfo = dict(classes=classes)
backend_args = None

# No flips: a mirrored character is another glyph (the original project flipped them).
train_pipeline = [
    dict(type="LoadImageFromFile", backend_args=backend_args),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="RandomResize", scale=input_size, ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type="RandomCrop", crop_size=input_size, allow_negative_crop=False, recompute_bbox=False),
    dict(type="YOLOXHSVRandomAug"),
    dict(type="Pad", size=input_size, pad_val=dict(img=(114, 114, 114))),
    dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile", backend_args=backend_args),
    dict(type="Resize", scale=input_size, keep_ratio=True),
    dict(type="Pad", size=input_size, pad_val=dict(img=(114, 114, 114))),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    batch_sampler=None,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file="annotations/train.json",
        data_prefix=dict(img=""),
        filter_cfg=dict(filter_empty_gt=True, min_size=1),
        pipeline=train_pipeline,
        backend_args=backend_args,
    ),
)
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file="annotations/val.json",
        data_prefix=dict(img=""),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args,
    ),
)
test_dataloader = val_dataloader
val_evaluator = [
    dict(type="CocoMetric", ann_file=data_root + "annotations/val.json", metric="bbox", format_only=False,
         backend_args=backend_args),
    dict(type="PlateReadingMetric", ann_file=data_root + "annotations/val.json"),
]
test_evaluator = val_evaluator
