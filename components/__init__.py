"""KFP v2 components of the ALPR pipeline: Record, Train, Evaluate, Test.

Each module holds one lightweight Python component: a typed signature, Input/Output artifacts, an Args/Returns
docstring, and a body that imports the ``alpr`` library and delegates the work to :mod:`alpr.steps`. The image
(``ALPR_COMPONENT_IMAGE``) has the library installed; locally ``kfp.local.SubprocessRunner`` runs the same
functions in this Python environment.
"""

import os

#: Container image with the ``alpr`` library installed (built from the project's Dockerfile).
COMPONENT_IMAGE = os.environ.get("ALPR_COMPONENT_IMAGE", "ghcr.io/alpr-kubeflow/alpr-components:0.1.0-python3.11")
