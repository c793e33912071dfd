"""House style is checked, not hoped for: ruff and mypy (django-stubs) are clean."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [["ruff", "check", "."], ["mypy", "."]],
    ids=["ruff", "mypy"],
)
def test_the_code_passes(command: list[str]) -> None:
    result = subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def _module_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_tasks_import_services_inside_their_bodies_and_services_import_tasks_at_module_level() -> (
    None
):
    """One rule for tasks and services in every app (docs/parcel-flows.md): no import cycles."""
    task_modules = [p for p in ROOT.glob("*/**/tasks.py") if ".venv" not in p.parts]
    assert task_modules
    for path in task_modules:
        service_imports = {
            m for m in _module_level_imports(path) if ".services" in m or ".access" in m
        }
        assert not service_imports, f"{path.relative_to(ROOT)} imports {service_imports}"
    lazy_task_imports = []
    for path in ROOT.glob("*/**/*.py"):
        if ".venv" in path.parts or "tests" in path.parts or path.name == "tasks.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    if (
                        isinstance(inner, ast.ImportFrom)
                        and inner.module
                        and inner.module.endswith("tasks")
                    ):
                        lazy_task_imports.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    assert not lazy_task_imports, lazy_task_imports


# Installed by requirements-dev.txt only: `./scripts/run.sh` (requirements.txt) has none of them.
DEV_ONLY_MODULES = {"django_stubs_ext", "rest_framework_stubs", "pytest", "factory", "playwright"}


def _runtime_imports(tree: ast.Module) -> set[str]:
    """Top-level modules imported when the module runs (not under `if TYPE_CHECKING:`)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_platform_imports_no_development_only_package_at_run_time() -> None:
    offenders = []
    for path in ROOT.glob("*/**/*.py"):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in {"tests", ".venv", "bench", "node_modules"}:
            continue
        if relative == Path("scripts/screenshots.py"):  # a developer's tool (Playwright)
            continue
        used = _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))) & DEV_ONLY_MODULES
        if used:
            offenders.append(f"{relative}: {sorted(used)}")
    assert not offenders, offenders
