"""The KFP v2 pipeline ``alpr-train``: annotation version → trained, evaluated, selected, tested, deployed reader.

Record → (Tune) → Train → Evaluate → Test → Deploy, each a component of :mod:`components`, inside an exit handler
whose Finish task sets the run's status in the metadata store. Every parameter, its default and its description
come from :mod:`pipelines.parameters` (built from :mod:`alpr.defaults`), which also feeds the command-line flags of
:mod:`pipelines.run`.

Two graphs are built from the one pipeline function:

- :data:`alpr_pipeline` (compiled, submitted to a cluster): ``dsl.ExitHandler(Finish)`` around the steps; Tune and
  its Train under ``dsl.If(tune)``, the plain Train under ``dsl.Else``, and Evaluate takes ``dsl.OneOf`` of the two
  models, so that a run without tuning shows Tune skipped rather than a green step that did nothing.
- :func:`local_pipeline` (``kfp.local``): kfp 2.16's local runner implements neither ``dsl.ExitHandler``
  (``'dsl.ExitHandler' is not yet support for local execution``) nor ``dsl.OneOf`` (``not yet supported in local
  execution``; kfp/local/orchestrator/orchestrator_utils.py). Its graph is a straight line, Tune in it only when
  ``tune`` is on (known before a local run starts), and :mod:`pipelines.run` finishes the run itself
  (:func:`alpr.steps.runs.finish_run_step`, the call Finish makes).

No task takes the run's name as an input (it would change every task's cache key, every run): the tasks read
``ALPR_RUN_NAME`` (:func:`alpr.steps.runs.current_run_name`), which :func:`~alpr.kubeflow.platform.apply_platform`
sets on a cluster and :mod:`pipelines.run` locally.
"""

# No `from __future__ import annotations` here: KFP reads the pipeline's parameter types from real annotations.

import contextlib
import contextvars
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from kfp import compiler, dsl

from alpr.kubeflow.platform import apply_platform
from components.deploy import deploy
from components.evaluate import evaluate
from components.finish import finish
from components.record import record
from components.test import test
from components.train import train
from components.tune import tune as tune_step
from pipelines.parameters import DEFAULTS, pipeline_docstring

#: The pipeline's name in Kubeflow Pipelines.
PIPELINE_NAME: Final = "alpr-train"
#: The pipeline's description (the KFP UI shows it with the pipeline).
PIPELINE_DESCRIPTION: Final = (
    "ALPR: Record → (Tune) → Train (mmdetection) → Evaluate → Test → Deploy; Finish records the run's status"
)

__all__ = ["DEFAULTS", "PIPELINE_NAME", "alpr_pipeline", "compile_pipeline", "local_pipeline"]

#: None while building the cluster graph; for :func:`local_pipeline`, whether its graph has the Tune step.
_LOCAL_TUNE: contextvars.ContextVar[bool | None] = contextvars.ContextVar("alpr_local_tune", default=None)


@contextlib.contextmanager
def _local_graph(tune: bool) -> Iterator[None]:
    token = _LOCAL_TUNE.set(bool(tune))
    try:
        yield
    finally:
        _LOCAL_TUNE.reset(token)


def _pipeline(
    annotation_version: str = DEFAULTS["annotation_version"],
    train_fraction: float = DEFAULTS["train_fraction"],
    val_fraction: float = DEFAULTS["val_fraction"],
    test_fraction: float = DEFAULTS["test_fraction"],
    split_seed: int = DEFAULTS["split_seed"],
    config: str = DEFAULTS["config"],
    lr: float = DEFAULTS["lr"],
    epochs: int = DEFAULTS["epochs"],
    batch_size: int = DEFAULTS["batch_size"],
    input_size: int = DEFAULTS["input_size"],
    weight_decay: float = DEFAULTS["weight_decay"],
    val_interval: int = DEFAULTS["val_interval"],
    seed: int = DEFAULTS["seed"],
    plate_input_size: int = DEFAULTS["plate_input_size"],
    plate_epochs: int = DEFAULTS["plate_epochs"],
    load_from: str = DEFAULTS["load_from"],
    train_workers: int = DEFAULTS["train_workers"],
    train_gpus_per_worker: int = DEFAULTS["train_gpus_per_worker"],
    selection_metric: str = DEFAULTS["selection_metric"],
    deploy_target: str = DEFAULTS["deploy_target"],
    min_eir_improvement: float = DEFAULTS["min_eir_improvement"],
    tune: bool = DEFAULTS["tune"],
    tune_algorithm: str = DEFAULTS["tune_algorithm"],
    tune_max_trials: int = DEFAULTS["tune_max_trials"],
    tune_parallel: int = DEFAULTS["tune_parallel"],
    tune_max_failed: int = DEFAULTS["tune_max_failed"],
    tune_timeout: int = DEFAULTS["tune_timeout"],
):
    # The docstring (the parameters' descriptions in the compiled pipeline) is pipeline_docstring()'s, set below.
    p = dict(locals())
    local_tune = _LOCAL_TUNE.get()
    if local_tune is not None:  # kfp.local: no exit handler (pipelines.run finishes the run)
        _steps(p, local_tune=local_tune)
        return
    finish_task = finish().set_display_name("Finish")
    apply_platform(finish_task, "finish")
    with dsl.ExitHandler(finish_task, name="ALPR run"):
        _steps(p, local_tune=None)


_pipeline.__doc__ = pipeline_docstring()


def _train(p: dict[str, Any], dataset: Any, hp_override: Any) -> Any:
    """A Train task on ``dataset`` with the pipeline's hyperparameters, ``hp_override`` (Tune's output or "")
    over them."""
    task = train(
        dataset=dataset,
        config=p["config"],
        lr=p["lr"],
        epochs=p["epochs"],
        batch_size=p["batch_size"],
        input_size=p["input_size"],
        weight_decay=p["weight_decay"],
        val_interval=p["val_interval"],
        seed=p["seed"],
        plate_input_size=p["plate_input_size"],
        plate_epochs=p["plate_epochs"],
        load_from=p["load_from"],
        train_workers=p["train_workers"],
        train_gpus_per_worker=p["train_gpus_per_worker"],
        hp_override=hp_override,
    ).set_display_name("Train")
    return apply_platform(task, "train")


def _tune(p: dict[str, Any], dataset: Any) -> Any:
    """The Tune task: a Katib Experiment (cluster) or the Optuna twin (local) → the best hyperparameters (JSON)."""
    task = tune_step(
        dataset=dataset,
        config=p["config"],
        epochs=p["epochs"],
        val_interval=p["val_interval"],
        seed=p["seed"],
        algorithm=p["tune_algorithm"],
        max_trials=p["tune_max_trials"],
        parallel=p["tune_parallel"],
        max_failed=p["tune_max_failed"],
        timeout_s=p["tune_timeout"],
    ).set_display_name("Tune")
    return apply_platform(task, "tune")


def _steps(p: dict[str, Any], local_tune: bool | None) -> None:
    """Record → (Tune) → Train → Evaluate → Test → Deploy with the pipeline's parameters ``p``.

    ``local_tune`` None: Tune under ``dsl.If(tune)`` (the cluster graph); True/False: Tune in the graph or not
    (the straight line of :func:`local_pipeline`). Each task gets its Kubernetes needs (:func:`apply_platform`:
    secrets, PVC, resources, GPU, retries, caching, ``ALPR_RUN_NAME``); kfp.local ignores them.
    """
    rec = record(
        annotation_version=p["annotation_version"],
        train_fraction=p["train_fraction"],
        val_fraction=p["val_fraction"],
        test_fraction=p["test_fraction"],
        split_seed=p["split_seed"],
    ).set_display_name("Record")
    apply_platform(rec, "record")
    dataset = rec.outputs["dataset"]
    if local_tune is None:
        with dsl.If(p["tune"] == True, name="tune on"):  # noqa: E712  (a KFP condition, not a Python comparison)
            tuned = _train(p, dataset, hp_override=_tune(p, dataset).outputs["Output"])
        with dsl.Else(name="tune off"):
            plain = _train(p, dataset, hp_override="")
        candidates = dsl.OneOf(tuned.outputs["model"], plain.outputs["model"])
    elif local_tune:
        candidates = _train(p, dataset, hp_override=_tune(p, dataset).outputs["Output"]).outputs["model"]
    else:
        candidates = _train(p, dataset, hp_override="").outputs["model"]
    ev = evaluate(dataset=dataset, candidates=candidates, selection_metric=p["selection_metric"]).set_display_name(
        "Evaluate"
    )
    apply_platform(ev, "evaluate")
    te = test(dataset=dataset, model=ev.outputs["selected_model"]).set_display_name("Test")
    apply_platform(te, "test")
    dep = (
        deploy(
            model=ev.outputs["selected_model"],
            deploy_target=p["deploy_target"],
            min_eir_improvement=p["min_eir_improvement"],
        )
        .set_display_name("Deploy")
        .after(te)  # Test records the test EIR Deploy compares
    )
    apply_platform(dep, "deploy")


#: The pipeline as compiled and submitted to a cluster (exit handler, Tune under ``dsl.If``).
alpr_pipeline = dsl.pipeline(_pipeline, name=PIPELINE_NAME, description=PIPELINE_DESCRIPTION)


def local_pipeline(tune: bool) -> Any:
    """The pipeline for ``kfp.local`` (the same function, the same parameters): no exit handler, no ``dsl.OneOf``
    (kfp 2.16 runs neither locally), Tune in the graph only when ``tune`` -- the value the run will be given for
    the ``tune`` parameter. The caller finishes the run (:func:`alpr.steps.runs.finish_run_step`).

    Returns:
        a ``GraphComponent`` to call with the parameters under ``kfp.local.init``.
    """
    with _local_graph(tune):
        return dsl.pipeline(_pipeline, name=PIPELINE_NAME, description=PIPELINE_DESCRIPTION)


def compile_pipeline(output: Path) -> Path:
    """Compile :func:`alpr_pipeline` to KFP IR YAML at ``output`` (parent folders created); return ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func=alpr_pipeline, package_path=str(output))
    return output
