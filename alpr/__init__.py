"""ALPR on Kubeflow: the library shared by the pipeline components, the dataset tools and the model server.

Modules (each with one job):

- :mod:`alpr.spec` -- the plate, label and reading contract (``shared/PLATE_SPEC.md``).
- :mod:`alpr.labelme` / :mod:`alpr.coco` -- labelme validation and conversion to COCO splits.
- :mod:`alpr.synth` -- synthetic plates drawn onto real photographs, with labelme annotations.
- :mod:`alpr.settings` -- URL-shaped backend settings and the local workspace layout.
- :mod:`alpr.metadata` -- the metadata store (SQLAlchemy Core over SQLite or MySQL/pymysql).
- :mod:`alpr.storage` -- blob storage (a folder or ``gs://``).
- :mod:`alpr.dataset_repo` -- dataset versions in git (gitpython) + DVC.
- :mod:`alpr.training` -- mmdetection training (mmengine Runner).
- :mod:`alpr.reading` -- plate reading from detections.
- :mod:`alpr.metrics` -- EIR, plate precision, character accuracy.
- :mod:`alpr.inference` / :mod:`alpr.evaluation` / :mod:`alpr.report` -- prediction, evaluation, HTML report.
"""

__version__ = "0.1.0"
