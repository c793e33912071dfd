"""`./scripts/run.sh` (scripts/run.py) as a developer runs it: everything starts without a
warning or a traceback, the favicon is served, and Ctrl-C stops the cabinets, the worker with
beat and the server before the embedded Redis they all use."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.live.server import ROOT, free_port


@pytest.mark.slow
def test_the_platform_starts_and_stops_on_ctrl_c_cleanly_and_in_order(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        PORT=str(port),
        EMBEDDED_REDIS_PORT=str(free_port()),
        VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
    )
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        run = subprocess.Popen(
            [sys.executable, "scripts/run.py"], cwd=ROOT, env=env, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def output() -> str:
        return log_path.read_text(errors="replace")

    try:
        deadline = time.monotonic() + 240
        while "* platform on" not in output():
            assert run.poll() is None, output()
            assert time.monotonic() < deadline, f"did not start:\n{output()}"
            time.sleep(0.3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/favicon.ico", timeout=10) as icon:
            assert icon.status == 200
            assert icon.headers["Content-Type"] == "image/x-icon"
        # the simulated cabinet has connected (its agent logs it) before we stop
        deadline = time.monotonic() + 120
        while "connected to ws://" not in output():
            assert time.monotonic() < deadline, f"the cabinet did not connect:\n{output()}"
            time.sleep(0.3)
        run.send_signal(signal.SIGINT)  # what Ctrl-C sends: the children are in their own sessions
        assert run.wait(timeout=90) == 0, output()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()

    text = output()
    assert "Traceback" not in text, text
    assert not re.search(r"deprecat", text, re.IGNORECASE), text
    assert "lifespan" not in text.lower(), text
    assert "pickup code" in text
    stopped = re.findall(r"^\* stopped (.+)$", text, re.MULTILINE)
    assert stopped[-3:] == ["worker and beat", "server", "the embedded Redis"], text
    assert stopped[0].startswith("cabinet SH-XH-0001"), text


def _refused(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
def test_ctrl_c_stops_everything_even_when_the_output_pipe_is_gone(tmp_path: Path) -> None:
    # `./scripts/run.sh | tee run.log`, then Ctrl-C: the terminal's SIGINT stops tee as well,
    # and the supervisor's first line after it met a broken pipe. The BrokenPipeError ended
    # its shutdown after the first child, and left the server, the worker and the embedded
    # Redis running on their ports (seen by hand in session 8).
    port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        PORT=str(port),
        EMBEDDED_REDIS_PORT=str(redis_port),
        VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
    )
    run = subprocess.Popen(
        [sys.executable, "scripts/run.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert run.stdout is not None
    try:
        seen: list[bytes] = []
        deadline = time.monotonic() + 240
        # The pipe is read until the platform says it is up (readline returns b"" if it died).
        while not any(b"* platform on" in line for line in seen):
            assert time.monotonic() < deadline and run.poll() is None, b"".join(seen)
            seen.append(run.stdout.readline())
        assert not _refused(port)
        run.stdout.close()  # the reader is gone, as tee is after Ctrl-C
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=90) == 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    # Every child was stopped: nothing listens on the server's or Redis's port any more.
    assert _refused(port) and _refused(redis_port)


@pytest.mark.parametrize(
    "path",
    ["Procfile", "docker-compose.reference.yml", "scripts/run.py", "tests/live/server.py"],
)
def test_every_place_that_starts_uvicorn_uses_no_deprecated_option(path: str) -> None:
    text = re.sub(r"[\s\"',]+", " ", (ROOT / path).read_text())
    assert "--ws websockets-sansio" in text
    assert "--lifespan off" in text


@pytest.mark.django_db
def test_the_favicon_is_served_and_pages_name_it(client) -> None:  # type: ignore[no-untyped-def]
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon["Content-Type"] == "image/x-icon"
    page = client.get("/enroll/login/")
    assert b'rel="icon"' in page.content
