"""A real Celery worker process for end-to-end tests (a pytest plugin: tests/conftest.py).

`celery_worker_process` (session) starts `celery -A config worker --pool solo` against the
pytest-django test database and the suite's Redis, on a queue of its own so that workers of
other runs sharing that Redis never take its tasks. `celery_worker` (function) points the
in-process app at that queue and turns eager mode off for one test, then restores both.

Tests that use it need `@pytest.mark.django_db(transaction=True)`: the worker is another
process and sees only committed rows, and tasks are sent on commit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

ROOT = Path(__file__).resolve().parents[2]
READY_WITHIN_S = 120


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    queue: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def services_required() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("REQUIRE_SERVICES") == "1"


def worker_database_url() -> str:
    """DATABASE_URL of the database pytest-django created for this run."""
    from django.db import connection

    config = connection.settings_dict
    name = str(config["NAME"])
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(name).resolve()}"
    if connection.vendor != "postgresql":
        raise RuntimeError(f"no worker database URL for {connection.vendor}")
    user = quote(str(config.get("USER") or ""), safe="")
    password = quote(str(config.get("PASSWORD") or ""), safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = config.get("HOST") or "127.0.0.1"
    port = f":{config['PORT']}" if config.get("PORT") else ""
    return f"postgres://{credentials}{host}{port}/{quote(name, safe='')}"


def _redis_reachable(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.ping()
        client.close()
    except redis.RedisError:
        return False
    return True


@pytest.fixture(scope="session")
def celery_worker_process(
    django_db_setup: None,
    django_db_blocker: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    from django.conf import settings

    if not _redis_reachable(settings.REDIS_URL):
        message = f"Redis is not reachable at {settings.REDIS_URL} (./scripts/test.sh starts one)"
        if services_required():
            pytest.fail(message)
        pytest.skip(message)

    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        database_url = worker_database_url()
    queue = f"test-worker-{uuid.uuid4().hex[:12]}"
    log_path = tmp_path_factory.mktemp("celery") / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "DATABASE_URL": database_url,
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker",
        "--pool", "solo", "-l", "info", "-Q", queue, "-n", f"{queue}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    worker = WorkerProcess(process=process, queue=queue, log_path=log_path)
    try:
        _wait_until_ready(worker)
        yield worker
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_until_ready(worker: WorkerProcess) -> None:
    deadline = time.monotonic() + READY_WITHIN_S
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            pytest.fail(
                f"the Celery worker exited with {worker.process.returncode}:\n{worker.log()}"
            )
        if " ready." in worker.log():
            return
        time.sleep(0.2)
    pytest.fail(f"the Celery worker was not ready within {READY_WITHIN_S} s:\n{worker.log()}")


@pytest.fixture
def celery_worker(celery_worker_process: WorkerProcess) -> Iterator[WorkerProcess]:
    """The worker, with this process's app sending to it instead of running tasks eagerly."""
    from config.celery_app import app

    eager, queue = app.conf.task_always_eager, app.conf.task_default_queue
    app.conf.task_always_eager = False
    app.conf.task_default_queue = celery_worker_process.queue
    try:
        yield celery_worker_process
    finally:
        app.conf.task_always_eager = eager
        app.conf.task_default_queue = queue


def wait_for(condition: object, *, what: str, worker: WorkerProcess, within_s: float = 120) -> None:
    """Poll `condition()` until true; fail with the worker's log if it never becomes true."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        if worker.process.poll() is not None:
            pytest.fail(f"the Celery worker died while waiting for {what}:\n{worker.log()}")
        time.sleep(0.2)
    pytest.fail(f"gave up waiting for {what}:\n{worker.log()[-4000:]}")
