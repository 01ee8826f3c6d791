# The default ALPR detector: RTMDet-tiny finding plates (2 classes) and characters (15 classes) in one stage.
_base_ = [
    "_base_/models/rtmdet_tiny.py",
    "_base_/datasets/alpr_coco.py",
    "_base_/schedules/adamw_cosine.py",
    "_base_/default_runtime.py",
]
