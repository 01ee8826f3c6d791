"""The layers of docs/ARCHITECTURE.md, as `make lint` checks them: import-linter's contracts in pyproject.toml pass on
the tree, and fail on a copy of the tree with one deliberately wrong import (so the contracts can fail at all)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("alpr", "components", "dataset_tools", "pipelines")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture()
def tree_copy(tmp_path: Path) -> Path:
    """The project's packages and pyproject.toml copied to ``tmp_path`` (without caches)."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_its_contracts():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "contract"),
    [
        # the metadata store (bottom layers) reaching up into the step layer
        ("alpr/metadata/upward.py", "from alpr.steps import lineage\n", "Layers"),
        # the library importing the orchestration layer
        ("alpr/model/orchestrated.py", "import components\n", "never imports the orchestration layer"),
        # a cycle between two modules of one package
        ("alpr/spec_cycle.py", "import alpr.settings\n", "No import cycles"),
    ],
)
def test_a_wrong_import_breaks_a_contract(tree_copy: Path, module: str, bad_import: str, contract: str):
    path = tree_copy / module
    path.write_text(f'"""Deliberately wrong import for the contract test."""\n\n{bad_import}')
    if module == "alpr/spec_cycle.py":  # and the other direction, to close the cycle
        settings = tree_copy / "alpr" / "settings.py"
        settings.write_text(settings.read_text() + "\nimport alpr.spec_cycle  # noqa: E402,F401\n")
    result = _lint(tree_copy)
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken) or contract in result.stdout, result.stdout


#: The only project modules that may be imported inside a function: they import mmdet/mmengine at module level to
#: register their classes, so importing them is importing a heavy third-party package.
HEAVY_PROJECT_MODULES = {"alpr.model.plugins", "alpr.tuning.hook"}


def _lazy_project_imports(path: Path) -> list[str]:
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.col_offset == 0:
            continue
        if isinstance(node, ast.ImportFrom):
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module else []
        else:
            names = [a.name for a in node.names]
        for name in names:
            if name.split(".")[0] == "alpr" and not any(name.startswith(h) for h in HEAVY_PROJECT_MODULES):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    return found


def test_the_library_imports_its_own_modules_at_module_level():
    """Function-level imports hide the dependency graph from readers and from import-linter's cycle check; the
    library keeps them for heavy third-party packages only (torch, mmdet, mmengine, kfp, kubernetes, …)."""
    lazy = [hit for path in sorted((ROOT / "alpr").rglob("*.py")) for hit in _lazy_project_imports(path)]
    assert lazy == []
