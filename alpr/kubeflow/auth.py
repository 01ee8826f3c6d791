"""Authentication of :mod:`alpr.kubeflow.submit` to a Kubeflow Pipelines API server: :func:`make_client`.

``auth`` (:class:`alpr.kubeflow.options.SubmitOptions`; ``auto`` picks the first that applies):

- ``token``: a bearer token (``--token``, ``ALPR_KFP_TOKEN`` or ``KF_PIPELINES_TOKEN``; e.g. ``kubectl create
  token``) → ``kfp.Client(existing_token=...)``.
- ``dex``: multi-user Kubeflow behind Dex: :func:`dex_login` signs in as ``dex_user`` through Dex's login form
  (with ``requests``) and the session cookie (``authservice_session``, or oauth2-proxy's ``oauth2_proxy_kubeflow``)
  goes to ``kfp.Client(cookies=...)``. The password comes from ``ALPR_DEX_PASSWORD`` or a prompt, never from the
  command line or a file, and is never logged.
- ``in-cluster``: inside a pod, the projected ServiceAccount token for KFP (``/var/run/secrets/kubeflow/pipelines/
  token`` or ``$KF_PIPELINES_SA_TOKEN_PATH``; kfp's ``ServiceAccountTokenVolumeCredentials``).
- ``kubeconfig``: no host: through the Kubernetes API server's service proxy with the kubeconfig's credentials.
- ``none``: a host without authentication (``kubectl port-forward`` to ``ml-pipeline-ui``).

For a host, a health check (``/apis/v2beta1/healthz``) with the credentials runs first, so that a wrong endpoint
or refused credentials fail at once with the reason.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from alpr.kubeflow.options import DEX_PASSWORD_ENV, TOKEN_ENVS, SubmitError, SubmitOptions

__all__ = ["IN_CLUSTER_HOST", "SESSION_COOKIES", "dex_login", "make_client"]

#: Session cookies that Kubeflow's auth proxies set after a Dex login (oidc-authservice, oauth2-proxy).
SESSION_COOKIES = ("authservice_session", "oauth2_proxy_kubeflow")
#: Where KFP's in-cluster credentials read the projected ServiceAccount token (kfp's own default).
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
#: The KFP API server's in-cluster address (single-user and multi-user installs alike).
IN_CLUSTER_HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"


def dex_login(
    url: str,
    username: str,
    password: str,
    *,
    connector: str = "local",
    verify: bool | str = True,
    timeout: float = 30.0,
) -> dict[str, str]:
    """Sign in to Kubeflow through Dex's login form; return the session cookies.

    Follows the browser's flow: GET ``url`` (the auth proxy redirects to Dex), pick ``connector`` when Dex shows
    its connector list (``…/auth`` → ``…/auth/<connector>``), POST ``login`` and ``password`` to the login form,
    approve the grant when Dex asks (``…/approval``), and follow the redirects back to Kubeflow, which sets the
    session cookie.

    Args:
        url: a Kubeflow URL behind the auth proxy (the KFP host will do).
        username: Dex user (usually an e-mail address).
        password: the password (never logged or put in an error message).
        connector: Dex connector id of the login form.
        verify: TLS verification (bool or a CA bundle path).
        timeout: seconds per HTTP request.

    Returns:
        The session's cookies by name; it holds ``authservice_session`` or ``oauth2_proxy_kubeflow``.

    Raises:
        SubmitError: the server is unreachable, the credentials are refused, or no session cookie was set.
    """
    import requests

    session = requests.Session()
    session.verify = verify
    try:
        resp = session.get(url, allow_redirects=True, timeout=timeout)
        if resp.status_code == 403 and "/oauth2/" not in urlsplit(resp.url).path:
            # oauth2-proxy answers 403 with its sign-in page: start the flow explicitly.
            parts = urlsplit(resp.url)
            resp = session.get(
                f"{parts.scheme}://{parts.netloc}/oauth2/start?rd={parts.path or '/'}",
                allow_redirects=True,
                timeout=timeout,
            )
        if not resp.history:
            raise SubmitError(
                f"Dex login: {url} did not redirect to a login page (HTTP {resp.status_code}); "
                "is it behind Kubeflow's auth proxy? Use --auth none or --auth token otherwise"
            )
        login_url = resp.url
        path = urlsplit(login_url).path
        if re.search(r"/auth$", path):
            login_url = _with_path(login_url, re.sub(r"/auth$", f"/auth/{connector}", path))
            path = urlsplit(login_url).path
        if not re.search(r"/auth/[^/]+/login$", path):
            resp = session.get(login_url, allow_redirects=True, timeout=timeout)
            resp.raise_for_status()
            login_url = resp.url
        resp = session.post(
            login_url, data={"login": username, "password": password}, allow_redirects=True, timeout=timeout
        )
        if not resp.history:
            raise SubmitError(
                f"Dex login as {username!r} refused at {_without_query(login_url)} (HTTP "
                f"{resp.status_code}): wrong user name or password"
            )
        if re.search(r"/approval$", urlsplit(resp.url).path):
            resp = session.post(resp.url, data={"approval": "approve"}, allow_redirects=True, timeout=timeout)
            if not resp.history:
                raise SubmitError(f"Dex login: the grant approval at {_without_query(resp.url)} was not accepted")
    except requests.RequestException as exc:
        raise SubmitError(f"Dex login at {url} failed: {type(exc).__name__}: {exc}") from None
    cookies = session.cookies.get_dict()
    if not any(name in cookies for name in SESSION_COOKIES):
        raise SubmitError(
            f"Dex login as {username!r} at {url} set no session cookie ({' or '.join(SESSION_COOKIES)}"
            f"); cookies set: {sorted(cookies) or 'none'}"
        )
    return cookies


def _with_path(url: str, path: str) -> str:
    return urlsplit(url)._replace(path=path).geturl()


def _without_query(url: str) -> str:
    return urlsplit(url)._replace(query="", fragment="").geturl()


def _dex_password(prompt: Callable[[str], str] | None = None) -> str:
    password = os.environ.get(DEX_PASSWORD_ENV)
    if password:
        return password
    if prompt is None:
        if not sys.stdin.isatty():
            raise SubmitError(f"Dex login needs a password: set {DEX_PASSWORD_ENV} (no terminal to prompt on)")
        prompt = getpass.getpass
    password = prompt("Dex password: ")
    if not password:
        raise SubmitError("Dex login: empty password")
    return password


def _auth_mode(options: SubmitOptions) -> str:
    if options.auth != "auto":
        return options.auth
    if options.token is not None:
        return "token"
    if options.dex_user:
        return "dex"
    if Path(os.environ.get("KF_PIPELINES_SA_TOKEN_PATH", SA_TOKEN_PATH)).is_file():
        return "in-cluster"
    return "kubeconfig" if options.host is None else "none"


def make_client(options: SubmitOptions, *, prompt: Callable[[str], str] | None = None):
    """A ``kfp.Client`` for ``options`` (authentication: see the module docstring).

    Args:
        options: where and how to connect.
        prompt: asks for the Dex password when ``ALPR_DEX_PASSWORD`` is unset (default: ``getpass``).

    Raises:
        SubmitError: a needed option is missing, or the Dex login failed.
    """
    mode = _auth_mode(options)
    common: dict[str, Any] = {
        "verify_ssl": options.verify_ssl,
        "ssl_ca_cert": options.ssl_ca_cert,
        "ui_host": options.ui_url or options.host,
    }
    if options.namespace:
        common["namespace"] = options.namespace
    if mode == "kubeconfig":
        if options.host:
            raise SubmitError("--auth kubeconfig reaches KFP through the Kubernetes API server: leave --host unset")
        common["namespace"] = options.kfp_namespace
        return _kfp_client(host=None, kube_context=options.kube_context, **common)
    if mode == "in-cluster":
        from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

        return _kfp_client(
            host=options.host or IN_CLUSTER_HOST, credentials=ServiceAccountTokenVolumeCredentials(), **common
        )
    if not options.host:
        raise SubmitError(f"--auth {mode} needs --host (or ALPR_KFP_HOST)")
    verify = options.ssl_ca_cert or options.verify_ssl
    if mode == "token":
        if options.token is None:
            raise SubmitError(f"--auth token needs --token or ${TOKEN_ENVS[0]} / ${TOKEN_ENVS[1]}")
        token = options.token.get_secret_value()
        _check_api(options.host, {"Authorization": f"Bearer {token}"}, verify)
        return _kfp_client(host=options.host, existing_token=token, **common)
    if mode == "dex":
        if not options.dex_user:
            raise SubmitError("--auth dex needs --dex-user (or ALPR_KFP_DEX_USER)")
        cookies = dex_login(
            options.dex_url or options.host,
            options.dex_user,
            _dex_password(prompt),
            connector=options.dex_connector,
            verify=verify,
        )
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        _check_api(options.host, {"Cookie": cookie}, verify)
        return _kfp_client(host=options.host, cookies=cookie, **common)
    _check_api(options.host, {}, verify)
    return _kfp_client(host=options.host, **common)


def _kfp_client(**kwargs: Any):
    """``kfp.Client(**kwargs)`` without the FutureWarning kfp 2.16 emits on every construction."""
    import kfp

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="This client only works with Kubeflow Pipeline", category=FutureWarning
        )
        return kfp.Client(**kwargs)


def _check_api(host: str, headers: dict[str, str], verify: bool | str, timeout: float = 30.0) -> None:
    """Fail fast, with the reason, when ``host`` is not a KFP API that accepts these credentials (kfp.Client would
    retry its health check for half a minute and then say only that it timed out)."""
    import requests

    url = f"{host}/apis/v2beta1/healthz"
    try:
        resp = requests.get(url, headers=headers, verify=verify, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        raise SubmitError(f"KFP API unreachable at {url}: {type(exc).__name__}: {exc}") from None
    if resp.status_code in (401, 403) or resp.is_redirect:
        raise SubmitError(
            f"KFP API at {host} refused the request (HTTP {resp.status_code}): authenticate with "
            f"--token / ${TOKEN_ENVS[0]} or --dex-user (see alpr/kubeflow/auth.py)"
        )
    if resp.status_code != 200:
        raise SubmitError(
            f"{url} answered HTTP {resp.status_code}: is {host} the KFP API endpoint (multi-user "
            "Kubeflow: https://<kubeflow>/pipeline)?"
        )
