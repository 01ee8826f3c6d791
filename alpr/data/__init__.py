"""Data: annotations in, versioned COCO training sets out.

- :mod:`alpr.data.labelme` -- validate and normalise labelme files against the plate contract (``docs/PLATE_SPEC.md``).
- :mod:`alpr.data.coco` -- labelme → COCO train/val/test splits with the plates' ground-truth texts.
- :mod:`alpr.data.synth` -- synthetic plates drawn onto real photographs, with exact labelme annotations.
- :mod:`alpr.data.repo` -- the dataset git repository (gitpython) with its images in DVC.
- :mod:`alpr.data.versions` -- annotation and training versions: git tag + DVC push + metadata rows, all or nothing.
- :mod:`alpr.data.bootstrap` -- the first annotation version of a new workspace (synthetic plates).
"""
