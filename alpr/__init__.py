"""ALPR on Kubeflow: the library shared by the pipeline components, the dataset tools and the model server.

Modules (each with one job):

- :mod:`alpr.spec` -- the plate, label and reading contract (``docs/PLATE_SPEC.md``).
- :mod:`alpr.data.labelme` / :mod:`alpr.data.coco` -- labelme validation and conversion to COCO splits.
- :mod:`alpr.data.synth` -- synthetic plates drawn onto real photographs, with labelme annotations.
- :mod:`alpr.settings` -- URL-shaped backend settings and the local workspace layout.
- :mod:`alpr.metadata` -- the metadata store (SQLAlchemy Core over SQLite or MySQL/pymysql).
- :mod:`alpr.storage` -- blob storage (a folder or ``gs://``).
- :mod:`alpr.data.repo` -- dataset versions in git (gitpython) + DVC.
- :mod:`alpr.model.training` -- mmdetection training (mmengine Runner).
- :mod:`alpr.model.reading` -- plate reading from detections.
- :mod:`alpr.model.metrics` -- EIR, plate precision, character accuracy.
- :mod:`alpr.model.inference` / :mod:`alpr.model.evaluation` / :mod:`alpr.model.report` -- prediction, evaluation, HTML report.
"""

__version__ = "0.1.0"
