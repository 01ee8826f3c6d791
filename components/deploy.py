"""Deploy: serve the selected model when it beats the served one on EIR; the decision is recorded and shown."""

from kfp import dsl
from kfp.dsl import Input, Markdown, Metrics, Model, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def deploy(
    model: Input[Model],
    deploy_target: str,
    min_eir_improvement: float,
    decision: Output[Markdown],
    metrics: Output[Metrics],
) -> str:
    """Compare the selected model's test EIR with the served model's and deploy it if it is higher.

    On a cluster (target ``kubernetes``; ``auto``, the default, chooses it inside a pod) the KServe
    InferenceService is created, or its ``storageUri`` patched, through the Kubernetes API; locally the decision is
    recorded and the ``make serve`` command for the model is shown. The decision and
    its reason are recorded in the metadata store (``deployments``), with the task's run (``ALPR_RUN_NAME``). A
    failed deployment is recorded as ``failed`` and fails the task.

    Args:
        model: Evaluate's selected model (run after Test, which records its test EIR).
        deploy_target: ``auto``, ``local`` or ``kubernetes`` (``alpr.kubeflow.kserve.DEPLOY_TARGETS``; ``""``:
            ``auto``). ``auto``: ``$ALPR_DEPLOY_TARGET`` when set, else ``kubernetes`` in a cluster's pod, else
            ``local``.
        min_eir_improvement: how much higher the new EIR must be than the served one (0: strictly higher).
        decision: Markdown: the decision, its reason, both EIR figures, the InferenceService or serve command.
        metrics: ``deploy_new_eir``, ``deploy_served_eir`` (when a model was served) and ``deployed`` (1 or 0).

    Returns:
        the action: ``deployed`` or ``skipped``.
    """
    from pathlib import Path

    from alpr import logs
    from alpr.settings import load_settings
    from alpr.steps.deploy import decision_markdown, deploy_step
    from alpr.steps.runs import current_run

    logs.setup()
    settings = load_settings()
    out = deploy_step(
        settings,
        model_dir=Path(model.path),
        run_name=current_run(settings),
        target=deploy_target,
        min_improvement=min_eir_improvement,
    )
    Path(decision.path).write_text(decision_markdown(out), encoding="utf-8")
    shown = {
        "action": out.action,
        "reason": out.reason,
        "target": out.target,
        "model_id": out.model_id,
        "model_uri": out.model_uri,
        "deployment_id": out.deployment_id,
        "served_model_id": out.served_model_id,
    }
    decision.metadata.update({k: v for k, v in shown.items() if v is not None})
    if out.serve_commands:
        decision.metadata["serve_command"] = out.serve_commands[0]
    if out.new_eir is not None:
        metrics.log_metric("deploy_new_eir", out.new_eir)
    if out.served_eir is not None:
        metrics.log_metric("deploy_served_eir", out.served_eir)
    metrics.log_metric("deployed", 1.0 if out.action == "deployed" else 0.0)
    return out.action
