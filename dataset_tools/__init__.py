"""Dataset command-line tools: ``python -m dataset_tools <command> ...``.

Each command is a module of this package exposing ``add_parser(subparsers)`` (registers its sub-parser) and
``run(args) -> int`` (does the work, returns the exit code); :mod:`dataset_tools.__main__` lists the modules.

- ``synth`` (:mod:`dataset_tools.synth`) -- write synthetic plate images with labelme annotations.
"""
