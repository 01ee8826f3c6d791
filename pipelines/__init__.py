"""The orchestration layer on top of the components: the KFP pipeline and the project's command line.

- :mod:`pipelines.alpr_train` -- the KFP v2 pipeline ``alpr-train`` (Record → Tune → Train → Evaluate → Test →
  Deploy), its parameters and their defaults, and compiling it to KFP IR YAML.
- :mod:`pipelines.run` -- running it: locally with ``kfp.local`` on the embedded defaults, on a Kubeflow Pipelines
  API server, or tuning with Katib / Optuna; the command line of ``python pipeline.py`` and of ``alpr run``,
  ``alpr compile`` and ``alpr tune``.
- :mod:`pipelines.cli` -- the ``alpr`` console script: one program, one sub-command per job.

Nothing in :mod:`alpr` imports this package (``make lint`` checks it): the library stays usable without KFP's
pipeline layer, and the components and the pipeline sit on top of it.
"""
