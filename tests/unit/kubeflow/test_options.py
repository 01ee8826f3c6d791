"""Submission options (alpr.kubeflow.options): flags over environment over the ``--kfp-config`` file, credentials
never in a file, and every bad value reported naming its flag, variable or file and the field."""

import argparse
import re

import pytest

from alpr.kubeflow import options
from alpr.kubeflow.options import SubmitError, SubmitOptions, add_arguments, cluster_requested, load_options
from alpr.kubeflow.platform import PlatformSettings


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """No developer settings leak in."""
    import os

    for key in list(os.environ):
        if key.startswith(("ALPR_KFP_", "ALPR_K8S_")) or key in ("KFP_HOST", "KF_PIPELINES_TOKEN", "ALPR_DEX_PASSWORD"):
            monkeypatch.delenv(key)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="test")
    add_arguments(parser)
    return parser


# --------------------------------------------------------------------------------------------- layers


def test_options_precedence_file_env_flags(tmp_path, monkeypatch):
    cfg = tmp_path / "kfp.yaml"
    cfg.write_text(
        "host: http://file.example:8080/\nnamespace: from-file\nexperiment: from-file\n"
        "platform:\n  train_gpus: 4\n  db_secret: file-db\n"
    )
    monkeypatch.setenv("ALPR_KFP_NAMESPACE", "from-env")
    monkeypatch.setenv("ALPR_K8S_DB_SECRET", "env-db")
    monkeypatch.setenv("KFP_HOST", "http://legacy.example")
    opts, platform = load_options({"experiment": "from-flag", "wait": None}, cfg)
    assert opts.host == "http://legacy.example"  # KFP_HOST beats the file, not ALPR_KFP_HOST
    assert (opts.namespace, opts.experiment) == ("from-env", "from-flag")
    assert platform.train_gpus == 4 and platform.db_secret == "env-db"
    monkeypatch.setenv("ALPR_KFP_HOST", "http://env.example")
    assert load_options({}, cfg)[0].host == "http://env.example"


def test_defaults_without_any_layer():
    opts, platform = load_options()
    assert opts == SubmitOptions() and platform == PlatformSettings()
    assert (opts.host, opts.experiment, opts.auth, opts.wait, opts.token) == (None, "alpr", "auto", False, None)


def test_file_values_fill_what_nothing_else_sets(tmp_path):
    cfg = tmp_path / "kfp.yaml"
    cfg.write_text(
        "host: https://kf.example/pipeline/\nservice-account: alpr-pipeline\ndex-user: u@example.com\n"
        "schedule: '0 3 * * 1'\nwait: true\n"
    )
    opts, _ = load_options({"wait": None, "namespace": None}, cfg)
    assert opts.host == "https://kf.example/pipeline"  # trailing slash dropped
    assert opts.service_account == "alpr-pipeline" and opts.dex_user == "u@example.com"  # dashes read as _
    assert opts.schedule == "0 0 3 * * 1"  # 5 cron fields become KFP's 6, seconds first
    assert opts.wait is True and opts.namespace is None  # a None flag does not override the file


def test_token_variables_precedence(monkeypatch):
    monkeypatch.setenv("KF_PIPELINES_TOKEN", "kfp-token")
    assert load_options()[0].token.get_secret_value() == "kfp-token"
    monkeypatch.setenv("ALPR_KFP_TOKEN", "alpr-token")
    assert load_options()[0].token.get_secret_value() == "alpr-token"
    opts, _ = load_options({"token": "flag-token"})
    assert opts.token.get_secret_value() == "flag-token"
    assert "flag-token" not in repr(opts) and "flag-token" not in str(opts.model_dump())


# --------------------------------------------------------------------------------------------- bad values


def test_bad_options_name_their_source(tmp_path, monkeypatch):
    cfg = tmp_path / "kfp.yaml"
    cfg.write_text("experimnet: typo\n")
    with pytest.raises(SubmitError, match=r"kfp\.yaml: experimnet: Extra inputs"):
        load_options({}, cfg)
    cfg.write_text("token: abc\n")
    with pytest.raises(SubmitError, match="token must not be in a file"):
        load_options({}, cfg)
    cfg.write_text("platform:\n  train_gpus: -1\n")
    with pytest.raises(SubmitError, match=r"\(platform\): train_gpus"):
        load_options({}, cfg)
    with pytest.raises(SubmitError, match="no such file"):
        load_options({}, tmp_path / "missing.yaml")
    with pytest.raises(SubmitError, match="command line: schedule: .*5 fields"):
        load_options({"schedule": "every monday"})
    with pytest.raises(SubmitError, match="command line: host: .*http"):
        load_options({"host": "ftp://x"})
    monkeypatch.setenv("ALPR_KFP_TIMEOUT", "-5")
    with pytest.raises(SubmitError, match=r"environment ALPR_KFP_\*: timeout"):
        load_options({})


@pytest.mark.parametrize(
    "text, message",
    [
        ("- host\n- namespace\n", r"the top level must be a mapping, got list"),
        ("host: [unclosed\n", r"cannot read it as YAML"),
        (
            "password: hunter2\n",
            r"password must not be in a file; use --token, \$ALPR_KFP_TOKEN or \$ALPR_DEX_PASSWORD",
        ),
        ("dex-password: x\ntoken: y\n", r"dex_password, token must not be in a file"),
        ("platform: gpu\n", r"'platform' must be a mapping, got str"),
        ("host: file.example\n", r"host: .*must be an http\(s\):// URL, got 'file.example'"),
        ("poll_interval: 0\n", r"poll_interval: .*greater than 0"),
        ("auth: password\n", r"auth: "),
        ("platform:\n  gpus: 1\n", r"\(platform\): gpus: Extra inputs"),
    ],
)
def test_config_file_errors_name_the_file_and_the_field(tmp_path, text, message):
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(text)
    with pytest.raises(SubmitError, match=rf"--kfp-config {re.escape(str(cfg))}.*{message}") as err:
        load_options({}, cfg)
    assert "hunter2" not in str(err.value)


def test_empty_config_file_is_no_options(tmp_path):
    cfg = tmp_path / "empty.yaml"
    cfg.write_text("# nothing yet\n")
    assert options.read_config_file(cfg) == {}
    assert load_options({}, cfg)[0] == SubmitOptions()


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("ALPR_KFP_HOST", "kubeflow.example", r"environment ALPR_KFP_\*: host: .*http"),
        ("ALPR_KFP_WAIT", "perhaps", r"environment ALPR_KFP_\*: wait"),
        ("ALPR_KFP_AUTH", "password", r"environment ALPR_KFP_\*: auth"),
        ("ALPR_KFP_SCHEDULE", "daily", r"environment ALPR_KFP_\*: schedule: .*5 fields"),
        ("ALPR_K8S_TRAIN_GPUS", "-1", r"environment ALPR_K8S_\*: train_gpus"),
    ],
)
def test_bad_environment_variables_are_named(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SubmitError, match=message):
        load_options({})


def test_bad_flags_are_named():
    with pytest.raises(SubmitError, match=r"command line: timeout: .*greater than 0"):
        load_options({"timeout": 0})
    with pytest.raises(SubmitError, match="command line: experimnet: Extra inputs"):
        load_options({"experimnet": "typo"})


# --------------------------------------------------------------------------------------------- command line


def test_flags_left_unset_are_none_so_lower_layers_fill_them(monkeypatch):
    args = _parser().parse_args([])
    assert all(value is None for key, value in vars(args).items() if key.startswith("kfp_"))
    monkeypatch.setenv("ALPR_KFP_EXPERIMENT", "from-env")
    opts, _ = options.options_from_args(args)
    assert opts.experiment == "from-env" and opts.wait is False


def test_flags_reach_the_options(tmp_path):
    cfg = tmp_path / "kfp.yaml"
    cfg.write_text("namespace: from-file\nplatform:\n  retries: 2\n")
    args = _parser().parse_args(
        [
            "--host",
            "http://h:8888/",
            "--experiment",
            "e",
            "--wait",
            "--timeout",
            "60",
            "--schedule",
            "*/5 * * * *",
            "--auth",
            "token",
            "--token",
            "t0k",
            "--service-account",
            "alpr-pipeline",
            "--kfp-config",
            str(cfg),
        ]
    )
    opts, platform = options.options_from_args(args)
    assert (opts.host, opts.namespace, opts.experiment, opts.wait, opts.timeout) == (
        "http://h:8888",
        "from-file",
        "e",
        True,
        60.0,
    )
    assert opts.schedule == "0 */5 * * * *" and opts.auth == "token" and opts.token.get_secret_value() == "t0k"
    assert opts.service_account == "alpr-pipeline" and platform.retries == 2


def test_flag_errors_name_the_flag(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--auth", "password"])
    assert "--auth" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parser().parse_args(["--timeout", "soon"])
    assert "--timeout" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no password flag exists: passwords come from the environment or a prompt
        _parser().parse_args(["--dex-password", "x"])


@pytest.mark.parametrize(
    "argv, environ, expected",
    [
        ([], {}, False),
        ([], {"ALPR_KFP_HOST": "http://x"}, True),
        ([], {"KFP_HOST": "http://x"}, True),
        ([], {"ALPR_KFP_NAMESPACE": "n"}, False),
        (["--host", "http://h"], {}, True),
        (["--kfp-config", "c.yaml"], {}, True),
        (["--auth", "in-cluster"], {}, True),
        (["--auth", "kubeconfig"], {}, True),
        (["--auth", "token"], {}, False),
        (["--experiment", "e", "--wait"], {}, False),
    ],
)
def test_when_a_run_goes_to_the_cluster(argv, environ, expected):
    assert cluster_requested(_parser().parse_args(argv), environ=environ) is expected


def test_cluster_requested_reads_the_process_environment_by_default(monkeypatch):
    args = _parser().parse_args([])
    assert not cluster_requested(args)
    monkeypatch.setenv("KFP_HOST", "http://x")
    assert cluster_requested(args)
