"""Hyperparameter tuning: one search space, two engines.

- :mod:`alpr.tuning.space`: the search space (Katib parameter types ``double``/``int``/``discrete``/``categorical``,
  ``uniform``/``logUniform``), the single source both engines are built from.
- :mod:`alpr.tuning.collector`: the metric line format the trials print and its Katib metrics-collector filter.
- :mod:`alpr.tuning.trial`: the trial entry point (``python -m alpr.tuning.trial``): trains one configuration with
  :func:`alpr.training.train` and prints the metrics after every validation.
- :mod:`alpr.tuning.katib`: the Katib ``Experiment`` (kubeflow.org/v1beta1): render, submit, follow, best trial.
- :mod:`alpr.tuning.local`: the local twin on Optuna (same space, same entry point, same metric format).
- :mod:`alpr.tuning.results`: studies and trials in the metadata store; best parameters for a pipeline run.
- :mod:`alpr.tuning.run`: what ``python pipeline.py --katib`` and the pipeline's Tune step call.

Nothing here imports torch, mmdet or Optuna at import time; each module imports them where it needs them.
"""
