"""The pipeline's steps as plain functions, one module per KFP component (``components/<name>.py``).

Each component body hands its artifacts' paths to one step function here and copies the step's typed result onto
its output artifacts; the work, the metadata rows and the lineage live here so they can be tested directly.

- :mod:`alpr.steps.lineage` -- the typed contract between steps (``DatasetLineage`` → ``CandidatesLineage`` →
  ``ModelLineage``, serialised as ``lineage.json`` in one place) and the Test, Tune and Deploy results.
- :mod:`alpr.steps.runs` -- run bookkeeping: the ``pipeline_runs`` row, marking a run failed, KFP-safe metrics.
- :mod:`alpr.steps.record` -- Record: an annotation version → a recorded training version in the step's folder.
- :mod:`alpr.steps.tune` -- Tune: a hyperparameter search (Katib on a cluster, Optuna locally) → Train's override.
- :mod:`alpr.steps.train` -- Train: hyperparameters (with Tune's override) → candidate checkpoints, published.
- :mod:`alpr.steps.evaluate` -- Evaluate: candidates on val → the selected model, its reading settings, recorded.
- :mod:`alpr.steps.test` -- Test: the held-out split read by the selected model → HTML report, results recorded.
- :mod:`alpr.steps.deploy` -- Deploy: serve the selected model if it beats the served one on EIR; its CLI
  (``alpr deploy``).
"""
