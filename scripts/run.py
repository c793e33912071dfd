"""Process supervisor for the embedded default. See README: `./scripts/run.sh`."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import embedded_redis

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args()

    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    env["PYTHONUNBUFFERED"] = "1"
    # The face pickup demo's clips (../shared/faces/video/grid) are frontal and still: the
    # local platform draws blink challenges unless told otherwise (production: a turn always).
    env.setdefault("FACE_CHALLENGE_ACTIONS", "blink")
    redis = None
    if not env.get("REDIS_URL"):
        redis = embedded_redis.start(preferred_port=int(env.get("EMBEDDED_REDIS_PORT", "6380")))
        env["REDIS_URL"] = redis.url
        say(f"* embedded Redis on {redis.url}")

    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    var_dir = Path(env.get("VAR_DIR") or ROOT / "var")

    def start(name: str, cmd: list[str], **kwargs: object) -> None:
        # Each child in its own session: Ctrl-C in the terminal reaches only this supervisor,
        # which then stops them in order (cabinets, worker and beat, server, then Redis), so
        # that nothing sees Redis vanish under it.
        process = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, **kwargs)  # type: ignore[call-overload]
        children.append((name, process))

    def stop_all(*_: object) -> None:
        for name, proc in reversed(children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                say(f"* {name} did not stop in time; killing it")
                proc.kill()
                proc.wait()
            say(f"* stopped {name}")
        if redis is not None:
            redis.stop()
            say("* stopped the embedded Redis")

    try:
        manage = [PY, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--no-input", "-v", "0"], env=env, check=True, cwd=ROOT)
        subprocess.run([*manage, "seed_demo"], env=env, check=True, cwd=ROOT)

        # The websocket and HTTP server. asyncio loop: uvloop showed long GC-driven
        # pauses with thousands of sockets (../shared/CHANNELS-NOTES.md). --ws-max-size is
        # protocol.TRANSPORT_MAX_FRAME_BYTES (2 MiB): larger frames close with 1009, smaller
        # ones over 1 MiB get frame_too_large (docs/cabinet-protocol.md §2). One process per
        # core (WEB_CONCURRENCY), sharing one listening socket: the fleet is shared through
        # the channel layer (docs/benchmarks.md, "Several processes").
        web_concurrency = web_processes(env)
        server_cmd = [
            PY,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            args.host,
            "--port",
            str(args.port),
            "--loop",
            "asyncio",
            # The sans-I/O websockets implementation: `--ws websockets` is deprecated. No
            # lifespan: Django's ASGI handler does not implement it.
            "--ws",
            "websockets-sansio",
            "--lifespan",
            "off",
            "--ws-max-size",
            "2097152",
            # Cabinet frames are small JSON; a socket whose client negotiates compression
            # costs about twice the memory (../shared/CHANNELS-NOTES.md). Refused here.
            "--ws-per-message-deflate",
            "false",
            "--workers",
            str(web_concurrency),
            # The supervisor kills a worker that does not answer its ping in time (5 s by
            # default); a worker busy with a reconnect storm on a loaded machine can take
            # longer, and killing it drops all its sockets: a storm of its own making.
            "--timeout-worker-healthcheck",
            "30",
        ]
        worker_cmd = [
            PY,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--beat",
            "--loglevel",
            "INFO",
            "--concurrency",
            "2",
            "--schedule",
            str(var_dir / "celerybeat-schedule"),
        ]
        start("server", server_cmd, env=env)
        start("worker and beat", worker_cmd, env=env)
        wait_until_serving(f"http://{local_host(args.host)}:{args.port}/healthz", children[0][1])
        # The demo cabinets connect like real ones: the reference agent with a simulated lock,
        # its credential and signing key issued by seed_demo (var/agents/<serial>.toml).
        ws_url = f"ws://{local_host(args.host)}:{args.port}/ws/cabinet/"
        for config in sorted((var_dir / "agents").glob("*.toml")):
            agent_cmd = [PY, "-m", "cabinet_agent", "--config", str(config), "--server-url", ws_url]
            start(f"cabinet {config.stem}", agent_cmd)
            say(f"* simulated cabinet {config.stem} connecting ({config.name})")
        say(f"* {web_concurrency} ASGI server process(es) on port {args.port} (WEB_CONCURRENCY)")
        say(f"* platform on http://{args.host}:{args.port}/admin/  (Ctrl-C stops everything)")

        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while True:
            for name, proc in children:
                if proc.poll() is not None:
                    say(f"* {name} exited with code {proc.returncode}; stopping the rest")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("\n* stopping")
        return 0
    finally:
        stop_all()


def say(line: str) -> None:
    """The supervisor's own lines. Its stdout may be a pipe whose reader is gone
    (`./scripts/run.sh | tee run.log`, where Ctrl-C stops tee too): a write that fails must
    not end the shutdown half-way and leave the server, the worker and Redis running."""
    try:
        print(line, flush=True)
    except OSError:
        # From now on the supervisor's lines go nowhere, and do not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def web_processes(env: dict[str, str]) -> int:
    """WEB_CONCURRENCY, else one ASGI process per core: a process is one event loop on one
    core, and ../shared/CHANNELS-NOTES.md measured shorter GC stalls with two processes."""
    raw = env.get("WEB_CONCURRENCY", "").strip()
    if raw:
        count = int(raw)
        if count < 1:
            raise SystemExit("WEB_CONCURRENCY must be at least 1")
        return count
    return max(1, os.cpu_count() or 1)


def local_host(host: str) -> str:
    # Agents refuse ws:// to anything but loopback (the credential travels in a header).
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def wait_until_serving(url: str, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
