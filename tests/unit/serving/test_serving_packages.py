"""The serving image's packages (``[tool.alpr] serving-packages`` of pyproject.toml, containers/requirements.py):
every one is a dependency, and the model server reading plates on ONNX Runtime imports nothing that they do not pull
in -- so the image without torch, mmcv and mmdet serves (tests/container builds and runs it)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "containers"))

import requirements as image_requirements  # noqa: E402  (containers/requirements.py)


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_serving_package_is_a_dependency_with_its_specifier():
    pyproject = _pyproject()
    serving = image_requirements.requirements(pyproject, serving=True)
    deps = set(pyproject["project"]["dependencies"])
    assert serving and set(serving) <= deps
    names = {canonicalize_name(Requirement(r).name) for r in serving}
    assert not names & {"torch", "mmcv", "mmdet", "mmengine", "torchvision"}
    assert {"kserve", "onnxruntime", "opencv-python-headless", "numpy"} <= names


def test_a_serving_package_that_is_no_dependency_is_named():
    pyproject = {"project": {"dependencies": ["numpy<2.3"]}, "tool": {"alpr": {"serving-packages": ["NumPy", "x_y"]}}}
    with pytest.raises(KeyError, match="serving-packages not in \\[project\\] dependencies: x-y"):
        image_requirements.requirements(pyproject, serving=True)
    assert image_requirements.requirement_name(" Foo_Bar.baz[x]>=1; python_version>'3'") == "foo-bar-baz"


def test_the_script_prints_the_subset_and_exits_2_naming_a_stranger(tmp_path, capsys):
    assert image_requirements.main(["--serving", str(ROOT / "pyproject.toml")]) == 0
    assert capsys.readouterr().out.splitlines() == image_requirements.requirements(_pyproject(), serving=True)
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[project]\ndependencies = ["numpy"]\n[tool.alpr]\nserving-packages = ["kserve"]\n')
    assert image_requirements.main(["--serving", str(bad)]) == 2
    assert "serving-packages not in [project] dependencies: kserve" in capsys.readouterr().err


def _closure(requirements: list[str]) -> set[str]:
    """The installed distributions ``requirements`` pull in, transitively (markers and extras evaluated)."""
    seen: set[str] = set()
    todo = [(Requirement(r), frozenset()) for r in requirements]
    done: set[tuple[str, frozenset]] = set()
    while todo:
        req, parent_extras = todo.pop()
        env_ok = req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (parent_extras or {""}))
        if not env_ok:
            continue
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in done:
            continue
        done.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional part not installed here: nothing of it can be imported either
        seen.add(name)
        todo += [(Requirement(r), frozenset(req.extras)) for r in dist.requires or []]
    return seen


#: What the serving image does: load a model on ONNX Runtime, decode a V1 request, read it, answer it, build the
#: prediction log's CloudEvent, resolve ``latest`` in an (empty) metadata store; then list the modules' files.
_SERVE = """
import asyncio, base64, json, sys, tempfile
from datetime import UTC, datetime
from alpr.model.inference import ModelError, resolve_model_uri
from alpr.serving import eventlog
from alpr.serving.server import ALPRModel, build_parser
build_parser()
model = ALPRModel(model_uri=sys.argv[1], cache_dir=tempfile.mkdtemp())
model.load()
assert model.reader.backend == "onnx", model.reader.backend
body = {"instances": [{"image_bytes": {"b64": base64.b64encode(open(sys.argv[2], "rb").read()).decode()}}]}
out = asyncio.run(model.predict(body))
assert len(out["predictions"]) == 1
config = eventlog.EventLogConfig(url="http://127.0.0.1:9/", source="http://localhost:8080/", inference_service="alpr")
now = datetime.now(UTC)
payload = eventlog.LoggedPayload("id-1", eventlog.REQUEST_EVENT_TYPE, now, "application/json", b"{}", {})
headers, _ = eventlog.binary_event(config, payload, now)
assert headers["ce-id"] == "id-1", headers
try:
    resolve_model_uri("latest", db_url="sqlite:///" + tempfile.mkdtemp() + "/m.db")
except ModelError:
    pass
print(json.dumps({name: getattr(m, "__file__", None) for name, m in list(sys.modules.items())}))
"""


def test_the_server_imports_only_what_the_serving_packages_bring(tiny_onnx_model_dir, tiny_coco):
    image = sorted((tiny_coco / "images").glob("*.jpg"))[0]
    proc = subprocess.run(
        [sys.executable, "-c", _SERVE, str(tiny_onnx_model_dir), str(image)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = json.loads(proc.stdout.strip().splitlines()[-1])
    owner: dict[str, str] = {}
    for dist in metadata.distributions():
        for f in dist.files or ():
            if f.suffix in (".py", ".so", ".pyd"):
                owner[str(Path(dist.locate_file(f)).resolve())] = canonicalize_name(dist.metadata["Name"])
    allowed = _closure(image_requirements.requirements(_pyproject(), serving=True))
    strangers = {}
    for name, file in modules.items():
        if not file or Path(file).resolve().is_relative_to(ROOT):
            continue  # built in, or the project itself
        dist = owner.get(str(Path(file).resolve()))
        if dist is not None and dist not in allowed:
            strangers.setdefault(dist, name)
    assert "onnxruntime" in {owner.get(str(Path(f).resolve())) for f in modules.values() if f}
    assert not strangers, f"the server imported modules of distributions outside serving-packages: {strangers}"
