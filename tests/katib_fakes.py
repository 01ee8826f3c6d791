"""An in-memory Kubernetes API with Katib's CRDs, and a stand-in for Katib's controller, for the tuning tests.

- :func:`serve_kubernetes`: kmock's ``KubernetesEmulator`` (PyPI ``kmock``, :mod:`kube_emulator`) serving
  ``kubeflow.org/v1beta1`` ``experiments`` and ``trials`` on 127.0.0.1. It stores objects and merges status patches;
  it runs no controller.
- :func:`katib_controller`: plays Katib's controller for one Experiment through the same API: marks it Running,
  creates three Trials (succeeded, early-stopped, failed) with their observations, then sets the final condition
  and ``currentOptimalTrial`` -- the fields :mod:`alpr.tuning.katib` reads -- or deletes the Experiment.
"""

import contextlib
import threading
import time
from types import SimpleNamespace

import kube_emulator
from kubernetes import client

from alpr.tuning.katib import EXPERIMENT_LABEL
from alpr.tuning.space import SearchSpace

NS = "kubeflow"
GV = ("kubeflow.org", "v1beta1")
#: Katib's custom resources, as :func:`kube_emulator.serve_kubernetes` takes them.
KATIB_RESOURCES = {"kubeflow.org/v1beta1/experiments": "Experiment", "kubeflow.org/v1beta1/trials": "Trial"}


def serve_kubernetes() -> contextlib.AbstractContextManager[SimpleNamespace]:
    """:func:`kube_emulator.serve_kubernetes` serving Katib's Experiments and Trials: a context manager yielding
    ``url``, ``emulator``, ``custom`` and ``core``."""
    return kube_emulator.serve_kubernetes(KATIB_RESOURCES)


def _patch_status(api, plural: str, name: str, status: dict) -> None:
    api.patch_namespaced_custom_object_status(*GV, NS, plural, name, {"status": status})


def katib_controller(api, name: str, *, end: str = "Succeeded", delete: bool = False) -> threading.Thread:
    """Start playing Katib's controller for Experiment ``name`` (see the module docstring); return the thread.

    The trials' and the best trial's parameter values are taken from the Experiment's own search space (trial
    ``i`` gets each parameter's ``i``-th value of :meth:`~alpr.tuning.space.Parameter.walk`, the best trial the
    first). Metrics: the succeeded trial eir max 0.71, the best trial eir max 0.71 / latest 0.65, mAP latest 0.55,
    loss latest 1.2.
    """

    def run() -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                exp = api.get_namespaced_custom_object(*GV, NS, "experiments", name)
                break
            except client.ApiException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        space = SearchSpace.from_katib(exp["spec"]["parameters"])
        _patch_status(
            api,
            "experiments",
            name,
            {
                "conditions": [
                    {"type": "Created", "status": "True", "reason": "ExperimentCreated"},
                    {"type": "Running", "status": "True", "reason": "ExperimentRunning"},
                ],
                "trials": 3,
                "trialsRunning": 3,
            },
        )
        time.sleep(0.1)
        trials = [
            ("succeeded", "Succeeded", "0.71", "0.55"),
            ("stopped", "EarlyStopped", "0.2", "0.1"),
            ("failed", "Failed", "unavailable", "unavailable"),
        ]
        for i, (suffix, state, eir, mAP) in enumerate(trials):
            assignments = [{"name": p.name, "value": list(p.walk())[i]} for p in space]
            trial_name = f"{name}-{suffix}"
            api.create_namespaced_custom_object(
                *GV,
                NS,
                "trials",
                {
                    "apiVersion": "kubeflow.org/v1beta1",
                    "kind": "Trial",
                    "metadata": {
                        "name": trial_name,
                        "namespace": NS,
                        "labels": {EXPERIMENT_LABEL: name},
                        "creationTimestamp": f"2026-11-21T10:00:0{i}Z",
                    },
                    "spec": {"parameterAssignments": assignments},
                },
            )
            _patch_status(
                api,
                "trials",
                trial_name,
                {
                    "startTime": f"2026-11-21T10:00:0{i}Z",
                    "completionTime": f"2026-11-21T10:10:0{i}Z",
                    "conditions": [{"type": state, "status": "True", "message": f"trial {state}"}],
                    "observation": {
                        "metrics": [
                            {"name": "eir", "min": "0.1", "max": eir, "latest": eir},
                            {"name": "mAP", "min": mAP, "max": mAP, "latest": mAP},
                        ]
                    },
                },
            )
        # Another Experiment's trial in the namespace: it must not be counted.
        api.create_namespaced_custom_object(
            *GV,
            NS,
            "trials",
            {"metadata": {"name": f"{name}-other", "namespace": NS, "labels": {EXPERIMENT_LABEL: "other"}}, "spec": {}},
        )
        if delete:
            api.delete_namespaced_custom_object(*GV, NS, "experiments", name)
            return
        best = [{"name": p.name, "value": list(p.walk())[0]} for p in space]
        final = {
            "type": end,
            "status": "True",
            "reason": f"Experiment{end}",
            "message": "Experiment has succeeded because max trial count has reached"
            if end == "Succeeded"
            else "Experiment has failed because max failed count has reached",
        }
        _patch_status(
            api,
            "experiments",
            name,
            {
                "conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "False"}, final],
                "trials": 3,
                "trialsSucceeded": 1,
                "trialsEarlyStopped": 1,
                "trialsFailed": 1,
                "currentOptimalTrial": {
                    "bestTrialName": f"{name}-succeeded",
                    "parameterAssignments": best,
                    "observation": {
                        "metrics": [
                            {"name": "eir", "min": "0.1", "max": "0.71", "latest": "0.65"},
                            {"name": "mAP", "min": "0.5", "max": "0.6", "latest": "0.55"},
                            {"name": "loss", "min": "1.1", "max": "2.0", "latest": "1.2"},
                        ]
                    },
                },
            },
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
