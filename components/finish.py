"""Finish: the pipeline's exit handler; records how the run ended (succeeded, failed, canceled)."""

from kfp import dsl

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def finish(status: dsl.PipelineTaskFinalStatus) -> str:
    """Set the run's status in the metadata store from the final status of the pipeline's other tasks.

    The exit task of ``dsl.ExitHandler``: it runs after Deploy, or after the first failed task, and is the last
    word on the run's ``pipeline_runs`` status (:func:`alpr.steps.runs.finish_run_step`). The run is the task's
    ``ALPR_RUN_NAME``, as for every step. kfp.local runs no exit handler: :mod:`pipelines.run` makes the same call
    after a local run.

    Args:
        status: filled in by KFP: the state of the exit handler's group (``COMPLETE``/``SUCCEEDED``, ``FAILED``,
            ``CANCELED``), its task name and error, if any.

    Returns:
        the run's status: ``succeeded``, ``failed`` or ``canceled``.
    """
    from alpr import logs
    from alpr.settings import load_settings
    from alpr.steps.runs import current_run_name, finish_run_step

    logs.setup()
    error = status.error_message or ""
    outcome = finish_run_step(
        load_settings(),
        run_name=current_run_name(),
        state=status.state,
        message=error,
        failed_task=status.pipeline_task_name or "",
    )
    return outcome.status
