"""What the benchmarks that run the platform share: a database (BENCH_DATABASE_URL, else a
throwaway SQLite file), the environment of the processes they start, Django set up and
migrated in this process, and a line describing the machine. Not a benchmark itself
(scripts/bench.sh skips `bench/_*.py`)."""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench_environment(name: str, **extra: str) -> tuple[Path, str, dict[str, str]]:
    """(work directory, database URL, environment) for a run called `name`."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    database = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{workdir / f'{name}.sqlite3'}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database,
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "WARNING",
        # Persistent connections, as in production settings: without them every database
        # call of the consumer opens and closes a connection.
        "DATABASE_CONN_MAX_AGE": "60",
        **extra,
    }
    return workdir, database, env


def django_start(env: dict[str, str]) -> None:
    """Django in this process, on the run's database, migrated."""
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
