"""Submission options of :mod:`alpr.kubeflow.submit`: :class:`SubmitOptions`, their layers and the cluster flags.

Highest first: command-line flags (:func:`add_arguments`), environment variables ``ALPR_KFP_<OPTION>``
(``KFP_HOST`` and ``KF_PIPELINES_TOKEN`` below them), and a ``--kfp-config`` YAML file (:func:`read_config_file`)
whose ``platform:`` section holds :class:`alpr.kubeflow.platform.PlatformSettings` (environment ``ALPR_K8S_<FIELD>``
beats the file there). A bad value is reported naming the file, variable or flag and the field
(:class:`SubmitError`). Credentials are never read from the file.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from alpr.kubeflow.platform import PlatformSettings

__all__ = [
    "DEX_PASSWORD_ENV",
    "TOKEN_ENVS",
    "SubmitError",
    "SubmitOptions",
    "add_arguments",
    "cluster_requested",
    "load_options",
    "options_from_args",
    "read_config_file",
]

#: Environment variable with the Dex password (never a flag).
DEX_PASSWORD_ENV = "ALPR_DEX_PASSWORD"
#: Environment variables with a bearer token, first found wins.
TOKEN_ENVS = ("ALPR_KFP_TOKEN", "KF_PIPELINES_TOKEN")
#: Keys a ``--kfp-config`` file must not hold: credentials belong in the environment or a prompt.
_FORBIDDEN_FILE_KEYS = {"token", "password", "dex_password"}


class SubmitError(RuntimeError):
    """The submission failed: bad options, a refused login, or the API server refused a request (the message
    says which request and why)."""


class SubmitOptions(BaseSettings):
    """How and where to submit; environment ``ALPR_KFP_<FIELD>``.

    Attributes:
        host: KFP API endpoint, e.g. ``https://kubeflow.example.com/pipeline`` (multi-user Kubeflow) or
            ``http://localhost:8080`` (a port-forward); None: in-cluster or kubeconfig (see ``auth``).
        namespace: Kubernetes namespace of the pipeline, experiment and runs (multi-user: your profile's).
        experiment: experiment name; created when missing.
        pipeline_name: pipeline name in KFP (default: the compiled pipeline's name).
        run_name: the run's display name (default: ``<pipeline>-<UTC time>``).
        service_account: ServiceAccount the run's pods use; ``""`` (default): KFP's own (``default-editor`` in a
            multi-user profile, ``pipeline-runner`` otherwise), which the manifests' RoleBinding lets create Katib
            Experiments and InferenceServices; ``alpr-pipeline``: the manifests' dedicated one.
        pipeline_root: where KFP stores the run's artifacts (default: the server's).
        enable_caching: override every task's caching for this run (default: the compiled policy).
        wait: follow the run until it finishes; the result's ``ok`` is whether it succeeded.
        timeout: seconds to wait before giving up (the run goes on).
        poll_interval: seconds between two looks at the run's state.
        schedule: cron expression for a recurring run instead of one run: 5 fields (minute first) or KFP's 6
            (seconds first).
        schedule_name: display name of the recurring run (default: ``<pipeline>-recurring``).
        auth: ``auto``, ``token``, ``dex``, ``in-cluster``, ``kubeconfig`` or ``none`` (see :mod:`alpr.kubeflow.auth`).
        token: bearer token (``--token``, ``ALPR_KFP_TOKEN`` or ``KF_PIPELINES_TOKEN``).
        dex_user: Dex user name (e-mail) for ``auth=dex``.
        dex_url: URL where the Dex login starts (default: ``host``).
        dex_connector: Dex connector for the login form (``local`` is Kubeflow's static-password connector).
        kube_context: kubeconfig context for ``auth=kubeconfig``.
        kfp_namespace: namespace KFP is installed in (kubeconfig proxy path).
        ui_url: base URL of the KFP UI for the links printed (default: ``host``).
        verify_ssl: verify the server's TLS certificate.
        ssl_ca_cert: CA bundle file for the server's certificate.
    """

    model_config = SettingsConfigDict(env_prefix="ALPR_KFP_", extra="forbid")

    host: str | None = None
    namespace: str | None = None
    experiment: str = "alpr"
    pipeline_name: str | None = None
    run_name: str | None = None
    service_account: str = ""
    pipeline_root: str | None = None
    enable_caching: bool | None = None
    wait: bool = False
    timeout: float = Field(default=24 * 3600.0, gt=0)
    poll_interval: float = Field(default=30.0, gt=0)
    schedule: str | None = None
    schedule_name: str | None = None
    auth: Literal["auto", "token", "dex", "in-cluster", "kubeconfig", "none"] = "auto"
    token: SecretStr | None = None
    dex_user: str | None = None
    dex_url: str | None = None
    dex_connector: str = "local"
    kube_context: str | None = None
    kfp_namespace: str = "kubeflow"
    ui_url: str | None = None
    verify_ssl: bool = True
    ssl_ca_cert: str | None = None

    @field_validator("host", "dex_url", "ui_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an http(s):// URL, got {value!r}")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        fields = value.split()
        if len(fields) == 5:  # standard cron: KFP's scheduler wants seconds first
            fields = ["0", *fields]
        if len(fields) != 6:
            raise ValueError(f"a cron expression has 5 fields (or KFP's 6, seconds first), got {value!r}")
        return " ".join(fields)


# ------------------------------------------------------------------------------------------ options


def _layered(
    cls: type[BaseSettings],
    file_values: Mapping[str, Any],
    flags: Mapping[str, Any],
    source: str,
    fallback_env: Mapping[str, Any] | None = None,
) -> Any:
    """``cls`` from layers, lowest first: ``file_values`` (from ``source``), ``fallback_env`` (values of other
    tools' variables), the ``env_prefix`` environment, ``flags``.

    Raises:
        SubmitError: a value is invalid; the message names the layer and the field.
    """
    file_only = type(
        f"_{cls.__name__}FromFile",
        (cls,),
        {
            "settings_customise_sources": classmethod(lambda c, settings_cls, init_settings, **rest: (init_settings,)),
        },
    )
    try:
        file_only(**file_values)
    except ValidationError as exc:
        raise SubmitError(f"{source}: {_errors(exc)}") from None
    try:
        from_env = cls().model_dump(exclude_unset=True)
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        raise SubmitError(f"environment {prefix}*: {_errors(exc)}") from None
    try:
        return cls(**{**file_values, **(fallback_env or {}), **from_env, **flags})
    except ValidationError as exc:
        raise SubmitError(f"command line: {_errors(exc)}") from None


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors())


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a ``--kfp-config`` YAML file: a mapping of :class:`SubmitOptions` fields and a ``platform`` mapping.

    Raises:
        SubmitError: the file is missing, not YAML, not a mapping, or holds credentials (they belong in the
            environment).
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SubmitError(f"--kfp-config {path}: no such file") from None
    except (OSError, yaml.YAMLError) as exc:
        raise SubmitError(f"--kfp-config {path}: cannot read it as YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SubmitError(f"--kfp-config {path}: the top level must be a mapping, got {type(data).__name__}")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    secret = sorted(_FORBIDDEN_FILE_KEYS & set(data))
    if secret:
        raise SubmitError(
            f"--kfp-config {path}: {', '.join(secret)} must not be in a file; use --token, "
            f"${TOKEN_ENVS[0]} or ${DEX_PASSWORD_ENV} (or the password prompt)"
        )
    platform = data.get("platform", {})
    if platform is not None and not isinstance(platform, dict):
        raise SubmitError(f"--kfp-config {path}: 'platform' must be a mapping, got {type(platform).__name__}")
    return data


def load_options(
    flags: Mapping[str, Any] | None = None, config_file: Path | None = None
) -> tuple[SubmitOptions, PlatformSettings]:
    """Merge flags, environment and ``config_file`` (in that order of precedence).

    Args:
        flags: :class:`SubmitOptions` fields given on the command line (None values are ignored).
        config_file: a ``--kfp-config`` YAML file (see :func:`read_config_file`).

    Returns:
        ``(options, platform)``.

    Raises:
        SubmitError: a value is invalid (the message names the file, variable or flag and the field).
    """
    file_values = read_config_file(config_file) if config_file else {}
    platform_values = file_values.pop("platform", None) or {}
    source = f"--kfp-config {config_file}"
    # Other tools' variables, below ALPR_KFP_*: KFP_HOST (this project's earlier name), KF_PIPELINES_TOKEN (kfp's).
    fallback = {k: os.environ[v] for k, v in (("host", "KFP_HOST"), ("token", TOKEN_ENVS[1])) if os.environ.get(v)}
    options = _layered(
        SubmitOptions, file_values, {k: v for k, v in (flags or {}).items() if v is not None}, source, fallback
    )
    platform = _layered(PlatformSettings, platform_values, {}, f"{source} (platform)")
    return options, platform


# ------------------------------------------------------------------------------------------ command line

#: (flag, SubmitOptions field, argparse keyword arguments) of the cluster flags of ``pipeline.py``.
_FLAGS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "--host",
        "host",
        {
            "help": "KFP API server URL, e.g. https://kubeflow.example.com/pipeline "
            "(env ALPR_KFP_HOST / KFP_HOST); given: the run goes to the cluster"
        },
    ),
    ("--namespace", "namespace", {"help": "namespace of the pipeline, experiment and runs (env ALPR_KFP_NAMESPACE)"}),
    (
        "--experiment",
        "experiment",
        {"help": "KFP experiment, created when missing (env ALPR_KFP_EXPERIMENT; default alpr)"},
    ),
    ("--run-name", "run_name", {"help": "display name of the cluster run (default <pipeline>-<UTC time>)"}),
    (
        "--service-account",
        "service_account",
        {"help": "ServiceAccount of the run's pods (default: KFP's; the manifests also create alpr-pipeline)"},
    ),
    (
        "--wait",
        "wait",
        {"action": "store_true", "default": None, "help": "follow the cluster run; exit non-zero unless it succeeds"},
    ),
    ("--timeout", "timeout", {"type": float, "help": "--wait: give up after this many seconds (default 86400)"}),
    (
        "--schedule",
        "schedule",
        {
            "metavar": "CRON",
            "help": "create a recurring run instead, e.g. '0 3 * * 1' (5 fields, or KFP's 6 with seconds first)",
        },
    ),
    (
        "--auth",
        "auth",
        {
            "choices": ["auto", "token", "dex", "in-cluster", "kubeconfig", "none"],
            "help": "how to authenticate to the cluster (default auto)",
        },
    ),
    ("--token", "token", {"help": "bearer token (better: env ALPR_KFP_TOKEN or KF_PIPELINES_TOKEN)"}),
    (
        "--dex-user",
        "dex_user",
        {"help": f"Dex user for multi-user Kubeflow; the password comes from env {DEX_PASSWORD_ENV} or a prompt"},
    ),
    ("--kube-context", "kube_context", {"help": "kubeconfig context (--auth kubeconfig)"}),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the cluster flags (``--host``, ``--namespace``, ``--experiment``, ``--wait``, ``--schedule``,
    ``--kfp-config``, ``--dex-user``, …) to ``parser``, in a group of their own. Unset flags stay None, so the
    environment and the config file can fill them."""
    group = parser.add_argument_group("cluster (Kubeflow Pipelines)")
    for flag, dest, kwargs in _FLAGS:
        group.add_argument(flag, dest=f"kfp_{dest}", **{"default": None, **kwargs})
    group.add_argument(
        "--kfp-config",
        dest="kfp_config",
        type=Path,
        metavar="FILE",
        help="YAML file of submission options and a 'platform' section (kfp-kubernetes names, "
        "resources, GPU); flags and ALPR_KFP_* / ALPR_K8S_* variables win",
    )


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    return {dest: getattr(args, f"kfp_{dest}", None) for _, dest, _ in _FLAGS}


def cluster_requested(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``pipeline.py --run`` goes to a cluster: a host (flag, ``ALPR_KFP_HOST``, ``KFP_HOST``), a
    ``--kfp-config`` file, or an ``--auth`` that needs no host (in-cluster, kubeconfig)."""
    env = os.environ if environ is None else environ
    return bool(
        getattr(args, "kfp_host", None)
        or getattr(args, "kfp_config", None)
        or getattr(args, "kfp_auth", None) in ("in-cluster", "kubeconfig")
        or env.get("ALPR_KFP_HOST")
        or env.get("KFP_HOST")
    )


def options_from_args(args: argparse.Namespace) -> tuple[SubmitOptions, PlatformSettings]:
    """:func:`load_options` for the flags added by :func:`add_arguments`."""
    return load_options(_flags(args), getattr(args, "kfp_config", None))
