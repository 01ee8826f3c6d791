"""Authentication to the KFP API (alpr.kubeflow.auth) against the FAKE KFP server of tests/fake_kfp.py (a real
HTTP server on 127.0.0.1 with bearer-token and Dex-cookie checks, not the real backend): which mode ``auto``
picks, the Dex login flow, the health check's reasons, and errors naming the missing flag or variable -- never
echoing a password or a token."""

import io
import os

import pytest
from fake_kfp import API, FakeKFP

from alpr.kubeflow import auth
from alpr.kubeflow.auth import dex_login, make_client
from alpr.kubeflow.options import SubmitError, SubmitOptions


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No developer settings leak in; kfp's context file goes to tmp; no projected ServiceAccount token."""
    import kfp

    for key in list(os.environ):
        if key.startswith("ALPR_KFP_") or key in (
            "KFP_HOST",
            "KF_PIPELINES_TOKEN",
            "ALPR_DEX_PASSWORD",
            "KF_PIPELINES_ENDPOINT",
            "KF_PIPELINES_SA_TOKEN_PATH",
        ):
            monkeypatch.delenv(key)
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-sa-token"))


def _health_checks(server: FakeKFP):
    return server.api_calls("GET", "/healthz")


# --------------------------------------------------------------------------------------------- which mode


def test_auto_picks_the_first_mode_that_applies(tmp_path, monkeypatch):
    mode = auth._auth_mode
    assert mode(SubmitOptions()) == "kubeconfig"
    assert mode(SubmitOptions(host="http://h")) == "none"
    sa_token = tmp_path / "sa-token"
    sa_token.write_text("projected")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(sa_token))
    assert mode(SubmitOptions(host="http://h")) == "in-cluster"
    assert mode(SubmitOptions(host="http://h", dex_user="u@example.com")) == "dex"
    assert mode(SubmitOptions(host="http://h", dex_user="u@example.com", token="t")) == "token"
    assert mode(SubmitOptions(host="http://h", token="t", auth="none")) == "none"  # an explicit mode wins


# --------------------------------------------------------------------------------------------- missing options


@pytest.mark.parametrize(
    "opts, message",
    [
        (
            {"auth": "kubeconfig", "host": "http://h"},
            "--auth kubeconfig reaches KFP through the Kubernetes API server: leave --host unset",
        ),
        ({"auth": "token", "token": "t"}, r"--auth token needs --host \(or ALPR_KFP_HOST\)"),
        ({"auth": "dex", "dex_user": "u"}, r"--auth dex needs --host \(or ALPR_KFP_HOST\)"),
        ({"auth": "none"}, r"--auth none needs --host"),
        (
            {"auth": "token", "host": "http://h"},
            r"--auth token needs --token or \$ALPR_KFP_TOKEN / \$KF_PIPELINES_TOKEN",
        ),
        ({"auth": "dex", "host": "http://h"}, r"--auth dex needs --dex-user \(or ALPR_KFP_DEX_USER\)"),
    ],
)
def test_a_missing_option_is_named(opts, message):
    with pytest.raises(SubmitError, match=message):
        make_client(SubmitOptions(**opts))


# --------------------------------------------------------------------------------------------- token


def test_bearer_token_is_checked_against_the_api_before_the_client_is_made():
    with FakeKFP(token="tok-123") as server:
        with pytest.raises(SubmitError, match=r"refused the request \(HTTP 401\)") as err:
            make_client(SubmitOptions(host=server.url, token="wrong-tok"))
        assert "wrong-tok" not in str(err.value) and "--token" in str(err.value)
        client = make_client(SubmitOptions(host=server.url, token="tok-123"))
        assert client is not None
        assert [r.headers.get("authorization") for r in _health_checks(server)][:2] == [
            "Bearer wrong-tok",
            "Bearer tok-123",
        ]


def test_no_credentials_against_a_protected_host_is_refused():
    with FakeKFP(token="tok-123") as server:
        refused = rf"KFP API at {server.url} refused the request \(HTTP 401\)"
        with pytest.raises(SubmitError, match=refused):
            make_client(SubmitOptions(host=server.url))


def test_a_host_that_is_not_the_api_is_named():
    with FakeKFP() as server:
        wrong = server.url + API  # the API prefix twice: the fake answers 404
        with pytest.raises(SubmitError, match=rf"answered HTTP 404: is {wrong} the KFP API endpoint"):
            make_client(SubmitOptions(host=wrong))


def test_an_unreachable_host_is_named():
    with FakeKFP() as server:
        url = server.url
    # the server is shut down now: nothing listens on its port
    with pytest.raises(SubmitError, match=rf"KFP API unreachable at {url}/apis/v2beta1/healthz: ConnectionError"):
        make_client(SubmitOptions(host=url, auth="none"))


# --------------------------------------------------------------------------------------------- Dex


def test_dex_login_returns_the_session_cookie():
    with FakeKFP(dex_users={"user@example.com": "pa55-word"}) as server:
        cookies = dex_login(server.url, "user@example.com", "pa55-word")
        assert set(cookies) & set(auth.SESSION_COOKIES) == {"authservice_session"}
        assert cookies["authservice_session"] in server.sessions
        paths = [(r.method, r.path) for r in server.requests]
        # the browser's flow: connector list → connector → login form → approval → callback
        for step in [
            ("GET", "/dex/auth"),
            ("GET", "/dex/auth/local/login"),
            ("POST", "/dex/auth/local/login"),
            ("POST", "/dex/approval"),
            ("GET", "/authservice/oidc/callback"),
        ]:
            assert step in paths, step


def test_dex_wrong_password_is_refused_naming_the_user_not_the_password():
    with FakeKFP(dex_users={"user@example.com": "right"}) as server:
        with pytest.raises(
            SubmitError,
            match=r"Dex login as 'user@example.com' refused at .*/dex/auth/local/login "
            r"\(HTTP 200\): wrong user name or password",
        ) as err:
            dex_login(server.url, "user@example.com", "wrong-secret")
        assert "wrong-secret" not in str(err.value) and "state=" not in str(err.value)


def test_dex_against_an_unprotected_host_says_so():
    with FakeKFP() as server, pytest.raises(SubmitError, match="did not redirect to a login page"):
        dex_login(server.url + "/apis/v2beta1/healthz", "u", "p")


def test_dex_login_at_an_unreachable_url_is_named():
    with FakeKFP() as server:
        url = server.url
    with pytest.raises(SubmitError, match=rf"Dex login at {url} failed: ConnectionError"):
        dex_login(url, "u", "p", timeout=5)


def test_dex_client_sends_the_session_cookie(monkeypatch):
    with FakeKFP(dex_users={"u@example.com": "from-env"}) as server:
        monkeypatch.setenv("ALPR_DEX_PASSWORD", "from-env")
        asked = []
        make_client(SubmitOptions(host=server.url, dex_user="u@example.com"), prompt=asked.append)
        assert asked == []  # the environment's password: no prompt
        checks = _health_checks(server)
        assert checks and all("authservice_session=" in check.headers["cookie"] for check in checks)


def test_dex_password_prompt_when_not_in_environment():
    asked = []
    with FakeKFP(dex_users={"u@example.com": "typed"}) as server:
        client = make_client(
            SubmitOptions(host=server.url, dex_user="u@example.com"), prompt=lambda text: asked.append(text) or "typed"
        )
        assert asked == ["Dex password: "] and client is not None
        assert len([r for r in server.requests if r.path == "/dex/auth/local/login" and r.method == "POST"]) == 1


def test_dex_password_needs_the_variable_without_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: nothing to prompt on
    with pytest.raises(SubmitError, match=r"set ALPR_DEX_PASSWORD \(no terminal to prompt on\)"):
        auth._dex_password()
    with pytest.raises(SubmitError, match="empty password"):
        auth._dex_password(lambda text: "")
    monkeypatch.setenv("ALPR_DEX_PASSWORD", "secret")
    assert auth._dex_password() == "secret"


# --------------------------------------------------------------------------------------------- in-cluster / kubeconfig


def test_in_cluster_uses_the_projected_token_and_the_cluster_address(tmp_path, monkeypatch):
    token = tmp_path / "sa-token"
    token.write_text("projected-sa-token")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    with FakeKFP(token="projected-sa-token") as server:
        client = make_client(SubmitOptions(host=server.url))  # auto: the projected token exists
        client.create_experiment("e1")
        assert server.api_calls("POST", "/experiments")[0].headers["authorization"] == "Bearer projected-sa-token"
    assert auth.IN_CLUSTER_HOST == "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
