"""A real ASGI server (uvicorn) on the pytest-django test database, for end-to-end tests.

Use the `asgi_server` fixture (its base URL, e.g. "http://127.0.0.1:51234") or
`asgi_server_process` (a `LiveServer` that can also be killed and restarted on the same port).
Both imply a transactional test database: the server is another process and only sees
committed rows, so mark such tests `@pytest.mark.django_db(transaction=True)`.
Other processes that must reach the same database and Redis take `live_env()`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from cabinet_agent import protocol
from tests.live.worker import worker_database_url

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def live_env(**extra: str) -> dict[str, str]:
    """Environment for a child process on the test database and the tests' Redis."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=worker_database_url(),
        REDIS_URL=settings.REDIS_URL,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class LiveServer:
    """One uvicorn process serving config.asgi; stop, kill and start keep the same port."""

    def __init__(
        self,
        log_path: Path,
        *,
        port: int | None = None,
        env: dict[str, str],
        access_log: bool = False,
        log_level: str = "info",
    ) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.env = env
        self.access_log = access_log
        self.log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{protocol.WEBSOCKET_PATH}"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--loop",
            "asyncio",
            # The sans-I/O websockets implementation: `--ws websockets` is deprecated. No
            # lifespan: Django's ASGI handler does not implement it.
            "--ws",
            "websockets-sansio",
            "--lifespan",
            "off",
            "--ws-max-size",
            str(protocol.TRANSPORT_MAX_FRAME_BYTES),
            "--ws-per-message-deflate",
            "false",
            "--log-level",
            self.log_level,
            "--access-log" if self.access_log else "--no-access-log",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the ASGI server exited early:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"the ASGI server did not answer /healthz:\n{self.log_tail()}")

    def stop(self) -> None:
        """Graceful: uvicorn closes every websocket with 1012 and exits."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """A crash: sockets are cut without a close frame."""
        self._end(signal.SIGKILL)

    def restart(self, *, crash: bool = False) -> None:
        self.kill() if crash else self.stop()
        self.start()

    def _end(self, sig: signal.Signals) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture
def asgi_server_process(
    transactional_db: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    log_dir = tmp_path_factory.mktemp("asgi-server")
    server = LiveServer(log_dir / "uvicorn.log", env=live_env())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def asgi_server(asgi_server_process: LiveServer) -> str:
    """Base URL of a running ASGI server (HTTP and websockets) on the test database."""
    return asgi_server_process.url
