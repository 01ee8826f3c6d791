"""KFP v2 components of the ALPR pipeline: Record, Tune, Train, Evaluate, Test, Deploy, and Finish (the exit handler).

Each module holds one lightweight Python component: a typed signature, Input/Output artifacts, an Args/Returns
docstring, and a body that imports the ``alpr`` library inside it, makes one call to the step of the same name
(:mod:`alpr.steps`) and copies the fields of its typed result onto the output artifacts and metrics. The image
(``ALPR_COMPONENT_IMAGE``) has the library installed; locally ``kfp.local.SubprocessRunner`` runs the same
functions in this Python environment. No component takes the run's name as an input (it would change every cache
key, every run): each reads ``ALPR_RUN_NAME`` (:func:`alpr.steps.runs.current_run_name`).
"""

from alpr.defaults import component_image

#: Container image with the ``alpr`` library installed (built from the project's Dockerfile); read once, when the
#: components are defined (``ALPR_COMPONENT_IMAGE`` overrides :data:`alpr.defaults.DEFAULT_COMPONENT_IMAGE`).
COMPONENT_IMAGE = component_image()
