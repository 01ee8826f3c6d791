"""The Deploy step: serve the newly selected model when it beats, on EIR, the model being served.

The decision (:func:`decide`) compares the new model's EIR with the EIR of the model *currently served* at the
target, both read from the metadata store (``evaluations``, by default on the held-out ``test`` split): the
currently served model is the latest ``deployed`` row of the ``deployments`` table for that target. The new model
is deployed when nothing is served yet, or when its EIR is higher by more than ``min_improvement`` (default 0:
strictly higher); otherwise it is skipped. Every decision, with a reason that quotes both EIR figures, is recorded
in ``deployments`` (:meth:`alpr.metadata.MetadataTx.add_deployment`) and returned (:class:`DeployResult`).

Two targets (:data:`alpr.kubeflow.kserve.DEPLOY_TARGETS`; the pipeline parameter ``deploy_target``, ``--target``,
``ALPR_DEPLOY_TARGET``):

- ``local``: the decision is recorded and the command that serves the model on this machine is returned
  (``make serve MODEL=<uri>`` / ``python -m alpr.serving --model <uri>``).
- ``kubernetes``: the KServe InferenceService is created, or its ``storageUri`` merge-patched when it exists
  (:mod:`alpr.kubeflow.kserve`). A failing API call is recorded as ``failed`` (with the error) and raised as
  :class:`~alpr.kubeflow.kserve.DeployError`.

``auto`` (the default) decides (:func:`alpr.kubeflow.kserve.resolve_target`): ``$ALPR_DEPLOY_TARGET`` when it
names one of the two, else ``kubernetes`` inside a pod of a cluster (a pipeline run on Kubeflow), else ``local``.

CLI (``alpr deploy``; also ``python -m alpr.steps.deploy`` and ``python -m alpr.deploy``)::

    alpr deploy [--model latest|ID] [--target auto|local|kubernetes] [--min-eir-improvement X] [--run NAME]
    alpr deploy --model latest --manifest     # print the InferenceService YAML, change nothing
"""

from __future__ import annotations

import argparse
import logging
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from alpr import logs
from alpr.kubeflow.kserve import (
    DEFAULT_EIR_SPLIT,
    DEPLOY_TARGETS,
    LOCAL_TARGET,
    SERVING_PORT,
    DeployError,
    DeploySettings,
    apply_inference_service,
    build_inference_service,
    describe_error,
    format_eir,
    kube_api_client,
)
from alpr.metadata import MetadataError, MetadataStore, NotFound
from alpr.settings import Settings, load_settings
from alpr.spec import SPLITS
from alpr.steps.lineage import DeployResult, ModelLineage, ServiceChange, read_lineage

log = logging.getLogger(__name__)

__all__ = [
    "Decision",
    "decide",
    "decision_markdown",
    "deploy_model",
    "deploy_step",
    "main",
    "serve_commands",
]


# --------------------------------------------------------------------------------------------------- decision


@dataclass(frozen=True)
class Decision:
    """Whether to deploy the new model, and why.

    Attributes:
        deploy: True to serve the new model.
        reason: one human-readable sentence quoting both EIR figures.
        new_eir: the new model's EIR (None when it has none: NaN).
        served_eir: the served model's EIR (None when nothing is served or it has no EIR).
        served_model_id: the served model's id (None when nothing is served).
    """

    deploy: bool
    reason: str
    new_eir: float | None
    served_eir: float | None
    served_model_id: int | None


def decide(
    new_model_id: int,
    new_eir: float | None,
    served_model_id: int | None,
    served_eir: float | None,
    *,
    min_improvement: float = 0.0,
    split: str = DEFAULT_EIR_SPLIT,
    target: str = LOCAL_TARGET,
) -> Decision:
    """Decide whether model ``new_model_id`` replaces the one served at ``target``.

    Deploy when nothing is served, when the served model has no EIR to compare with, or when
    ``new_eir - served_eir > min_improvement``; skip when the new model is the one served, has no EIR (NaN), or
    does not improve enough. EIR is a fraction in [0, 1] (PLATE_SPEC.md).

    Raises:
        ValueError: ``min_improvement`` is negative or not finite, or an EIR is outside [0, 1].
    """
    if not math.isfinite(min_improvement) or min_improvement < 0:
        raise ValueError(f"min_improvement must be a finite number >= 0, got {min_improvement}")
    for what, value in (("new_eir", new_eir), ("served_eir", served_eir)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"{what} must be in [0, 1] (or None), got {value}")
    new = f"model {new_model_id} ({split} EIR {format_eir(new_eir)})"

    def decision(deploy: bool, reason: str) -> Decision:
        return Decision(deploy, reason, new_eir, served_eir, served_model_id)

    if served_model_id is None:
        return decision(
            new_eir is not None,
            f"nothing served at {target} yet: deploying {new}"
            if new_eir is not None
            else f"{new} has no EIR (NaN): not deploying it, and nothing is served at {target}",
        )
    served = f"served model {served_model_id} ({split} EIR {format_eir(served_eir)})"
    if served_model_id == new_model_id:
        return decision(False, f"{new} is already served at {target}")
    if new_eir is None:
        return decision(False, f"{new} has no EIR (NaN): {served} stays")
    if served_eir is None:
        return decision(True, f"{served} has no EIR to compare with: deploying {new}")
    gain = new_eir - served_eir
    if gain > min_improvement:
        return decision(
            True,
            f"{new} beats {served} by {gain:+.4f} (more than the minimum improvement "
            f"{min_improvement:.4f}): deploying it",
        )
    return decision(
        False,
        f"{new} does not beat {served} by more than {min_improvement:.4f} "
        f"(difference {gain:+.4f}): model {served_model_id} stays",
    )


# --------------------------------------------------------------------------------------------------- the step


def serve_commands(model_uri: str) -> list[str]:
    """The commands that serve ``model_uri`` on this machine (``make serve`` and the module itself)."""
    quoted = shlex.quote(model_uri)
    return [f"make serve MODEL={quoted}", f"python -m alpr.serving --model {quoted} --http-port {SERVING_PORT}"]


def _eir(reads, model_id: int, split: str) -> tuple[bool, float | None]:
    """(has an evaluation on ``split``, its EIR or None when NaN/missing) of the model's latest such evaluation."""
    on_split = [e for e in reads.evaluations(model_id) if e["split"] == split]
    if not on_split:
        return False, None
    value = on_split[-1]["metrics"].get("eir")
    return True, (None if value is None or not math.isfinite(float(value)) else float(value))


def deploy_model(
    settings: Settings,
    *,
    model_id: int | None = None,
    run_name: str | None = None,
    min_improvement: float = 0.0,
    deploy_settings: DeploySettings | None = None,
    split: str = DEFAULT_EIR_SPLIT,
    api_client=None,
) -> DeployResult:
    """Decide whether to serve model ``model_id`` (default: the latest selected one), act, record, return.

    The decision reads and the row it writes are in one metadata transaction, together with the API call on a
    cluster: a failing call leaves a ``failed`` row (and nothing else) and raises.

    Args:
        settings: where the metadata store is.
        model_id: the newly selected model (None: :meth:`~alpr.metadata.MetadataStore.latest_selected_model`).
        run_name: the pipeline run deciding (recorded; must exist in the store), or None.
        min_improvement: how much higher the new EIR must be than the served one (>= 0; 0: strictly higher).
        deploy_settings: target, InferenceService name/namespace, runtime, replicas (default: from ``ALPR_*``).
        split: the evaluation split whose EIR is compared (``test``: recorded by the Test step).
        api_client: a ``kubernetes.client.ApiClient`` for a ``kubernetes`` target (default: :func:`kube_api_client`).

    Returns:
        the action (``deployed`` or ``skipped``), its reason, the ``deployments`` row, both EIR figures, the
        serve commands (local target) or the InferenceService created or patched (kubernetes target).

    Raises:
        alpr.metadata.NotFound: no model ``model_id`` / no selected model / no run ``run_name``.
        ValueError: the model has no evaluation on ``split``; a bad ``min_improvement``; a bad
            ``$ALPR_DEPLOY_TARGET`` (target ``auto``).
        DeployError: the deployment itself failed (recorded as ``failed`` first): the cluster cannot read the
            model (:func:`~alpr.kubeflow.kserve.storage_uri`), the API refused, no Kubernetes configuration.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    ds = deploy_settings or DeploySettings()
    store = MetadataStore(settings.db_url)
    store.create_schema()
    model = store.get_model(model_id) if model_id is not None else store.latest_selected_model()
    if model is None:
        raise NotFound(
            f"model id {model_id} does not exist in {store.url_for_display}"
            if model_id is not None
            else f"no selected model in {store.url_for_display}: run the pipeline first"
        )
    has_eval, new_eir = _eir(store, model["id"], split)
    if not has_eval:
        raise ValueError(
            f"model {model['id']} has no {split} evaluation in {store.url_for_display}: "
            f"the Test step records it; run it before Deploy"
        )
    local = ds.target() == LOCAL_TARGET
    target = ds.target_name()
    failure: BaseException | None = None
    service: ServiceChange | None = None
    with store.transaction() as tx:
        served = tx.current_deployment(target)
        served_id = served["model_id"] if served else None
        served_eir = _eir(tx, served_id, split)[1] if served_id is not None else None
        decision = decide(
            model["id"], new_eir, served_id, served_eir, min_improvement=min_improvement, split=split, target=target
        )
        action, reason = ("deployed" if decision.deploy else "skipped"), decision.reason
        if decision.deploy and not local:
            try:
                body = build_inference_service(
                    ds, model_uri=model["uri"], model_id=model["id"], eir=new_eir, run=run_name, split=split
                )
                operation = apply_inference_service(
                    body,
                    api_client if api_client is not None else kube_api_client(ds.kube_context),
                    attempts=ds.deploy_api_attempts,
                )
                service = ServiceChange(
                    name=body["metadata"]["name"], namespace=body["metadata"]["namespace"], operation=operation
                )
                reason += f"; InferenceService {target} {operation}"
            except Exception as exc:  # any failure of the action is recorded, then raised
                failure = exc
                action, reason = "failed", f"{reason}; FAILED: {describe_error(exc)}"
        deployment_id = tx.add_deployment(
            model["id"],
            target,
            action,
            reason,
            new_eir=new_eir,
            served_eir=served_eir,
            served_model_id=served_id,
            storage_uri=model["uri"],
            run=run_name,
        )
    log.info("deploy %s: %s (%s)", target, action, reason)
    if failure is not None:
        raise DeployError(
            f"deploying model {model['id']} to {target} failed (recorded as deployment "
            f"{deployment_id}): {describe_error(failure)}"
        ) from failure
    return DeployResult(
        action=action,
        reason=reason,
        deployment_id=deployment_id,
        target=target,
        model_id=model["id"],
        model_uri=model["uri"],
        new_eir=new_eir,
        served_eir=served_eir,
        served_model_id=served_id,
        split=split,
        serve_commands=serve_commands(model["uri"]) if local else [],
        inference_service=service,
    )


def deploy_step(
    settings: Settings,
    *,
    model_dir: Path,
    run_name: str,
    target: str = "",
    min_improvement: float = 0.0,
    api_client=None,
) -> DeployResult:
    """The pipeline's Deploy step: :func:`deploy_model` for the model Evaluate selected (``model_dir``'s lineage).

    Args:
        settings: the backends.
        model_dir: Evaluate's ``selected_model`` artifact (its :class:`~alpr.steps.lineage.ModelLineage` names the
            model id).
        run_name: the pipeline run.
        target: one of :data:`~alpr.kubeflow.kserve.DEPLOY_TARGETS` (``""``: ``auto``); ``auto`` resolves with
            :func:`~alpr.kubeflow.kserve.resolve_target`.
        min_improvement: see :func:`deploy_model`.
        api_client: see :func:`deploy_model`.

    Raises:
        FileNotFoundError, alpr.steps.lineage.LineageError (a ``ValueError``): ``model_dir`` is not a model
            selected by Evaluate.
        ValueError: an unknown ``target``; see :func:`deploy_model` for the rest.
    """
    lineage = read_lineage(model_dir, ModelLineage)
    if target not in ("", *DEPLOY_TARGETS):
        raise ValueError(f"deploy target must be one of {', '.join(DEPLOY_TARGETS)}, got {target!r}")
    overrides: dict[str, Any] = {"deploy_target": target} if target else {}
    return deploy_model(
        settings,
        model_id=int(lineage.model_id),
        run_name=run_name,
        min_improvement=min_improvement,
        deploy_settings=DeploySettings(**overrides),
        api_client=api_client,
    )


def decision_markdown(result: DeployResult) -> str:
    """The decision as Markdown (the Deploy step's artifact in the KFP UI): the reason, a table of both models
    and EIR figures, and the InferenceService or the commands that serve the model on this machine."""
    rows = [
        ("decision", f"**{result.action}**"),
        ("target", f"`{result.target}`"),
        ("new model", f"{result.model_id} (`{result.model_uri}`)"),
        (f"new {result.split} EIR", format_eir(result.new_eir)),
        ("served model before", "none" if result.served_model_id is None else str(result.served_model_id)),
        (f"served {result.split} EIR", format_eir(result.served_eir)),
    ]
    if result.inference_service is not None:
        isvc = result.inference_service
        rows.append(("InferenceService", f"`{isvc.namespace}/{isvc.name}` {isvc.operation}"))
    lines = ["# Deploy", "", result.reason, "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    if result.serve_commands:
        lines += ["", "Serve it on this machine:", "", "```bash", *result.serve_commands, "```"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------- CLI


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="alpr deploy",
        allow_abbrev=False,
        description="Serve the selected model if it beats the served one on EIR.",
    )
    p.add_argument("--model", default="latest", help="model id, or 'latest' (the latest selected; default)")
    p.add_argument(
        "--target",
        choices=DEPLOY_TARGETS,
        default=None,
        help="deployment target (default: auto: $ALPR_DEPLOY_TARGET, else kubernetes in a cluster's pod, else local)",
    )
    p.add_argument(
        "--min-eir-improvement",
        type=float,
        default=0.0,
        help="how much higher the new EIR must be (default 0: strictly higher)",
    )
    p.add_argument("--split", default=DEFAULT_EIR_SPLIT, help="evaluation split compared (default: test)")
    p.add_argument("--run", default=None, help="pipeline run to record the decision under (must exist)")
    p.add_argument(
        "--manifest",
        action="store_true",
        help="print the model's InferenceService as YAML and exit (no decision, nothing changed)",
    )
    args = p.parse_args(argv)
    if args.model != "latest" and not args.model.isdigit():
        p.error(f"--model must be a model id or 'latest', got {args.model!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``alpr deploy``); returns the exit code (0 deployed or skipped, 1 an error)."""
    args = _parse_args(argv)
    logs.setup()
    settings = load_settings()
    model_id = None if args.model == "latest" else int(args.model)
    try:
        ds = DeploySettings(**({"deploy_target": args.target} if args.target else {}))
        if args.manifest:
            store = MetadataStore(settings.db_url)
            model = store.get_model(model_id) if model_id is not None else store.latest_selected_model()
            if model is None:
                print(f"error: no such model in {store.url_for_display}", file=sys.stderr)
                return 1
            eir = _eir(store, model["id"], args.split)[1]
            body = build_inference_service(
                ds, model_uri=model["uri"], model_id=model["id"], eir=eir, run=model["run"], split=args.split
            )
            print(yaml.safe_dump(body, sort_keys=False), end="")
            return 0
        result = deploy_model(
            settings,
            model_id=model_id,
            run_name=args.run,
            split=args.split,
            min_improvement=args.min_eir_improvement,
            deploy_settings=ds,
        )
    except (MetadataError, ValueError, DeployError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{result.action}: {result.reason}")
    for command in result.serve_commands:
        print(f"serve:  {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
