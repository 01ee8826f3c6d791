"""The model: mmdetection training, evaluation and plate reading.

- :mod:`alpr.model.reading` -- plates and their texts from character and plate detections (PLATE_SPEC reading order).
- :mod:`alpr.model.metrics` -- EIR, plate precision, character accuracy; the evaluator's metric names.
- :mod:`alpr.model.breakdown` -- the same metrics and recall per plate-width, angle, layout and brightness bucket.
- :mod:`alpr.model.crops` -- the crop geometries around a plate (the zoom pass's, the two-stage reader's), shared by
  inference and training.
- :mod:`alpr.model.reader_data` -- the two-stage reader's training data: every readable plate cut out once.
- :mod:`alpr.model.detection_map` -- COCO mAP of the detections as the model serves them (both stages).
- :mod:`alpr.model.plugins` -- mmdetection registry entries: the plate-reading metric, the timed snapshot hook, the
  plate-centred crop transform of the two-stage reader's training.
- :mod:`alpr.model.checkpoints` -- loading this project's own full training checkpoints under torch >= 2.6.
- :mod:`alpr.model.training` -- ``Hyperparameters``, the merged mmdetection config, training with mmengine's Runner.
- :mod:`alpr.model.warm_start` -- a training that starts from an earlier model's weights (``load_from``): fetching
  the model, refusing a checkpoint that does not fit the config.
- :mod:`alpr.model.evaluation` -- COCO mAP + reading metrics per checkpoint (one detector: mmengine's test loop;
  two stages: ``served_metrics``), model selection, threshold sweeps, the selected model's reading settings
  (``tune_reading``).
- :mod:`alpr.model.inference` -- model directories and ``PlateReader`` (plate detector or detector pass, zoomed
  second pass, reading), and their ONNX export (``export_onnx``).
- :mod:`alpr.model.torch_detector` -- ``PlateReader``'s PyTorch back end: an mmdetection detector through its test
  pipeline (executes the model's ``config.py``).
- :mod:`alpr.model.onnx_detector` -- ``PlateReader``'s ONNX Runtime back end: the export, and mmdetection's
  pre-processing, decoding and NMS in numpy (reads data files only).
- :mod:`alpr.model.report` -- the self-contained HTML test report (breakdown tables, character confusion matrix,
  boxes, per-plate crops with the differing characters marked, mistakes first).

mmdet, mmengine and torch are imported inside the functions that need them, never at import time.
"""
