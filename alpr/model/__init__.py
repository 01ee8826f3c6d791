"""The model: mmdetection training, evaluation and plate reading.

- :mod:`alpr.model.reading` -- plates and their texts from character and plate detections (PLATE_SPEC reading order).
- :mod:`alpr.model.metrics` -- EIR, plate precision, character accuracy; the evaluator's metric names.
- :mod:`alpr.model.breakdown` -- the same metrics and recall per plate-width, angle, layout and brightness bucket.
- :mod:`alpr.model.crops` -- the zoomed crop around a plate, shared by inference and the reader's training.
- :mod:`alpr.model.plugins` -- mmdetection registry entries: the plate-reading metric, the timed snapshot hook, the
  plate-centred crop transform of the two-stage reader's training.
- :mod:`alpr.model.checkpoints` -- loading this project's own full training checkpoints under torch >= 2.6.
- :mod:`alpr.model.training` -- ``Hyperparameters``, the merged mmdetection config, training with mmengine's Runner.
- :mod:`alpr.model.evaluation` -- COCO mAP + reading metrics per checkpoint, model selection, threshold sweeps, the selected model's
  reading settings (``tune_reading``).
- :mod:`alpr.model.inference` -- model directories and ``PlateReader`` (plate detector or detector pass, zoomed
  second pass, reading).
- :mod:`alpr.model.report` -- the self-contained HTML test report (breakdown tables, character confusion matrix,
  boxes, per-plate crops with the differing characters marked, mistakes first).

mmdet, mmengine and torch are imported inside the functions that need them, never at import time.
"""
