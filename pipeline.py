"""The ALPR training pipeline (KFP v2) and its command line.

    python pipeline.py --run                  # no cluster: kfp.local on the embedded defaults (./.alpr)
    python pipeline.py --compile -o alpr.yaml # KFP IR YAML, no cluster needed
    python pipeline.py --run --host URL       # submit to a Kubeflow Pipelines API server
    python pipeline.py --katib                # tune: Katib Experiment on a cluster, else the local Optuna twin

The pipeline is defined in :mod:`pipelines.alpr_train` and run by :mod:`pipelines.run`; the ``alpr`` console script
(``alpr run``, ``alpr compile``, ``alpr tune`` …) does the same. This file keeps the documented command working.
"""

import sys

from pipelines.alpr_train import alpr_pipeline  # noqa: F401  (the pipeline function, for tools that load this file)
from pipelines.run import main

if __name__ == "__main__":
    sys.exit(main())
