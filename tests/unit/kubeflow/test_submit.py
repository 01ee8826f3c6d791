"""Cluster submission (alpr.kubeflow.submit, ``pipeline.py --run --host``) against a FAKE KFP API server.

The server (tests/fake_kfp.py) is a fake of the Kubeflow Pipelines v2beta1 REST API, not the real backend: a real
HTTP server on 127.0.0.1 that answers the requests ``kfp.Client`` 2.16 makes (pipelines, upload, upload_version,
versions, experiments, runs, recurring runs, list filters; bearer-token and Dex-cookie authentication), with its
objects in memory. The client, the compiled pipeline (the real one, with its kfp-kubernetes config), the multipart
uploads and the JSON bodies are all real.
"""

import json

import pytest
import yaml
from fake_kfp import API, FakeKFP

from alpr.kubeflow import submit as kfp_submit
from alpr.kubeflow.platform import PlatformSettings
from alpr.kubeflow.submit import SubmitError, SubmitOptions
from pipelines import run as pipeline

FAST = ["--timeout", "30"]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No developer settings leak in; kfp's context file goes to tmp; waiting polls at once."""
    import os

    import kfp

    for key in list(os.environ):
        if key.startswith(("ALPR_KFP_", "ALPR_K8S_")) or key in (
            "KFP_HOST",
            "KF_PIPELINES_TOKEN",
            "ALPR_DEX_PASSWORD",
            "KF_PIPELINES_ENDPOINT",
            "KF_PIPELINES_SA_TOKEN_PATH",
        ):
            monkeypatch.delenv(key)
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    monkeypatch.setenv("ALPR_KFP_POLL_INTERVAL", "0.01")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-sa-token"))


def _options(server: FakeKFP, **kw) -> SubmitOptions:
    return SubmitOptions(host=server.url, **kw)


def _submit(server: FakeKFP, platform: PlatformSettings | None = None, **kw) -> dict:
    return kfp_submit.submit(
        pipeline.alpr_pipeline,
        {"epochs": 3, "annotation_version": "annotations-v7"},
        _options(server, **kw),
        platform or PlatformSettings(),
        source_dir=".",
        sleep=lambda s: None,
    )


def test_first_submission_uploads_pipeline_and_named_version_then_runs():
    with FakeKFP() as server:
        result = _submit(server, namespace="team-a", experiment="plates", run_name="r1", service_account="sa-x")
        uploads = server.api_calls("POST", "/pipelines/upload")
        assert len(uploads) == 1 and uploads[0].query["name"] == "alpr-train"
        assert uploads[0].query["namespace"] == "team-a"
        (version_upload,) = server.api_calls("POST", "/pipelines/upload_version")
        assert version_upload.query["name"] == result["pipeline_version"]
        assert version_upload.query["pipelineid"] == result["pipeline_id"]
        # the uploaded package is the compiled pipeline with its Kubernetes platform config
        spec, platform = yaml.safe_load_all(version_upload.files["uploadfile"])
        assert spec["pipelineInfo"]["name"] == "alpr-train"
        assert "exec-train" in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        # the version is named <sha256 of the package>-<git revision>
        digest, rev = result["pipeline_version"].split("-", 1)
        assert len(digest) == 12 and rev == kfp_submit.git_revision(".")
        # experiment looked up by name in the namespace, then created
        (lookup,) = server.api_calls("GET", "/experiments")
        assert json.loads(lookup.query["filter"])["predicates"][0]["stringValue"] == "plates"
        (created,) = server.api_calls("POST", "/experiments")
        assert created.json == {"display_name": "plates", "namespace": "team-a"}
        (run,) = server.api_calls("POST", "/runs")
        assert run.json["display_name"] == "r1" and run.json["service_account"] == "sa-x"
        assert run.json["experiment_id"] == result["experiment_id"]
        assert run.json["pipeline_version_reference"] == {
            "pipeline_id": result["pipeline_id"],
            "pipeline_version_id": result["pipeline_version_id"],
        }
        assert run.json["runtime_config"]["parameters"] == {"epochs": 3, "annotation_version": "annotations-v7"}
        assert result["uploaded"] == "pipeline" and result["ok"] is True
        assert result["run_url"] == f"{server.url}/#/runs/details/{result['run_id']}"
        assert "state" not in result  # not waited for


def test_same_pipeline_again_reuses_version_and_experiment():
    with FakeKFP() as server:
        first = _submit(server)
        second = _submit(server)
        assert second["uploaded"] is None
        assert second["pipeline_version_id"] == first["pipeline_version_id"]
        assert second["experiment_id"] == first["experiment_id"]
        assert len(server.api_calls("POST", "/pipelines/upload")) == 1
        assert len(server.api_calls("POST", "/pipelines/upload_version")) == 1
        assert len(server.api_calls("POST", "/experiments")) == 1
        assert len(server.api_calls("POST", "/runs")) == 2 and first["run_id"] != second["run_id"]


def test_changed_pipeline_uploads_a_new_version_of_the_existing_pipeline():
    with FakeKFP() as server:
        first = _submit(server)
        second = _submit(server, PlatformSettings(train_gpus=0))
        assert second["uploaded"] == "version"
        assert second["pipeline_id"] == first["pipeline_id"]
        assert second["pipeline_version"] != first["pipeline_version"]
        assert len(server.api_calls("POST", "/pipelines/upload")) == 1
        assert len(server.api_calls("POST", "/pipelines/upload_version")) == 2
        (run1, run2) = server.api_calls("POST", "/runs")
        assert run2.json["pipeline_version_reference"]["pipeline_version_id"] == second["pipeline_version_id"]


def test_cli_wait_success_exits_zero(capsys):
    with FakeKFP(run_states=["RUNNING", "RUNNING", "SUCCEEDED"]) as server:
        code = pipeline.main(["--run", "--host", server.url, "--experiment", "e1", "--wait", *FAST, "--epochs", "5"])
        out = json.loads(capsys.readouterr().out)
        assert code == 0 and out["ok"] is True and out["state"] == "SUCCEEDED"
        (run,) = server.api_calls("POST", "/runs")
        assert run.json["runtime_config"]["parameters"]["epochs"] == 5
        assert set(run.json["runtime_config"]["parameters"]) == set(pipeline.DEFAULTS)
        assert len(server.api_calls("GET", f"/runs/{out['run_id']}")) == 3  # followed until it finished


def test_cli_wait_failure_exits_nonzero(capsys):
    with FakeKFP(run_states=["RUNNING", "FAILED"], run_error="task train failed: CUDA out of memory") as server:
        code = pipeline.main(["--run", "--host", server.url, "--wait", *FAST])
        out = json.loads(capsys.readouterr().out)
        assert code == 1 and out["ok"] is False and out["state"] == "FAILED"
        assert "CUDA out of memory" in out["error"]


def test_wait_timeout_is_an_error():
    with FakeKFP(run_states=["RUNNING"]) as server, pytest.raises(SubmitError, match="still RUNNING after"):
        _submit(server, wait=True, timeout=0.05)


def test_schedule_creates_a_recurring_run(capsys):
    with FakeKFP() as server:
        code = pipeline.main(["--run", "--host", server.url, "--schedule", "0 3 * * 1", "--epochs", "7"])
        out = json.loads(capsys.readouterr().out)
        assert code == 0 and out["schedule"] == "0 0 3 * * 1"  # KFP's cron has seconds first
        assert not server.api_calls("POST", "/runs")
        (rec,) = server.api_calls("POST", "/recurringruns")
        assert rec.json["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * 1"}}
        assert (
            rec.json["mode"] == "ENABLE" and rec.json["max_concurrency"] in (1, "1") and rec.json["no_catchup"] is True
        )
        assert rec.json["runtime_config"]["parameters"]["epochs"] == 7
        assert rec.json["pipeline_version_reference"]["pipeline_version_id"] == out["pipeline_version_id"]
        assert out["recurring_run_id"] in server.recurring_runs


def test_wait_and_schedule_do_not_mix():
    with FakeKFP() as server, pytest.raises(SubmitError, match="cannot be combined"):
        _submit(server, wait=True, schedule="0 3 * * *")


def test_bearer_token_from_environment(monkeypatch, capsys):
    with FakeKFP(token="tok-123") as server:
        assert pipeline.main(["--run", "--host", server.url]) == 1  # no token: 401, reported
        out = json.loads(capsys.readouterr().out)
        assert out["ok"] is False and "refused the request (HTTP 401)" in out["error"]
        monkeypatch.setenv("KF_PIPELINES_TOKEN", "tok-123")
        assert pipeline.main(["--run", "--host", server.url]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["ok"] is True and server.runs[out["run_id"]]
        assert all(r.headers.get("authorization") == "Bearer tok-123" for r in server.api_calls("POST"))
        assert "tok-123" not in json.dumps(out)


def test_dex_login_session_cookie_reaches_the_api(monkeypatch, capsys):
    with FakeKFP(dex_users={"user@example.com": "pa55-word"}) as server:
        monkeypatch.setenv("ALPR_DEX_PASSWORD", "pa55-word")
        assert pipeline.main(["--run", "--host", server.url, "--dex-user", "user@example.com"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["ok"] and server.runs[out["run_id"]]
        logins = [r for r in server.requests if r.path == "/dex/auth/local/login" and r.method == "POST"]
        assert len(logins) == 1
        assert any(r.path == "/dex/approval" and r.method == "POST" for r in server.requests)
        api = server.api_calls("POST", "/runs")
        assert "authservice_session=" in api[0].headers["cookie"]
        assert "pa55-word" not in capsys.readouterr().err


def test_dex_wrong_password_is_refused_without_echoing_it(monkeypatch, capsys):
    with FakeKFP(dex_users={"user@example.com": "right"}) as server:
        monkeypatch.setenv("ALPR_DEX_PASSWORD", "wrong-secret")
        assert pipeline.main(["--run", "--host", server.url, "--dex-user", "user@example.com"]) == 1
        captured = capsys.readouterr()
        out = json.loads(captured.out)
        assert "refused" in out["error"] and "user@example.com" in out["error"]
        assert "wrong-secret" not in captured.out + captured.err
        assert not server.api_calls("POST")


def test_dex_password_prompt_when_not_in_environment():
    asked = []
    with FakeKFP(dex_users={"u@example.com": "typed"}) as server:
        opts = _options(server, dex_user="u@example.com")
        client = kfp_submit.make_client(opts, prompt=lambda text: asked.append(text) or "typed")
        assert asked == ["Dex password: "]
        assert client.get_experiment is not None
        result = kfp_submit.submit(pipeline.alpr_pipeline, {}, opts, client=client, sleep=lambda s: None)
        assert result["ok"]


def test_cluster_flags_and_when_a_run_goes_to_the_cluster(tmp_path):
    args = pipeline._parse_args(["--run", "--epochs", "2"])
    assert not kfp_submit.cluster_requested(args, environ={})
    assert kfp_submit.cluster_requested(args, environ={"ALPR_KFP_HOST": "http://x"})
    args = pipeline._parse_args(
        [
            "--run",
            "--host",
            "http://h",
            "--namespace",
            "n",
            "--experiment",
            "e",
            "--wait",
            "--schedule",
            "0 3 * * *",
            "--dex-user",
            "u",
            "--kfp-config",
            str(tmp_path / "c"),
        ]
    )
    assert kfp_submit.cluster_requested(args, environ={})
    from alpr.kubeflow.options import _flags

    flags = _flags(args)
    assert flags["host"] == "http://h" and flags["namespace"] == "n" and flags["wait"] is True
    assert flags["dex_user"] == "u" and flags["schedule"] == "0 3 * * *" and flags["token"] is None
    assert kfp_submit.cluster_requested(pipeline._parse_args(["--run", "--auth", "kubeconfig"]), environ={})
    with pytest.raises(SystemExit):  # no password flag exists
        pipeline._parse_args(["--run", "--dex-password", "x"])


def test_version_name_is_stable_for_the_same_compiled_pipeline(tmp_path):
    a = kfp_submit.compile_package(pipeline.alpr_pipeline, tmp_path / "a.yaml", PlatformSettings())
    b = kfp_submit.compile_package(pipeline.alpr_pipeline, tmp_path / "b.yaml", PlatformSettings())
    c = kfp_submit.compile_package(pipeline.alpr_pipeline, tmp_path / "c.yaml", PlatformSettings(retries=1))
    assert kfp_submit.version_name(a, "abc") == kfp_submit.version_name(b, "abc")
    assert kfp_submit.version_name(a, "abc") != kfp_submit.version_name(c, "abc")
    assert kfp_submit.version_name(a, "abc").endswith("-abc")


def test_in_cluster_service_account_token(tmp_path, monkeypatch):
    token = tmp_path / "sa-token"
    token.write_text("projected-sa-token")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    with FakeKFP(token="projected-sa-token") as server:
        result = _submit(server)  # auth auto: the projected token exists
        assert result["ok"]
        assert server.api_calls("POST", "/runs")[0].headers["authorization"] == "Bearer projected-sa-token"


def test_api_errors_name_the_request():
    with FakeKFP() as server:
        client = kfp_submit.make_client(_options(server))
        with pytest.raises(SubmitError, match=r"getting run nope: HTTP 404"):
            kfp_submit.wait_for_run(client, "nope", timeout=5, poll_interval=0.01, sleep=lambda s: None)
    assert API == "/apis/v2beta1"
