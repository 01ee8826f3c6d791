# The COCO training version written by the pipeline's Record step:
#   <data_root>/annotations/{train,val,test}.json, <data_root>/images/*.jpg
# Set by alpr.model.training.build_config, so not here: each dataset's metainfo (the classes, alpr.spec.CLASSES),
# data_root and ann_file; the evaluators' ann_file; the input size (scale, crop_size and Pad size of the
# pipelines); the training batch_size; num_workers and persistent_workers of every dataloader.
dataset_type = "CocoDataset"
backend_args = None

# No flips: a mirrored character is another glyph (the original project flipped them).
train_pipeline = [
    dict(type="LoadImageFromFile", backend_args=backend_args),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="RandomResize", ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type="RandomCrop", allow_negative_crop=False, recompute_bbox=False),
    dict(type="YOLOXHSVRandomAug"),
    dict(type="Pad", pad_val=dict(img=(114, 114, 114))),
    dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile", backend_args=backend_args),
    dict(type="Resize", keep_ratio=True),
    dict(type="Pad", pad_val=dict(img=(114, 114, 114))),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
]
train_dataloader = dict(
    sampler=dict(type="DefaultSampler", shuffle=True),
    batch_sampler=None,
    dataset=dict(
        type=dataset_type,
        data_prefix=dict(img=""),
        filter_cfg=dict(filter_empty_gt=True, min_size=1),
        pipeline=train_pipeline,
        backend_args=backend_args,
    ),
)
val_dataloader = dict(
    batch_size=4,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_prefix=dict(img=""),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args,
    ),
)
test_dataloader = val_dataloader
val_evaluator = [
    dict(type="CocoMetric", metric="bbox", format_only=False, backend_args=backend_args),
    dict(type="PlateReadingMetric"),
]
test_evaluator = val_evaluator
