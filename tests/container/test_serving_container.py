"""The serving image as KServe runs it: the model server is the entry point, the model directory is mounted
read-only, the root file system is read-only, the user is uid 10001, and PLATE_SPEC's V1 and V2 requests, the
readiness routes and /metrics answer from outside the container on a loopback port. SIGTERM stops it (--init).

The model is the tiny trained model of tests/conftest.py with its ONNX export (``tiny_onnx_model_dir``): a real
mmdetection model, served on ONNX Runtime -- the image has no torch, mmcv or mmdet.
"""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
from container_tools import IMAGE_UID, run, world_readable_copy
from live_server import free_port
from readings import check_v1_predictions, check_v2_plates, post_json, v1_body, v2_body

from alpr.serving.server import MODEL_NAME

#: Seconds the container may take from `podman run` to the model's readiness route answering 200.
READY_TIMEOUT_S = 120
#: Where the model directory is mounted, and the writable scratch the read-only root needs (docs/containers.md).
MODEL_MOUNT = "/models/alpr"
TMPFS = ["/tmp"]


def serving_command(podman: str, image: str, name: str, model_dir, port: int) -> list[str]:
    """The `podman run` of the serving image: read-only root with tmpfs scratch, model read-only, loopback port."""
    cmd = [podman, "run", "-d", "--name", name, "--init", "--read-only"]
    for path in TMPFS:
        cmd += ["--tmpfs", f"{path}:rw,mode=1777"]
    return cmd + [
        "-v", f"{model_dir}:{MODEL_MOUNT}:ro",
        "-e", f"STORAGE_URI={MODEL_MOUNT}",
        "-p", f"127.0.0.1:{port}:8080",
        image,
    ]  # fmt: skip


def wait_container_ready(client: httpx.Client, path: str, podman: str, name: str, *, deadline: float) -> None:
    """Poll ``GET path`` until it answers 200; fail the test with the container's log when the container stops
    running first or ``deadline`` (``time.monotonic()``) passes."""
    while True:
        state = run([podman, "inspect", "--format", "{{.State.Status}}", name], check=False).stdout.strip()
        assert state == "running", f"container {state}:\n" + run([podman, "logs", name], check=False).stderr
        try:
            if client.get(path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            logs = run([podman, "logs", name], check=False)
            pytest.fail(f"not ready after {READY_TIMEOUT_S} s:\n{logs.stdout[-2000:]}{logs.stderr[-3000:]}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def served(images, podman, tiny_onnx_model_dir, tiny_coco):
    """The serving container on a free loopback port, ready; yields (client, container name, seconds to ready)."""
    import shutil
    import tempfile
    from pathlib import Path

    shared = Path(tempfile.mkdtemp(prefix="alpr-serving-"))
    shared.chmod(0o755)
    model_dir = world_readable_copy(tiny_onnx_model_dir, shared / "model")
    name = f"alpr-serving-test-{int(time.time())}"
    port = free_port()
    started = time.monotonic()
    run(serving_command(podman, images["serving"], name, model_dir, port))
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, trust_env=False)
    try:
        wait_container_ready(client, f"/v2/models/{MODEL_NAME}/ready", podman, name, deadline=started + READY_TIMEOUT_S)
        yield client, name, time.monotonic() - started
    finally:
        client.close()
        run([podman, "rm", "-f", "-t", "5", name], check=False)
        shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture(scope="module")
def encoded(tiny_coco):
    """Two real images of the tiny data set, base64."""
    files = sorted((tiny_coco / "images").glob("*.jpg"))[:2]
    return [base64.b64encode(f.read_bytes()).decode("ascii") for f in files]


def test_runs_as_10001_on_a_read_only_root_with_the_model_read_only(served, podman):
    _, name, seconds = served
    print(f"serving container ready in {seconds:.1f} s (tiny model)")
    info = json.loads(run([podman, "inspect", name]).stdout)[0]
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    (mount,) = [m for m in info["Mounts"] if m["Destination"] == MODEL_MOUNT]
    assert mount["RW"] is False
    assert run([podman, "exec", name, "id", "-u"]).stdout.strip() == str(IMAGE_UID)
    pid1 = run([podman, "exec", name, "cat", "/proc/1/cmdline"]).stdout
    assert "init" in pid1  # --init: a real init forwards SIGTERM to the server
    assert run([podman, "exec", name, "touch", "/app/x"], check=False).returncode != 0  # read-only root
    assert run([podman, "exec", name, "touch", f"{MODEL_MOUNT}/x"], check=False).returncode != 0  # read-only model


def test_readiness_routes(served):
    client, _, _ = served
    assert client.get("/").json() == {"status": "alive"}
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get(f"/v1/models/{MODEL_NAME}").json() == {"name": MODEL_NAME, "ready": True}
    assert client.get(f"/v2/models/{MODEL_NAME}/ready").json() == {"name": MODEL_NAME, "ready": True}
    meta = client.get(f"/v2/models/{MODEL_NAME}").json()
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]


def test_v1_predict(served, encoded):
    client, _, _ = served
    check_v1_predictions(post_json(client, f"/v1/models/{MODEL_NAME}:predict", v1_body(*encoded)), 2)


def test_v2_infer(served, encoded):
    client, _, _ = served
    r = post_json(client, f"/v2/models/{MODEL_NAME}/infer", v2_body(encoded, request_id="c-1"))
    check_v2_plates(r, 2, request_id="c-1", model_name=MODEL_NAME)


def test_bad_request_is_400(served):
    client, _, _ = served
    r = post_json(client, f"/v1/models/{MODEL_NAME}:predict", v1_body("not base64!"))
    assert r.status_code == 400 and "instance 0: not valid base64" in r.json()["error"]


def test_metrics(served, encoded):
    client, _, _ = served
    assert post_json(client, f"/v1/models/{MODEL_NAME}:predict", v1_body(encoded[0]))
    text = client.get("/metrics").text
    for metric in ("request_preprocess_seconds", "request_predict_seconds", "request_postprocess_seconds"):
        assert f'{metric}_count{{model_name="{MODEL_NAME}"}}' in text, metric


def test_sigterm_stops_the_server(images, podman, served):
    """`podman stop` sends SIGTERM: the server exits by itself, well before the kill after 20 s (exit 137)."""
    _, name, _ = served
    started = time.monotonic()
    run([podman, "stop", "-t", "20", name])
    seconds = time.monotonic() - started
    code = run([podman, "inspect", "--format", "{{.State.ExitCode}}", name]).stdout.strip()
    assert code != "137" and seconds < 20, (code, seconds)


def test_serves_as_the_serving_runtime_starts_it(images, podman, tiny_onnx_model_dir, encoded):
    """The serving image started with the committed ServingRuntime's own args (``{{.Name}}`` = the
    InferenceService's name) and the model at ``/mnt/models``, where KServe's storage initializer puts the
    ``storageUri`` (no ``STORAGE_URI``, no database, no bucket): it serves the model under that name, refuses the
    model-repository routes (403) and stays ready."""
    import shutil
    import tempfile
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    runtime = yaml.safe_load((root / "manifests" / "base" / "servingruntime.yaml").read_text(encoding="utf-8"))
    (container,) = runtime["spec"]["containers"]
    isvc_name = "plates"
    args = [a.replace("{{.Name}}", isvc_name) for a in container["args"]]
    assert "--model_dir=/mnt/models" in args
    shared = Path(tempfile.mkdtemp(prefix="alpr-runtime-"))
    shared.chmod(0o755)
    model_dir = world_readable_copy(tiny_onnx_model_dir, shared / "model")
    name = f"alpr-runtime-test-{int(time.time())}"
    port = free_port()
    cmd = [podman, "run", "-d", "--name", name, "--init", "--read-only", "--tmpfs", "/tmp:rw,mode=1777"]
    cmd += ["-v", f"{model_dir}:/mnt/models:ro", "-p", f"127.0.0.1:{port}:8080"]
    cmd += [f"--env={e['name']}={e['value']}" for e in container.get("env", [])]
    run([*cmd, images["serving"], *args])
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, trust_env=False)
    try:
        ready = container["readinessProbe"]["httpGet"]["path"].replace("{{.Name}}", isvc_name)
        wait_container_ready(client, ready, podman, name, deadline=time.monotonic() + READY_TIMEOUT_S)
        r = post_json(client, f"/v2/models/{isvc_name}/infer", v2_body(encoded, request_id="rt-1"))
        check_v2_plates(r, 2, request_id="rt-1", model_name=isvc_name)
        assert client.post(f"/v2/repository/models/{isvc_name}/unload").status_code == 403
        assert client.get(ready).status_code == 200
        assert client.get(container["livenessProbe"]["httpGet"]["path"]).status_code == 200
    finally:
        client.close()
        run([podman, "rm", "-f", "-t", "5", name], check=False)
        shutil.rmtree(shared, ignore_errors=True)


def test_the_image_has_no_torch_mmcv_or_mmdet(images, podman):
    code = (
        "import importlib.util as u, onnxruntime, cv2, kserve; "
        "print([m for m in ('torch', 'torchvision', 'mmcv', 'mmdet', 'mmengine') if u.find_spec(m)])"
    )
    out = run([podman, "run", "--rm", "--read-only", "--entrypoint", "python", images["serving"], "-c", code])
    assert out.stdout.strip() == "[]", out.stdout


def _serve_once(podman: str, image: str, model_dir, encoded: list[str]) -> httpx.Response | str:
    """Start the serving image on ``model_dir``; the V1 response to ``encoded`` once ready, or the container's log
    when it exits first."""
    name = f"alpr-serving-once-{time.monotonic_ns()}"
    port = free_port()
    run(serving_command(podman, image, name, model_dir, port))
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, trust_env=False)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            state = run([podman, "inspect", "--format", "{{.State.Status}}", name], check=False).stdout.strip()
            if state != "running":
                logs = run([podman, "logs", name], check=False)
                code = run([podman, "inspect", "--format", "{{.State.ExitCode}}", name], check=False).stdout
                return f"exit {code.strip()}\n{logs.stdout}{logs.stderr}"
            try:
                if client.get(f"/v2/models/{MODEL_NAME}/ready", timeout=2).status_code == 200:
                    return post_json(client, f"/v1/models/{MODEL_NAME}:predict", v1_body(*encoded))
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        pytest.fail(f"neither ready nor stopped after {READY_TIMEOUT_S} s")
    finally:
        client.close()
        run([podman, "rm", "-f", "-t", "5", name], check=False)


def test_a_hostile_config_py_is_not_run(images, podman, tiny_onnx_model_dir, encoded, shared_tmp):
    """Whoever can write to the model bucket cannot run code in the server: the model's config.py (here one that
    would stop the load) is never executed; the ONNX export and model.json are read as data."""
    model_dir = world_readable_copy(tiny_onnx_model_dir, shared_tmp / "model")
    (model_dir / "config.py").write_text("raise SystemExit('config.py was executed')\n")
    (model_dir / "config.py").chmod(0o644)
    response = _serve_once(podman, images["serving"], model_dir, encoded[:1])
    assert not isinstance(response, str), response[-3000:]
    check_v1_predictions(response, 1)


def test_a_model_without_its_export_is_refused_naming_the_way_out(images, podman, tiny_model_dir, encoded, shared_tmp):
    """A model directory written before Evaluate exported models: the server exits 1 and says how to export it."""
    model_dir = world_readable_copy(tiny_model_dir, shared_tmp / "model")
    outcome = _serve_once(podman, images["serving"], model_dir, encoded[:1])
    assert isinstance(outcome, str), "served a model without an ONNX export in an image without torch"
    assert outcome.startswith("exit 1"), outcome[-3000:]
    assert "no ONNX export in model.json" in outcome and "alpr export-onnx" in outcome, outcome[-3000:]
