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
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._environment import bench_environment, cpu_model, django_start  # noqa: E402


def main() -> int:
    if "REDIS_URL" not in os.environ:
        print("REDIS_URL is not set")
        return 2
    workdir, database, env = bench_environment("faults", PYTHONUNBUFFERED="1")
    django_start(env)
    from tests.live.faultrun import fault_run, fault_seed, fault_server_env
    from tests.live.server import LiveServer

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
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, "
          f"database {database.split(':', 1)[0]}")  # fmt: skip
    print("\n".join(report.lines()))
    return 0 if report.double_opens == report.late_opens == report.lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
