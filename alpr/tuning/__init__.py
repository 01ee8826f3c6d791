"""Hyperparameter tuning: one search space, two engines.

- :mod:`alpr.tuning.space`: the search space (Katib parameter types ``double``/``int``/``discrete``/``categorical``,
  ``uniform``/``logUniform``), the single source both engines are built from.
- :mod:`alpr.tuning.options`: :class:`~alpr.tuning.options.TuningOptions`, a study's settings, defaulting to the
  pipeline's (:mod:`alpr.defaults`).
- :mod:`alpr.tuning.collector`: the metric line format the trials print and its Katib metrics-collector filter.
- :mod:`alpr.tuning.hook`: the mmengine hook that prints those lines after every validation of a trial.
- :mod:`alpr.tuning.data`: the training data a trial trains on (a folder, a training or an annotation version).
- :mod:`alpr.tuning.trial`: the trial entry point (``python -m alpr.tuning.trial``): trains one configuration with
  :func:`alpr.model.training.train` and prints the metrics after every validation.
- :mod:`alpr.tuning.katib`: the Katib ``Experiment`` (kubeflow.org/v1beta1): render, submit, follow, best trial.
- :mod:`alpr.tuning.local`: the local twin on Optuna (same space, same entry point, same metric format).
- :mod:`alpr.tuning.results`: studies and trials in the metadata store; best parameters for a pipeline run.
- :mod:`alpr.tuning.run`: what ``python pipeline.py --katib`` and the pipeline's Tune step call.
- :mod:`alpr.tuning.cli`: the tuning flags of the pipeline's command line (``--katib``, ``--params-from-tuning``).

Nothing here imports torch, mmdet or Optuna at import time; each module imports them where it needs them.
"""
