"""Dataset command-line tools: ``python -m dataset_tools <command> ...``.

Each command is a module of this package exposing ``add_parser(subparsers)`` (registers its sub-parser) and
``run(args) -> int`` (does the work, returns the exit code); :mod:`dataset_tools.__main__` lists the modules.

- ``synth`` (:mod:`dataset_tools.synth`) -- write synthetic plate images with labelme annotations.
- ``import`` (:mod:`dataset_tools.importer`) -- validate and normalise a labelme folder (also the original
  project's label names); every problem is reported file by file; exit 1 when any file is broken.
- ``register`` (:mod:`dataset_tools.register`) -- publish a validated folder as a new annotation version
  (DVC add + push, git commit + tag, metadata rows; all or nothing).
- ``list`` / ``show`` (:mod:`dataset_tools.versions`) -- the annotation and training versions and what is in each.
"""
