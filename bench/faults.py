"""Randomized fault run of the command path, outside pytest (tests/live/faultrun.py):

    REDIS_URL=redis://127.0.0.1:6379/5 python -m bench.faults      # FAULT_SEED=<n> to replay

50 reference agents behind a fault-injecting proxy (drops, duplicates, delays, commands held
past their expiry, cut connections) and a real uvicorn; 1,000 unlock commands (BENCH_FAULT_
COMMANDS); the expiry task runs every second. Prints the counts: commands, faults by kind,
double / late / lost. Database: BENCH_DATABASE_URL, default a throwaway SQLite file.
Loopback only; bounded (the run settles within two minutes of the last command)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    if "REDIS_URL" not in os.environ:
        print("REDIS_URL is not set")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    database = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{workdir / 'faults.sqlite3'}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database,
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    from tests.live.faultrun import fault_run, fault_seed, fault_server_env
    from tests.live.server import LiveServer

    call_command("migrate", verbosity=0)
    seed = fault_seed()
    print(f"seed {seed}", flush=True)
    server = LiveServer(workdir / "uvicorn.log", env={**env, **fault_server_env()})
    server.start()
    try:
        report = fault_run(
            server_ws_url=server.ws_url,
            seed=seed,
            commands=int(os.environ.get("BENCH_FAULT_COMMANDS", "1000")),
        )
    finally:
        server.stop()
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines()
                  if line.startswith("Model name")), platform.processor())  # fmt: skip
    print(f"machine: {os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
          f"database {database.split(':', 1)[0]}")  # fmt: skip
    print("\n".join(report.lines()))
    return 0 if report.double_opens == 0 and report.late_opens == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
