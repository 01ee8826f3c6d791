"""The model: mmdetection training, evaluation and plate reading.

- :mod:`alpr.model.reading` -- plates and their texts from character and plate detections (PLATE_SPEC reading order).
- :mod:`alpr.model.metrics` -- EIR, plate precision, character accuracy; the evaluator's metric names.
- :mod:`alpr.model.plugins` -- mmdetection registry entries: the plate-reading metric, the EIR checkpoint hook.
- :mod:`alpr.model.checkpoints` -- loading this project's own full training checkpoints under torch >= 2.6.
- :mod:`alpr.model.training` -- ``Hyperparameters``, the merged mmdetection config, training with mmengine's Runner.
- :mod:`alpr.model.evaluation` -- COCO mAP + reading metrics per checkpoint, model selection, threshold sweeps, the selected model's
  reading settings (``tune_reading``).
- :mod:`alpr.model.inference` -- model directories and ``PlateReader`` (detector pass, zoomed second pass, reading).
- :mod:`alpr.model.report` -- the self-contained HTML test report (boxes, texts, mistakes first).

mmdet, mmengine and torch are imported inside the functions that need them, never at import time.
"""
