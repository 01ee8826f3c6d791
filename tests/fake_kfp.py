"""A FAKE Kubeflow Pipelines v2 API server (and Dex login) for the submission tests -- not the real KFP backend.

It is a real HTTP server (``http.server`` on 127.0.0.1, an OS-chosen port, in a thread) that answers the part of
the KFP v2beta1 REST API that ``kfp.Client`` 2.16 uses for :mod:`alpr.kubeflow.submit`, with the same paths, query
parameters, multipart uploads and JSON field names as the real server, and keeps its objects in memory:

====================================================  =========================================================
``GET  /apis/v2beta1/healthz``                        ``{"multi_user": false}``
``GET  /apis/v2beta1/pipelines``                      list; ``filter`` (JSON predicates, EQUALS on
                                                      ``display_name``), ``namespace``
``POST /apis/v2beta1/pipelines/upload``               multipart ``uploadfile``; ``name``, ``description``,
                                                      ``namespace`` → a pipeline and its first version
``POST /apis/v2beta1/pipelines/upload_version``       multipart ``uploadfile``; ``name``, ``pipelineid``
``GET  /apis/v2beta1/pipelines/{id}/versions``        list; ``filter``
``GET/POST /apis/v2beta1/experiments``                list (``filter``, ``namespace``) / create
``POST /apis/v2beta1/runs``, ``GET …/runs/{id}``      create / get; each get moves the run one step along
                                                      :attr:`FakeKFP.run_states` (``PENDING`` first)
``POST /apis/v2beta1/recurringruns``                  create
====================================================  =========================================================

Authentication, when configured: ``token`` requires ``Authorization: Bearer <token>``; ``dex_users`` requires the
``authservice_session`` cookie of a Dex login and serves a Dex-like login flow (``/`` → ``/dex/auth`` (connector
list) → ``/dex/auth/local`` → ``/dex/auth/local/login`` form → ``/dex/approval`` → ``/authservice/oidc/callback``
sets the cookie). Unauthenticated API calls get HTTP 401. Every request is recorded in :attr:`FakeKFP.requests`.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

API = "/apis/v2beta1"


@dataclass
class Recorded:
    """One request the fake server received."""

    method: str
    path: str
    query: dict[str, str]
    json: Any = None
    files: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _matches(obj: dict, filter_json: str | None) -> bool:
    if not filter_json:
        return True
    for p in json.loads(filter_json).get("predicates", []):
        op = p.get("operation")
        if op not in ("EQUALS", 1):
            raise ValueError(f"fake KFP: unsupported filter operation {op!r}")
        value = p.get("stringValue", p.get("string_value"))
        if obj.get(p["key"]) != value:
            return False
    return True


class FakeKFP:
    """The fake server's state and lifecycle; use as a context manager (see module docstring).

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        run_states: states a run reports on successive GETs after ``PENDING`` (the last one repeats).
        run_error: the ``error.message`` of runs that end ``FAILED``.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        dex_users: dict[str, str] | None = None,
        run_states: list[str] | None = None,
        run_error: str = "task train failed: exit code 1",
    ):
        self.token = token
        self.dex_users = dex_users or {}
        self.run_states = run_states or ["RUNNING", "SUCCEEDED"]
        self.run_error = run_error
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self.sessions: set[str] = set()
        self.requests: list[Recorded] = []
        self._gets: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- lifecycle
    def __enter__(self) -> FakeKFP:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kfp", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def api_calls(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        """Recorded API requests, optionally only those with ``method`` and ``path`` (without the API prefix)."""
        return [
            r
            for r in self.requests
            if r.path.startswith(API)
            and (method is None or r.method == method)
            and (path is None or r.path == API + path)
        ]

    # -- the API
    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return False
        if self.dex_users:
            cookie = SimpleCookie(headers.get("cookie", ""))
            if "authservice_session" not in cookie or cookie["authservice_session"].value not in self.sessions:
                return False
        return True

    def handle_api(self, req: Recorded) -> tuple[int, Any]:
        """Answer one API request: ``(HTTP status, JSON body)``."""
        p, q = req.path[len(API) :], req.query
        with self._lock:
            if req.method == "GET" and p == "/healthz":
                return 200, {"multi_user": False}
            if req.method == "GET" and p == "/pipelines":
                found = [
                    x
                    for x in self.pipelines.values()
                    if _matches(x, q.get("filter")) and x.get("namespace", "") == q.get("namespace", "")
                ]
                return 200, {"pipelines": found, "total_size": len(found)} if found else {}
            if req.method == "POST" and p == "/pipelines/upload":
                if any(x["display_name"] == q["name"] for x in self.pipelines.values()):
                    return 409, {"error": f"pipeline {q['name']} exists", "code": 6}
                pid = str(uuid.uuid4())
                pipe = {
                    "pipeline_id": pid,
                    "display_name": q["name"],
                    "name": q["name"],
                    "description": q.get("description", ""),
                    "created_at": _now(),
                }
                if q.get("namespace"):
                    pipe["namespace"] = q["namespace"]
                self.pipelines[pid] = pipe
                self._add_version(pid, q["name"], req.files["uploadfile"])
                return 200, pipe
            if req.method == "POST" and p == "/pipelines/upload_version":
                pid = q.get("pipelineid")
                if pid not in self.pipelines:
                    return 404, {"error": f"pipeline {pid} not found", "code": 5}
                if any(v["pipeline_id"] == pid and v["display_name"] == q["name"] for v in self.versions.values()):
                    return 409, {"error": f"version {q['name']} exists", "code": 6}
                return 200, self._add_version(pid, q["name"], req.files["uploadfile"])
            if req.method == "GET" and p.startswith("/pipelines/") and p.endswith("/versions"):
                pid = p.split("/")[2]
                found = [v for v in self.versions.values() if v["pipeline_id"] == pid and _matches(v, q.get("filter"))]
                return 200, {"pipeline_versions": found, "total_size": len(found)} if found else {}
            if req.method == "GET" and p == "/experiments":
                found = [
                    e
                    for e in self.experiments.values()
                    if _matches(e, q.get("filter")) and e.get("namespace", "") == q.get("namespace", "")
                ]
                return 200, {"experiments": found, "total_size": len(found)} if found else {}
            if req.method == "POST" and p == "/experiments":
                eid = str(uuid.uuid4())
                exp = {
                    "experiment_id": eid,
                    "display_name": req.json["display_name"],
                    "namespace": req.json.get("namespace") or "",
                    "created_at": _now(),
                    "storage_state": "AVAILABLE",
                }
                self.experiments[eid] = exp
                return 200, exp
            if req.method == "POST" and p == "/runs":
                body = dict(req.json)
                if body.get("experiment_id") not in self.experiments:
                    return 400, {"error": "experiment not found", "code": 3}
                rid = str(uuid.uuid4())
                run = {**body, "run_id": rid, "state": "PENDING", "created_at": _now(), "storage_state": "AVAILABLE"}
                self.runs[rid] = run
                self._gets[rid] = 0
                return 200, run
            if req.method == "GET" and p.startswith("/runs/"):
                rid = p.split("/")[2]
                if rid not in self.runs:
                    return 404, {"error": f"run {rid} not found", "code": 5}
                run = self.runs[rid]
                n = self._gets[rid]
                self._gets[rid] = n + 1
                run["state"] = self.run_states[min(n, len(self.run_states) - 1)]
                if run["state"] == "FAILED":
                    run["error"] = {"code": 2, "message": self.run_error}
                if run["state"] in ("SUCCEEDED", "FAILED"):
                    run["finished_at"] = _now()
                return 200, run
            if req.method == "POST" and p == "/recurringruns":
                rid = str(uuid.uuid4())
                rec = {**req.json, "recurring_run_id": rid, "status": "ENABLED", "created_at": _now()}
                self.recurring_runs[rid] = rec
                return 200, rec
        return 404, {"error": f"fake KFP: no route {req.method} {req.path}", "code": 5}

    def _add_version(self, pid: str, name: str, package: bytes) -> dict:
        vid = str(uuid.uuid4())
        version = {
            "pipeline_id": pid,
            "pipeline_version_id": vid,
            "display_name": name,
            "name": name,
            "created_at": _now(),
            "package": package.decode(),
        }
        self.versions[vid] = version
        return {k: v for k, v in version.items() if k != "package"}

    # -- the Dex-like login
    def handle_login(self, req: Recorded, form: dict[str, str]) -> tuple[int, dict[str, str], str]:
        """Answer a non-API request of the login flow: ``(status, headers, HTML body)``."""
        path = req.path
        if path == "/dex/auth":
            return 200, {}, '<a href="/dex/auth/local?state=s1">Log in with Email</a>'
        if path == "/dex/auth/local":
            return (
                302,
                {"Location": f"/dex/auth/local/login?{urlencode({'back': '', 'state': req.query['state']})}"},
                "",
            )
        if path == "/dex/auth/local/login":
            if req.method == "POST":
                if self.dex_users.get(form.get("login")) == form.get("password"):
                    return 303, {"Location": f"/dex/approval?req={req.query.get('state', '')}"}, ""
                return 200, {}, "<form method=post>Invalid Email Address and password.</form>"
            return 200, {}, "<form method=post><input name=login><input name=password type=password></form>"
        if path == "/dex/approval":
            if req.method == "POST" and form.get("approval") == "approve":
                return 303, {"Location": "/authservice/oidc/callback?code=c1"}, ""
            return 200, {}, "<form method=post><button name=approval value=approve>Grant Access</button></form>"
        if path == "/authservice/oidc/callback":
            session = secrets.token_urlsafe(16)
            self.sessions.add(session)
            return 302, {"Location": "/", "Set-Cookie": f"authservice_session={session}; Path=/; HttpOnly"}, ""
        if self._authorized(req.headers):
            return 200, {}, "<html>Kubeflow Pipelines</html>"
        return 302, {"Location": "/dex/auth?client_id=kubeflow&state=s1"}, ""

    # -- HTTP plumbing
    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                body = self.rfile.read(int(headers.get("content-length") or 0))
                req = Recorded(method, parts.path, query, headers=headers)
                ctype = headers.get("content-type", "")
                form: dict[str, str] = {}
                if ctype.startswith("application/json") and body:
                    req.json = json.loads(body)
                elif ctype.startswith("multipart/form-data"):
                    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body
                    )
                    for part in msg.iter_parts():
                        req.files[part.get_param("name", header="content-disposition")] = part.get_payload(decode=True)
                elif ctype.startswith("application/x-www-form-urlencoded"):
                    form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
                fake.requests.append(req)
                if parts.path.startswith(API):
                    if not fake._authorized(headers):
                        status, payload = 401, {"error": "Unauthorized: no valid credentials", "code": 16}
                    else:
                        status, payload = fake.handle_api(req)
                    self._reply(status, {"Content-Type": "application/json"}, json.dumps(payload))
                else:
                    status, extra, html = fake.handle_login(req, form)
                    self._reply(status, {"Content-Type": "text/html", **extra}, html)

            def _reply(self, status: int, headers: dict[str, str], text: str) -> None:
                data = text.encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        return Handler
