"""The compiled pipeline as the KFP UI and backend meet it (pipelines.alpr_train), offline: caching can hit, Tune
is skipped when off, an exit handler sets the run's status; and the straight-line graph kfp.local runs."""

import json

import pytest
import yaml
from kfp import compiler

from alpr.kubeflow.platform import NEVER_CACHED, RUN_ID_FIELD_PATH, RUN_NAME_ENV
from pipelines import alpr_train

#: The steps whose results KFP may take from its cache (platform.NEVER_CACHED are the others).
CACHEABLE = ("record", "train", "evaluate", "test")


def _compile(tmp_path, pipeline=None, name="p.yaml"):
    out = tmp_path / name
    compiler.Compiler().compile(pipeline or alpr_train.alpr_pipeline, str(out))
    spec, platform = yaml.safe_load_all(out.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _all_tasks(spec) -> dict[str, tuple[str, dict]]:
    """``{task name: (the component (DAG) holding it, its spec)}`` over the root and every nested DAG."""
    dags = {"root": spec["root"], **{n: c for n, c in spec["components"].items() if "dag" in c}}
    return {name: (dag, task) for dag, comp in dags.items() for name, task in comp["dag"]["tasks"].items()}


def _step(task: dict) -> str:
    """The component a task runs: ``train`` for the tasks ``train`` and ``train-2``."""
    return task["componentRef"]["name"].removeprefix("comp-").split("-")[0]


# -- caching: no input changes from one run to the next


def test_no_task_takes_the_run_name_as_an_input(tmp_path):
    spec, _ = _compile(tmp_path)
    tasks = _all_tasks(spec)
    for name, (_, task) in tasks.items():
        params = task.get("inputs", {}).get("parameters", {})
        assert "run_name" not in params, name
        for value in params.values():  # every input: a pipeline parameter, an upstream output or a constant ...
            constant = value.get("runtimeValue", {}).get("constant")
            assert not (isinstance(constant, str) and "{{$." in constant), (name, value)  # ... never a run placeholder
    for component in spec["components"].values():
        assert "run_name" not in component.get("inputDefinitions", {}).get("parameters", {})
    assert "pipeline_job" not in json.dumps(spec)  # {{$.pipeline_job_name}}, _resource_name, _uuid: none


def test_the_cacheable_steps_cache_and_two_compiles_are_the_same(tmp_path):
    """Same parameters, same compiled tasks: what KFP hashes (inputs, command, image) does not vary by run."""
    first, _ = _compile(tmp_path, name="a.yaml")
    second, _ = _compile(tmp_path, name="b.yaml")
    assert first == second
    for name, (_, task) in _all_tasks(first).items():
        if "componentRef" in task and _step(task) in CACHEABLE:
            want = _step(task) != "train"  # Train: ALPR_K8S_TRAIN_CACHING, off by default
            assert task["cachingOptions"].get("enableCache", False) is want, name
        elif _step(task) in NEVER_CACHED:
            assert not task["cachingOptions"].get("enableCache", False), name


def test_every_task_learns_its_run_from_the_pods_runid_label(tmp_path):
    spec, executors = _compile(tmp_path)
    for name, component in spec["components"].items():
        if "executorLabel" not in component:
            continue
        env = executors[component["executorLabel"]]["fieldPathAsEnv"]
        assert {"name": RUN_NAME_ENV, "fieldPath": RUN_ID_FIELD_PATH} in env, name
    assert RUN_ID_FIELD_PATH == "metadata.labels['pipeline/runid']"  # set on every pod by the KFP v2 API server


# -- Tune: skipped, not a green step that did nothing


def test_tune_runs_only_under_its_condition(tmp_path):
    spec, _ = _compile(tmp_path)
    tasks = _all_tasks(spec)
    tune_dag, tune = tasks["tune"]
    tuned_dag, tuned = tasks["train"]
    plain_dag, plain = tasks["train-2"]
    assert tune_dag == tuned_dag != plain_dag  # Tune and the Train it feeds share one branch
    assert tuned["inputs"]["parameters"]["hp_override"] == {
        "taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "tune"}
    }
    assert plain["inputs"]["parameters"]["hp_override"] == {"runtimeValue": {"constant": ""}}
    assert tuned["taskInfo"]["name"] == plain["taskInfo"]["name"] == "Train"
    conditions = {}
    for _, task in tasks.values():
        if task["componentRef"]["name"] in (tune_dag, plain_dag):
            conditions[task["componentRef"]["name"]] = task["triggerPolicy"]["condition"]
    assert conditions[tune_dag] == "inputs.parameter_values['pipelinechannel--tune'] == true"
    assert conditions[plain_dag] == "!(inputs.parameter_values['pipelinechannel--tune'] == true)"
    assert "enabled" not in tune["inputs"]["parameters"]  # no run-time switch inside the step any more
    # Evaluate takes the model of whichever Train ran (dsl.OneOf).
    _, evaluate = tasks["evaluate"]
    oneof = evaluate["inputs"]["artifacts"]["candidates"]["taskOutputArtifact"]
    branches = spec["components"][tasks[oneof["producerTask"]][1]["componentRef"]["name"]]
    selectors = branches["dag"]["outputs"]["artifacts"][oneof["outputArtifactKey"]]["artifactSelectors"]
    assert {s["producerSubtask"] for s in selectors} == {
        tune_dag.removeprefix("comp-"),
        plain_dag.removeprefix("comp-"),
    }


def test_the_steps_keep_their_order(tmp_path):
    spec, _ = _compile(tmp_path)
    tasks = _all_tasks(spec)
    assert {_step(t) for _, t in tasks.values() if "componentRef" in t} >= {
        "record",
        "tune",
        "train",
        "evaluate",
        "test",
        "deploy",
        "finish",
    }
    _, evaluate = tasks["evaluate"]
    _, test = tasks["test"]
    _, deploy = tasks["deploy"]
    assert evaluate["inputs"]["artifacts"]["dataset"]["taskOutputArtifact"]["producerTask"] == "record"
    assert test["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] == "evaluate"
    assert sorted(deploy["dependentTasks"]) == ["evaluate", "test"]  # after Test: it records the test EIR
    assert deploy["inputs"]["parameters"]["deploy_target"] == {
        "componentInputParameter": "pipelinechannel--deploy_target"
    }


# -- the run's status: an exit handler after Deploy


def test_finish_is_the_exit_handler_of_every_step(tmp_path):
    spec, _ = _compile(tmp_path)
    root = spec["root"]["dag"]["tasks"]
    assert sorted(root) == ["exit-handler-1", "finish"]
    finish = root["finish"]
    assert finish["triggerPolicy"] == {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"}  # also after a failure
    assert finish["inputs"]["parameters"]["status"] == {"taskFinalStatus": {"producerTask": "exit-handler-1"}}
    assert finish["taskInfo"]["name"] == "Finish"
    inside = spec["components"][root["exit-handler-1"]["componentRef"]["name"]]["dag"]["tasks"]
    assert {"record", "evaluate", "test", "deploy"} <= set(inside)  # Deploy included: Finish runs after it


# -- the graph kfp.local runs (no ExitHandler, no OneOf: kfp 2.16 runs neither)


@pytest.mark.parametrize("tune", [False, True])
def test_the_local_graph_is_a_straight_line(tmp_path, tune):
    spec, _ = _compile(tmp_path, alpr_train.local_pipeline(tune))
    tasks = spec["root"]["dag"]["tasks"]
    want = ["deploy", "evaluate", "record", "test", "train", *(["tune"] if tune else [])]
    assert sorted(tasks) == sorted(want)
    assert not any(t.get("triggerPolicy") for t in tasks.values())
    assert all(c.get("dag") is None for c in spec["components"].values())  # no nested DAG at all
    hp = tasks["train"]["inputs"]["parameters"]["hp_override"]
    if tune:
        assert hp == {"taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "tune"}}
    else:
        assert hp == {"runtimeValue": {"constant": ""}}
    assert tasks["evaluate"]["inputs"]["artifacts"]["candidates"]["taskOutputArtifact"]["producerTask"] == "train"
    # The same parameters, descriptions included, as the cluster's pipeline.
    cluster, _ = _compile(tmp_path, name="cluster.yaml")
    assert spec["root"]["inputDefinitions"] == cluster["root"]["inputDefinitions"]


def test_the_local_graph_does_not_change_the_cluster_graph(tmp_path):
    alpr_train.local_pipeline(True)
    spec, _ = _compile(tmp_path)
    assert sorted(spec["root"]["dag"]["tasks"]) == ["exit-handler-1", "finish"]
