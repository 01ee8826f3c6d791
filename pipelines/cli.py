"""The ``alpr`` console script: one program, one sub-command per job.

    alpr run [--epochs 16 …]            run the pipeline (kfp.local, or a KFP API server with --host)
    alpr compile [-o alpr_pipeline.yaml] compile the pipeline to KFP IR YAML
    alpr tune [--tune-max-trials 12 …]  tune hyperparameters (Katib Experiment, or the local Optuna twin)
    alpr serve --model latest           serve a model with KServe (V1 + V2 REST)
    alpr predict --model latest IMG…    read plates in image files
    alpr export-onnx MODEL_DIR          add the ONNX export to an older model directory
    alpr deploy --model latest          decide, record (and on a cluster apply) the InferenceService
    alpr monitor [--port 8090 …]        the monitor: prediction log, metrics and drift, the review page
    alpr data synth|import|register|list|show …   annotation versions (= python -m dataset_tools)
    alpr db init                        create the metadata store's tables

Every sub-command has its own ``--help``. Each is the ``main(argv)`` of the module that owns the job, imported only
when it is chosen, so ``alpr serve`` does not load KFP and ``alpr compile`` does not load kserve.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Command:
    """A sub-command: ``target`` is ``"module:function"``, called as ``function(argv)`` (plus ``kwargs``) and
    returning the exit code."""

    name: str
    help: str
    target: str
    kwargs: tuple[tuple[str, object], ...] = ()

    def resolve(self) -> Callable[..., int]:
        """Import the target module and return its function (``ImportError``/``AttributeError`` if missing)."""
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module), function)

    def __call__(self, argv: list[str]) -> int:
        return int(self.resolve()(argv, **dict(self.kwargs)) or 0)


#: The sub-commands, in ``alpr --help`` order.
COMMANDS: Final[tuple[Command, ...]] = (
    Command(
        "run",
        "run the pipeline: kfp.local on the embedded defaults, or a KFP API server (--host)",
        "pipelines.run:main",
        (("mode", "run"),),
    ),
    Command("compile", "compile the pipeline to KFP IR YAML", "pipelines.run:main", (("mode", "compile"),)),
    Command(
        "tune",
        "tune hyperparameters: a Katib Experiment on a cluster, the local Optuna twin without one",
        "pipelines.run:main",
        (("mode", "katib"),),
    ),
    Command("serve", "serve a model with KServe (V1 + V2 REST, /metrics)", "alpr.serving.server:main"),
    Command("predict", "read the plates in image files with a model", "alpr.serving.predict:main"),
    Command(
        "export-onnx",
        "add the ONNX export (what the serving image reads) to a model directory without one",
        "alpr.serving.export:main",
    ),
    Command(
        "deploy",
        "serve a model if it beats the served one: decide, record, apply the InferenceService",
        "alpr.steps.deploy:main",
    ),
    Command(
        "monitor",
        "the monitor: KServe's logged predictions, Prometheus metrics and drift, the review page",
        "alpr.monitoring.cli:main",
    ),
    Command("data", "annotation versions: synth, import, register, list, show", "dataset_tools.__main__:main"),
    Command("db", "the metadata store: upgrade, init, current, check, history …", "alpr.metadata.cli:main"),
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: ``alpr COMMAND [ARGS…]``; the arguments after COMMAND belong to the command."""
    parser = argparse.ArgumentParser(
        prog="alpr",
        description="ALPR on Kubeflow: plate-reader MLOps.",
        epilog="Run 'alpr COMMAND --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub.add_parser(command.name, help=command.help, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``alpr`` with ``argv`` (default ``sys.argv[1:]``); return the chosen command's exit code (2: usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    commands = {c.name: c for c in COMMANDS}
    if not argv or argv[0] not in commands:
        try:  # prints the help for -h, or the usage and an error naming the valid commands
            parser.parse_args(argv[:1])
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 2
        return 2
    try:
        return commands[argv[0]](argv[1:])
    except SystemExit as exc:  # a command's argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else 1


if __name__ == "__main__":
    sys.exit(main())
