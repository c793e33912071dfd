"""How many ASGI processes the run script and the production process list start: the rule is
WEB_CONCURRENCY, else one per core, all on one port (docs/benchmarks.md, "Several processes")."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_script() -> ModuleType:
    sys.path.insert(0, str(ROOT / "scripts"))  # run.py imports its sibling embedded_redis
    try:
        spec = importlib.util.spec_from_file_location("run_script", ROOT / "scripts" / "run.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "scripts"))


def test_the_run_script_starts_web_concurrency_processes_else_one_per_core() -> None:
    run = _run_script()
    assert run.web_processes({"WEB_CONCURRENCY": "3"}) == 3
    assert run.web_processes({}) == max(1, os.cpu_count() or 1)
    with pytest.raises(SystemExit):
        run.web_processes({"WEB_CONCURRENCY": "0"})


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        ("Procfile", r"--workers \$\{WEB_CONCURRENCY:-\$\(nproc\)\}"),
        ("docker-compose.reference.yml", r"--workers \"\$\$\{WEB_CONCURRENCY:-\$\$\(nproc\)\}\""),
        ("scripts/run.py", r'"--workers",\s+str\(web_concurrency\)'),
    ],
)
def test_every_production_start_runs_several_asgi_processes_on_one_port(path, pattern) -> None:  # type: ignore[no-untyped-def]
    assert re.search(pattern, (ROOT / path).read_text())
