"""A real Celery worker process for end-to-end tests (a pytest plugin: tests/conftest.py).

`celery_worker_process` (session) starts `celery -A config worker --pool solo` against the
pytest-django test database and the suite's Redis, on a queue of its own so that workers of
other runs sharing that Redis never take its tasks. `celery_worker` (function) points the
in-process app at that queue and turns eager mode off for one test, then restores both.

Tests that use it need `@pytest.mark.django_db(transaction=True)`: the worker is another
process and sees only committed rows, and tasks are sent on commit.
"""

from __future__ import annotations

import contextlib
import os
import signal
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

    def kill(self) -> None:
        """SIGKILL to the worker and its pool children (its own process group): no warm
        shutdown, nothing acknowledged or requeued on the way out."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def worker_start(
    *,
    queue: str,
    log_path: Path,
    database_url: str,
    env: dict[str, str] | None = None,
    pool: str = "solo",
) -> WorkerProcess:
    """`celery worker` on `queue` (`pool` "solo", or "prefork" with one child as in
    production), through tests.live.celery_hooks (test-only hooks that stay off unless `env`
    asks for them); waits until it is ready."""
    from django.conf import settings

    child_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "DATABASE_URL": database_url,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    command = [
        sys.executable, "-m", "tests.live.celery_hooks", "-A", "config", "worker",
        "--pool", pool, "--concurrency", "1", "-l", "info", "-Q", queue, "-n", f"{queue}-{uuid.uuid4().hex[:6]}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(process=process, queue=queue, log_path=log_path)
    try:
        _wait_until_ready(worker)
    except BaseException:
        worker.stop()
        raise
    return worker


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
    worker = worker_start(queue=queue, log_path=log_path, database_url=database_url)
    try:
        yield worker
    finally:
        worker.stop()


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
