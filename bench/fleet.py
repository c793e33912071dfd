"""Fleet benchmark: N cabinets through several ASGI processes on one port (uvicorn
`--workers`), for the platform's CabinetConsumer NEXT TO a bare Channels echo consumer, in the
same run, on the same Redis: handshakes, memory per cabinet, heartbeat CPU and round-trip,
unlock push latency, a burst of unlocks, and a reconnect storm.

    make bench                       # every bench/*.py, embedded Redis (scripts/bench.sh)
    REDIS_URL=redis://… python bench/fleet.py

Environment: BENCH_FLEET_LEVELS (default "1000,5000,10000"), BENCH_FLEET_PROCESSES (2: ASGI
processes sharing the port), BENCH_FLEET_KINDS ("echo,platform"), BENCH_FLEET_PUSHES (200
unlocks at BENCH_FLEET_PUSH_RATE, 10 a second, and 200 more back to back), BENCH_FLEET_BURST (1000 unlocks at once), BENCH_FLEET_STORM (1: drop
every socket at once and reconnect as the agent does), BENCH_FLEET_STORM_COMMANDS (200),
BENCH_FLEET_CONNECT_RATE (500 handshakes/s for the first connect), BENCH_FLEET_WINDOW_S (30:
the heartbeat-only window in which CPU, Redis commands and database writes are measured),
BENCH_DATABASE_URL (default: a throwaway SQLite file), BENCH_FLEET_OUTPUT
(bench/results/fleet.md), BENCH_FLEET_BUDGET_S (1500).

Clients are lean protocol clients (the reference agent's frames and reconnect rules: spread,
full-jitter backoff, the server's Retry-After; no SQLite queue) in this process, so that the
measured server is not starved by 10,000 agents' bookkeeping. Like the agent they execute a
command once per id, whatever the number of deliveries. Unlocks are issued from a process of
their own (`Issuer`), as a web request or a Celery worker would issue them. The servers run
production's admission and garbage-collection settings (config.settings.base), and what was
found and decided by hand is kept in bench/fleet-notes.md, which follows the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._environment import bench_environment, cpu_model, django_start  # noqa: E402

HEARTBEAT_S = 30
LEVELS = [int(n) for n in os.environ.get("BENCH_FLEET_LEVELS", "1000,5000,10000").split(",")]
PROCESSES = int(os.environ.get("BENCH_FLEET_PROCESSES", "2"))
KINDS = os.environ.get("BENCH_FLEET_KINDS", "echo,platform").split(",")
PUSHES = int(os.environ.get("BENCH_FLEET_PUSHES", "200"))
# Unlocks a second for the paced pushes, issued open-loop (Poisson arrivals, whether or not the
# last one has arrived): 10/s is 864,000 a day, 86 a day for each of 10,000 cabinets.
PUSH_RATE = float(os.environ.get("BENCH_FLEET_PUSH_RATE", "10"))
BURST = int(os.environ.get("BENCH_FLEET_BURST", "1000"))
STORM = os.environ.get("BENCH_FLEET_STORM", "1") == "1"
STORM_COMMANDS = int(os.environ.get("BENCH_FLEET_STORM_COMMANDS", "200"))
WINDOW_S = float(os.environ.get("BENCH_FLEET_WINDOW_S", "30"))
BUDGET_S = float(os.environ.get("BENCH_FLEET_BUDGET_S", "1500"))
# Handshakes per second for the first connect: 500 is 10,000 cabinets with a 20 s spread.
CONNECT_RATE = int(os.environ.get("BENCH_FLEET_CONNECT_RATE", "500"))
OUTPUT = Path(os.environ.get("BENCH_FLEET_OUTPUT", ROOT / "bench" / "results" / "fleet.md"))
NOTES = ROOT / "bench" / "fleet-notes.md"
PREFIX = "BENCH-"
# The reference agent's reconnect rules (cabinet_agent/config.py, protocol §11). The spread is
# the agent's `backoff.spread` (10 s by default), and the open timeout is longer than the
# agent's 10 s hello timeout: here all the clients share one process on the same cores as the
# server, and a client starved of CPU is not a server that is slow.
SPREAD_S = float(os.environ.get("BENCH_FLEET_SPREAD_S", "10"))
BACKOFF_BASE_S, BACKOFF_CAP_S = 1.0, 60.0
OPEN_TIMEOUT_S = float(os.environ.get("BENCH_FLEET_OPEN_TIMEOUT_S", "60"))
STORM_SETTLE_S = 180.0  # "failed for good": not connected again after this long
SERVER_FAULTS = (
    "Traceback",
    "Unexpected ASGI message",
    "No connection available",
    "returned without completing handshake",
)


# --- the bare echo consumer (served by uvicorn: bench.fleet:echo_application_factory) ---------


def echo_application_factory() -> Any:
    """A minimal Channels app: join `cabinet.<id>` from a header, say hello, answer heartbeats
    with an ack, forward `link.send` frames. No database, no authentication."""
    import django

    django.setup()
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.urls import path

    class EchoConsumer(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            headers = dict(self.scope["headers"])
            self.group = f"cabinet.{headers[b'x-cabinet-id'].decode()}"
            await self.channel_layer.group_add(self.group, self.channel_name)
            await self.accept()
            await self.send(text_data=json.dumps({"type": "hello", "heartbeat_interval": 30}))

        async def disconnect(self, code: int) -> None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

        async def receive(self, text_data: str | None = None, bytes_data: Any = None) -> None:
            frame = json.loads(text_data or "{}")
            await self.send(text_data=json.dumps({"type": "ack", "ref": frame.get("id")}))

        async def link_send(self, message: dict[str, Any]) -> None:
            await self.send(text_data=json.dumps(message["frame"]))

    async def http(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    import gc

    app = ProtocolTypeRouter(
        {"http": http, "websocket": URLRouter([path("ws/cabinet/", EchoConsumer.as_asgi())])}
    )
    gc.collect()
    gc.freeze()  # same start-up treatment as config/asgi.py
    return app


# --- servers --------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`uvicorn --workers N`: N processes accepting on one listening socket."""

    def __init__(self, kind: str, env: dict[str, str], log_path: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.log_path = log_path
        target = (
            ["config.asgi:application"]
            if kind == "platform"
            else ["--factory", "bench.fleet:echo_application_factory"]
        )
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", *target, "--port", str(self.port),
                 "--workers", str(PROCESSES), "--timeout-worker-healthcheck", "30",
                 "--loop", "asyncio", "--ws", "websockets-sansio", "--lifespan", "off",
                 "--ws-max-size", "2097152", "--ws-per-message-deflate", "false", "--no-access-log", "--log-level", "warning"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
                if len(self.workers()) >= PROCESSES:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{kind} server did not start")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/cabinet/"

    def workers(self) -> list[int]:
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return []
        # uvicorn's multiprocessing start also leaves a resource tracker, which serves nothing;
        # with one worker uvicorn serves in its own process.
        workers = [int(c) for c in children if "resource_tracker" not in _cmdline(int(c))]
        return workers or [pid]

    def rss_kb(self) -> list[int]:
        return [_rss_kb(pid) for pid in self.workers()]

    def cpu_s(self) -> float:
        total = 0.0
        for pid in [self.process.pid, *self.workers()]:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def faults(self) -> int:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return sum(any(f in line for f in SERVER_FAULTS) for line in text.splitlines())

    def stop(self) -> None:
        workers = [pid for pid in self.workers() if pid != self.process.pid]
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for pid in workers:  # a supervisor killed while stopping leaves its workers
            with contextlib.suppress(OSError):
                os.kill(pid, 9)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --- lean clients ---------------------------------------------------------------------------


@dataclass
class Stats:
    """What every client adds to, in this process's one event loop."""

    arrivals: dict[str, asyncio.Future[float]] = field(default_factory=dict)
    handshake_ms: list[float] = field(default_factory=list)
    heartbeat_rtt_ms: list[float] = field(default_factory=list)
    ack_rtt_ms: list[float] = field(default_factory=list)
    record_heartbeats: bool = False
    throttled: int = 0  # HTTP 503 + Retry-After: refused and retried
    failed: int = 0  # any other failed attempt (then backoff)
    delivered: Counter[str] = field(default_factory=Counter)

    def arrival(self, command_id: str) -> asyncio.Future[float]:
        future = self.arrivals.get(command_id)
        if future is None:
            future = self.arrivals[command_id] = asyncio.get_running_loop().create_future()
        return future


@dataclass
class Client:
    serial: str
    cabinet_id: int
    credential: str
    labels: list[str]
    ws: Any = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    executed: Counter[str] = field(default_factory=Counter)
    sessions: int = 0
    heartbeats: int = 0


async def client_run(client: Client, kind: str, url: str, stats: Stats, delay: float) -> None:
    """Connect, hold the session, reconnect as the reference agent does (protocol §11)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus, WebSocketException

    from cabinet_agent import protocol

    headers = {"Authorization": protocol.authorization_header(client.credential),
               "Cabinet-Protocol": "1", "X-Cabinet-Id": str(client.cabinet_id)}  # fmt: skip
    failures = 0
    while True:
        await asyncio.sleep(delay)
        started = time.perf_counter()
        try:
            ws = await connect(
                url, additional_headers=headers, compression=None, ping_interval=None,
                open_timeout=OPEN_TIMEOUT_S, max_size=protocol.MAX_FRAME_BYTES,
            )  # fmt: skip
            try:
                first = json.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT_S))
            except BaseException:
                ws.transport.abort()
                raise
            if first.get("type") != "hello":
                raise WebSocketException(f"expected hello, got {first.get('type')}")
        except InvalidStatus as exc:
            hint = protocol.parse_retry_after(exc.response.headers.get("Retry-After"))
            if exc.response.status_code == protocol.ADMISSION_HTTP_STATUS and hint is not None:
                stats.throttled += 1
                delay = protocol.admission_delay(hint)
                continue
            stats.failed += 1
        except (OSError, TimeoutError, WebSocketException):
            stats.failed += 1
        else:
            stats.handshake_ms.append((time.perf_counter() - started) * 1000)
            failures = 0
            client.ws, client.sessions = ws, client.sessions + 1
            client.connected.set()
            await session(client, kind, ws, stats)
            client.connected.clear()
            delay = random.uniform(0, SPREAD_S)
            continue
        delay = protocol.backoff_delay(failures, base=BACKOFF_BASE_S, cap=BACKOFF_CAP_S)
        failures += 1


async def session(client: Client, kind: str, ws: Any, stats: Stats) -> None:
    from cabinet_agent import protocol

    telemetry = protocol.make_telemetry(
        temperature_c=21.0, power="mains", battery_pct=None, firmware_version="bench",
        config_version=1, doors={label: "closed" for label in client.labels},
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    acks: dict[str, float] = {}

    async def beat() -> None:
        with contextlib.suppress(Exception):  # the socket went away: the session ends
            await beats()

    async def beats() -> None:
        await asyncio.sleep(random.uniform(0, 1))
        while True:
            frame = protocol.make_heartbeat(sent_at=protocol.now_ms(), telemetry=telemetry)
            sent = time.perf_counter()
            await ws.send(protocol.encode_frame(frame))
            client.heartbeats += 1
            if stats.record_heartbeats:
                acks[frame["id"]] = sent
                # The pong comes back once the server has read the heartbeat before it (one
                # TCP stream, in order): the round trip through the server's event loop.
                pong = await ws.ping()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(pong, 30)
                    stats.heartbeat_rtt_ms.append((time.perf_counter() - sent) * 1000)
            await asyncio.sleep(HEARTBEAT_S + random.uniform(-1, 1))

    beater = loop.create_task(beat())
    try:
        async for raw in ws:
            now = time.perf_counter()
            frame = json.loads(raw)
            if frame["type"] == "command":
                command_id = frame["command"]["id"]
                stats.delivered[command_id] += 1
                future = stats.arrival(command_id)
                if not future.done():
                    future.set_result(now)
                if command_id in client.executed:
                    continue  # a resend or a re-delivery after reconnect: run once per id
                client.executed[command_id] += 1
                if kind == "platform":
                    receipt = protocol.make_command_receipt(
                        command_id=command_id, at=protocol.now_ms()
                    )
                    await ws.send(protocol.encode_frame(receipt))
                    result = protocol.make_command_result(
                        command_id=command_id, status="succeeded", door="open",
                        detail="unlocked", at=protocol.now_ms(),
                    )  # fmt: skip
                    await ws.send(protocol.encode_frame(result))
            elif frame["type"] == "ack":
                sent_at = acks.pop(frame.get("ref"), None)
                if sent_at is not None:
                    stats.ack_rtt_ms.append((now - sent_at) * 1000)
    except Exception:
        pass
    finally:
        beater.cancel()


def percentile(values: list[float], p: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    k = (len(ordered) - 1) * p / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


# --- measuring one (kind, level) --------------------------------------------------------------


class Issuer:
    """Unlocks as the platform issues them (the service: stored, then pushed on commit), or a
    bare group_send for the echo server, from a process of their own (as a web request or a
    Celery worker would issue them): not on the GIL of the clients' event loop, which would
    add the load generator's own delays to every push measured. Eight threads, for the
    burst's concurrent issuers. Start times are `time.perf_counter()` in that process: on
    Linux the system-wide monotonic clock, the one the clients' arrival times use."""

    THREADS = 8

    def __init__(self, kind: str, cabinet_ids: list[int], env: dict[str, str]) -> None:
        import itertools
        import multiprocessing
        import threading

        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_issuer_main, args=(child, kind, cabinet_ids, env), daemon=True
        )
        self.process.start()
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future[tuple[str, float]]] = {}
        # When the service call returned (committed, pushed to Redis), per command id.
        self.ended: dict[str, float] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                request_id, command_id, started, ended = self.conn.recv()
            except (EOFError, OSError):
                return
            self.ended[command_id] = ended
            future = self._pending.pop(request_id)
            self._loop.call_soon_threadsafe(future.set_result, (command_id, started))

    async def ready(self, warm: Client | None = None) -> None:
        """Started, and the push path warmed by one unlock to `warm` (the push loop, its Redis
        connections, the service's first queries): the first measured push must not pay
        for the issuer's own start-up."""
        await self.unlock_cabinet(None)
        if warm is not None:
            await self.unlock(warm)

    async def unlock(self, client: Client) -> tuple[str, float]:
        """(command id, when the issue started)."""
        return await self.unlock_cabinet(client.cabinet_id)

    async def unlock_cabinet(self, cabinet_id: int | None) -> tuple[str, float]:
        request_id = next(self._ids)
        future = self._pending[request_id] = self._loop.create_future()
        with self._lock:
            self.conn.send((request_id, cabinet_id))
        return await future

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()


def _issuer_main(conn: Any, kind: str, cabinet_ids: list[int], env: dict[str, str]) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    os.environ.update(env)
    import django

    django.setup()
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from cabinet_agent import protocol
    from cabinets.models import Compartment
    from cabinets.services.commands import compartment_unlock
    from core.actors import Actor

    compartments = (
        {
            row.cabinet_id: row
            for row in Compartment.objects.filter(
                cabinet_id__in=cabinet_ids, label="A01"
            ).select_related("cabinet")
        }
        if kind == "platform"
        else {}
    )
    lock = threading.Lock()
    actor = Actor.system("bench")
    gc.collect()
    gc.freeze()  # as the ASGI process does at start-up (config/asgi.py)

    def issue(request_id: int, cabinet_id: int | None) -> None:
        started = time.perf_counter()
        if cabinet_id is None:  # ready?
            command_id = ""
        elif kind == "platform":
            command = compartment_unlock(
                compartment=compartments[cabinet_id], actor=actor, reason="bench"
            )
            command_id = str(command.pk)
        else:
            command_id = protocol.new_id()
            frame = {"type": "command", "command": {"id": command_id}}
            async_to_sync(get_channel_layer().group_send)(
                f"cabinet.{cabinet_id}", {"type": "link.send", "frame": frame}
            )
        ended = time.perf_counter()
        with lock:
            conn.send((request_id, command_id, started, ended))

    with ThreadPoolExecutor(Issuer.THREADS) as pool:
        while True:
            try:
                request_id, cabinet_id = conn.recv()
            except (EOFError, OSError):
                return
            pool.submit(issue, request_id, cabinet_id)


def redis_commands() -> int:
    import redis

    return int(
        redis.Redis.from_url(os.environ["REDIS_URL"]).info("stats")["total_commands_processed"]
    )


def database_writes() -> int | None:
    """Rows inserted, updated and deleted in this database (PostgreSQL's statistics)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tup_inserted + tup_updated + tup_deleted FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        return int(cursor.fetchone()[0])


async def warmed_up(server: Server, clients: list[Client]) -> tuple[int, int]:
    """(cabinets connected, server RSS in KB) once a fiftieth of the level is connected: by
    then each process has its thread pool, database and Redis connections, and the code a
    handshake runs imported. Memory per cabinet is what each further cabinet adds."""
    wanted = max(len(clients) // 50, 1)
    while (connected := sum(c.connected.is_set() for c in clients)) < wanted:
        await asyncio.sleep(0.05)
    return connected, sum(server.rss_kb())


async def wait_connected(clients: list[Client], timeout: float, stats: Stats) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        connected = sum(c.connected.is_set() for c in clients)
        print(f"  {time.monotonic() - started:5.0f} s: {connected:,} connected, "
              f"{stats.throttled} refused+retried, {stats.failed} failed", flush=True)  # fmt: skip
        if connected == len(clients):
            break
        await asyncio.sleep(10 if connected < len(clients) * 0.99 else 1)
    return time.monotonic() - started


async def measure(
    kind: str, level: int, fleet: list[Client], env: dict[str, str], workdir: Path
) -> dict[str, Any]:
    from asgiref.sync import sync_to_async

    server = Server(kind, env, workdir / f"{kind}-{level}.log")
    clients = [Client(c.serial, c.cabinet_id, c.credential, c.labels) for c in fleet[:level]]
    stats = Stats()
    result: dict[str, Any] = {"kind": kind, "level": level, "processes": PROCESSES}
    tasks: list[asyncio.Task[None]] = []
    warm: asyncio.Task[tuple[int, int]] | None = None
    issuer: Issuer | None = None
    try:
        await asyncio.sleep(2)
        rss0 = sum(server.rss_kb())
        tasks = [
            asyncio.create_task(client_run(c, kind, server.url, stats, i / CONNECT_RATE))
            for i, c in enumerate(clients)
        ]
        warm = asyncio.create_task(warmed_up(server, clients))
        connect_s = await wait_connected(clients, level / CONNECT_RATE + 120, stats)
        connected = sum(c.connected.is_set() for c in clients)
        result.update(
            connected=connected, connect_s=connect_s, throttled=stats.throttled,
            failed=stats.failed, handshake_p50=percentile(stats.handshake_ms, 50),
            handshake_p99=percentile(stats.handshake_ms, 99),
        )  # fmt: skip
        await asyncio.sleep(5)  # first heartbeats and their telemetry writes settle
        # The load generator gets the servers' treatment (cabinets/gc_policy.py): its 10,000
        # clients' objects out of the collector, whose full passes over them would otherwise
        # show up as the servers' push and heartbeat latency.
        gc.collect()
        gc.freeze()
        rss = server.rss_kb()
        issuer = Issuer(kind, [c.cabinet_id for c in clients], env)
        await issuer.ready(next((c for c in clients if c.connected.is_set()), None))
        stats.record_heartbeats = True
        cpu0, t0 = server.cpu_s(), time.monotonic()
        redis0, db0 = redis_commands(), await sync_to_async(database_writes)()
        await asyncio.sleep(WINDOW_S)
        cpu1, t1 = server.cpu_s(), time.monotonic()
        redis1, db1 = redis_commands(), await sync_to_async(database_writes)()
        minutes = (t1 - t0) / 60
        warm_n, warm_rss = warm.result() if warm.done() else (0, rss0)
        result.update(
            rss_mb=sum(rss) / 1024, rss_per_process_mb=[round(r / 1024) for r in rss],
            kb_per_cabinet=(sum(rss) - warm_rss) / max(connected - warm_n, 1),
            kb_per_cabinet_from_start=(sum(rss) - rss0) / max(connected, 1),
            heartbeat_cpu_pct=100 * (cpu1 - cpu0) / (t1 - t0),
            redis_ops_per_cabinet_min=(redis1 - redis0) / minutes / max(connected, 1),
            db_writes_per_cabinet_min=(
                (db1 - db0) / minutes / max(connected, 1) if db0 is not None and db1 is not None else None
            ),
        )  # fmt: skip
        # Sequential unlocks to random connected cabinets, under the heartbeat load.
        live = [c for c in clients if c.connected.is_set()]
        if not live:
            result["server_faults"] = server.faults()
            return result
        result.update(await pushes_paced(issuer, live, stats))
        result.update(await pushes_back_to_back(issuer, live, stats))
        stats.record_heartbeats = False
        result.update(
            heartbeat_rtt_p50=percentile(stats.heartbeat_rtt_ms, 50),
            heartbeat_rtt_p99=percentile(stats.heartbeat_rtt_ms, 99),
            heartbeat_ack_p99=percentile(stats.ack_rtt_ms, 99),
        )  # fmt: skip
        result.update(await burst(issuer, live, stats))
        if STORM:
            result.update(await storm(kind, issuer, clients, stats))
        result["server_faults"] = server.faults()
    finally:
        if warm is not None:
            warm.cancel()
        for client in clients:
            if client.ws is not None:
                client.ws.transport.abort()  # no close handshake: 10,000 closes take long
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if issuer is not None:
            issuer.stop()
        server.stop()
    return result


async def arrived_ms(started: dict[str, float], stats: Stats, *, within_s: float) -> list[float]:
    """Issue-to-arrival latencies of the commands that arrived within `within_s` (command id
    -> when its issue started); the rest count as lost."""
    arrivals = [asyncio.shield(stats.arrival(cid)) for cid in started]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*arrivals), within_s)
    return [
        (stats.arrival(cid).result() - t) * 1000
        for cid, t in started.items()
        if stats.arrival(cid).done()
    ]


def connected_one(live: list[Client]) -> Client:
    """A random cabinet of `live` that is connected now (to one reconnecting, a bare push
    would be lost)."""
    client = random.choice(live)
    while not client.connected.is_set():
        client = random.choice(live)
    return client


def push_figures(
    prefix: str, started: dict[str, float], push_ms: list[float], issuer: Issuer
) -> dict[str, Any]:
    service_ms = [(issuer.ended[cid] - t) * 1000 for cid, t in started.items()]
    return {
        f"{prefix}_p50": percentile(push_ms, 50), f"{prefix}_p99": percentile(push_ms, 99),
        f"{prefix}_lost": len(started) - len(push_ms),
        f"{prefix}_service_p50": percentile(service_ms, 50),
        f"{prefix}_service_p99": percentile(service_ms, 99),
    }  # fmt: skip


async def pushes_back_to_back(issuer: Issuer, live: list[Client], stats: Stats) -> dict[str, Any]:
    """PUSHES unlocks, the next issued once the last one arrived (each meets the last one's
    receipt and result still being stored)."""
    started: dict[str, float] = {}
    push_ms: list[float] = []
    for _ in range(PUSHES):
        command_id, t = await issuer.unlock(connected_one(live))
        started[command_id] = t
        push_ms += await arrived_ms({command_id: t}, stats, within_s=5)
    return push_figures("b2b", started, push_ms, issuer)


async def pushes_paced(issuer: Issuer, live: list[Client], stats: Stats) -> dict[str, Any]:
    """PUSHES unlocks to random connected cabinets at PUSH_RATE a second, open-loop: each is
    issued at its own time (exponential gaps), whether or not the ones before have arrived,
    as a fleet's unlocks come."""
    started: dict[str, float] = {}

    async def one(client: Client) -> None:
        command_id, t = await issuer.unlock(client)
        started[command_id] = t

    issuing = []
    for _ in range(PUSHES):
        issuing.append(asyncio.create_task(one(connected_one(live))))
        await asyncio.sleep(random.expovariate(PUSH_RATE))
    await asyncio.gather(*issuing)
    push_ms = await arrived_ms(started, stats, within_s=10)
    return push_figures("push", started, push_ms, issuer)


async def burst(issuer: Issuer, live: list[Client], stats: Stats) -> dict[str, Any]:
    """BURST unlocks issued at once (8 issuers), to distinct cabinets where there are enough."""
    targets = random.sample(live, min(BURST, len(live))) if live else []
    targets += random.choices(live, k=BURST - len(targets)) if live else []
    started: dict[str, float] = {}
    queue: asyncio.Queue[Client] = asyncio.Queue()
    for client in targets:
        queue.put_nowait(client)

    async def issue() -> None:
        while not queue.empty():
            client = queue.get_nowait()
            command_id, t = await issuer.unlock(client)
            started[command_id] = t

    t0 = time.perf_counter()
    await asyncio.gather(*(issue() for _ in range(8)))
    issue_s = time.perf_counter() - t0
    latencies = await arrived_ms(started, stats, within_s=60)
    return {
        "burst": len(started), "burst_issue_s": issue_s,
        "burst_lost": len(started) - len(latencies),
        "burst_p50": percentile(latencies, 50), "burst_p99": percentile(latencies, 99),
    }  # fmt: skip


async def storm(kind: str, issuer: Issuer, clients: list[Client], stats: Stats) -> dict[str, Any]:
    """Every socket dropped at once (no close frame: a network cut, a crashed proxy); the
    clients reconnect as the agent does. Commands issued just before, and during, the storm
    must each reach their cabinet exactly once."""
    live = [c for c in clients if c.connected.is_set()]
    before = {id(c): c.sessions for c in live}
    throttled0, failed0, handshakes0 = stats.throttled, stats.failed, len(stats.handshake_ms)
    targets = random.sample(live, min(STORM_COMMANDS, len(live)))
    issued: dict[str, Client] = {}
    half = len(targets) // 2
    for client in targets[:half]:
        issued[(await issuer.unlock(client))[0]] = client
    dropped = time.monotonic()
    for client in live:
        client.ws.transport.abort()
    await asyncio.sleep(0.5)
    for client in targets[half:]:  # while the fleet reconnects
        issued[(await issuer.unlock(client))[0]] = client
        await asyncio.sleep(SPREAD_S / max(len(targets) - half, 1))
    # Settled: every client had a new session and is connected.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            _until(lambda: all(c.connected.is_set() and c.sessions > before[id(c)] for c in live)),
            STORM_SETTLE_S,
        )
    settle_s = time.monotonic() - dropped
    back = sum(c.connected.is_set() and c.sessions > before[id(c)] for c in live)
    arrivals = [asyncio.shield(stats.arrival(cid)) for cid in issued]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*arrivals), 60)
    lost = sum(not stats.arrival(cid).done() for cid in issued)
    twice = sum(c.executed[cid] > 1 for cid, c in issued.items())
    storm_handshakes = stats.handshake_ms[handshakes0:]
    return {
        "storm_settle_s": settle_s, "storm_back": back, "storm_of": len(live),
        "storm_failed_for_good": len(live) - back,
        "storm_throttled": stats.throttled - throttled0, "storm_failed": stats.failed - failed0,
        "storm_handshake_p50": percentile(storm_handshakes, 50),
        "storm_handshake_p99": percentile(storm_handshakes, 99),
        "storm_commands": len(issued), "storm_lost": lost, "storm_executed_twice": twice,
        "storm_delivered_again": sum(stats.delivered[cid] - 1 for cid in issued if stats.delivered[cid] > 1),
    }  # fmt: skip


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.2)


def setup_django(env: dict[str, str]) -> list[Client]:
    django_start(env)
    from cabinets.models import Compartment
    from cabinets.services.simulation import simulated_fleet_provision
    from core.actors import Actor

    issued = simulated_fleet_provision(
        prefix=PREFIX, count=max(LEVELS), create=True, actor=Actor.system("bench")
    )
    from django.db import connection

    if connection.vendor == "postgresql":
        # Fresh statistics for the planner, as autovacuum's analyze would give a production
        # database (this machine's PostgreSQL runs without autovacuum: with no statistics at
        # all, a run planned its queries for empty tables).
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    labels: dict[int, list[str]] = {}
    for cabinet_id, label in Compartment.objects.filter(
        cabinet__serial__startswith=PREFIX
    ).values_list("cabinet_id", "label"):
        labels.setdefault(cabinet_id, []).append(label)
    return [Client(i.serial, i.cabinet_id, i.credential, labels[i.cabinet_id]) for i in issued]


def machine() -> str:
    cpu = cpu_model()
    packages = ", ".join(
        f"{name} {version(name)}"
        for name in ("Django", "channels", "channels-redis", "redis", "uvicorn", "websockets")
    )
    import redis

    info = redis.Redis.from_url(os.environ["REDIS_URL"]).info("server")
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {mem} MB RAM, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; {packages}; Redis {info['redis_version']}; "
        f"all on loopback, client, server and Redis on the same machine"
    )


def fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def report(results: list[dict[str, Any]], *, database: str, took: float, load: str) -> str:
    lines = [
        "## Fleet: platform consumer next to a bare Channels echo consumer",
        "",
        f"Machine: {machine()}. Database: {database}. Run took {took:.0f} s "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). Load average during the "
        f"run: {load}.",
        "",
        f"Each row is one fresh `uvicorn --workers {PROCESSES}` ({PROCESSES} ASGI processes on "
        "one port, `--loop asyncio --ws websockets-sansio --ws-per-message-deflate false`, FleetRedisChannelLayer); N lean clients "
        f"connect at about {CONNECT_RATE}/s and reconnect as the reference agent does (spread "
        f"{SPREAD_S:.0f} s, full-jitter backoff, the server's Retry-After; handshake timeout "
        f"{OPEN_TIMEOUT_S:.0f} s); heartbeats every "
        f"{HEARTBEAT_S} s. CPU (sum of the processes), Redis commands and database rows "
        f"written are measured over a {WINDOW_S:.0f} s window of heartbeats only. Handshake = "
        "TCP connect → hello received. Heartbeat RTT = heartbeat sent → pong of a ping sent "
        "right after it (the server's event loop read the heartbeat). Push = issue → command "
        "frame received (platform: the `compartment_unlock` service, stored then pushed on "
        "commit; echo: a bare `group_send`; issued from a process of their own, not the "
        f"clients'), {PUSHES} unlocks at {PUSH_RATE:g} a second, open-loop (Poisson "
        f"arrivals), and {PUSHES} back to back (the next once the last arrived); burst = {BURST} "
        "unlocks issued by 8 concurrent issuers. Storm = every socket cut at once, "
        f"{STORM_COMMANDS} unlocks issued just before and during the reconnect. KB/cabinet: "
        "server RSS (sum of the processes) added per cabinet once a fiftieth of the level was "
        "connected (each process warm: thread pool, database and Redis connections, the "
        "handshake's code imported), and from the idle process.",
        "",
        "| server | cabinets | connected | connect s | handshake p50 / p99 ms | refused+retried "
        "| RSS MB (per process) | KB/cabinet (after warm-up / from start) | heartbeat CPU % "
        "| heartbeat RTT p50 / p99 ms "
        f"| push at {PUSH_RATE:g}/s p50 / p99 ms | lost | push back to back p50 / p99 ms "
        "| burst lost | burst p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        per = "+".join(str(x) for x in r.get("rss_per_process_mb", []))
        lines.append(
            f"| {r['kind']} | {r['level']:,} | {r.get('connected', 0):,} | "
            f"{fmt(r.get('connect_s'))} | {fmt(r.get('handshake_p50'))} / "
            f"{fmt(r.get('handshake_p99'))} | {r.get('throttled', '-')} | "
            f"{fmt(r.get('rss_mb'), '.0f')} ({per}) | {fmt(r.get('kb_per_cabinet'))} / "
            f"{fmt(r.get('kb_per_cabinet_from_start'))} | "
            f"{fmt(r.get('heartbeat_cpu_pct'))} | {fmt(r.get('heartbeat_rtt_p50'))} / "
            f"{fmt(r.get('heartbeat_rtt_p99'))} | {fmt(r.get('push_p50'))} / "
            f"{fmt(r.get('push_p99'))} | {r.get('push_lost', '-')} | "
            f"{fmt(r.get('b2b_p50'))} / {fmt(r.get('b2b_p99'))} | "
            f"{r.get('burst_lost', '-')} of {r.get('burst', '-')} | {fmt(r.get('burst_p50'))} / "
            f"{fmt(r.get('burst_p99'))} |"
        )
    if STORM:
        lines += [
            "",
            "Reconnect storm (all sockets cut at once):",
            "",
            "| server | cabinets | all back after s | failed for good | refused+retried "
            "| other failed attempts | handshake p50 / p99 ms | commands | lost | executed twice "
            "| delivered again (deduplicated) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in results:
            if "storm_settle_s" not in r:
                continue
            commands = (
                r["storm_commands"] if r["kind"] == "platform" else f"{r['storm_commands']} (bare)"
            )
            lines.append(
                f"| {r['kind']} | {r['storm_of']:,} | {fmt(r['storm_settle_s'])} | "
                f"{r['storm_failed_for_good']} | {r['storm_throttled']} | {r['storm_failed']} | "
                f"{fmt(r['storm_handshake_p50'])} / {fmt(r['storm_handshake_p99'])} | "
                f"{commands} | {r['storm_lost']} | {r['storm_executed_twice']} | "
                f"{r['storm_delivered_again']} |"
            )
    lines += [
        "",
        "Per cabinet, in the heartbeat window: Redis commands per minute, database rows "
        "written per minute, server log lines with a traceback, `Unexpected ASGI message` or "
        "`No connection available`:",
        "",
    ]
    for r in results:
        lines.append(
            f"- {r['kind']} {r['level']:,}: Redis {fmt(r.get('redis_ops_per_cabinet_min'), '.2f')}"
            f"/min, DB {fmt(r.get('db_writes_per_cabinet_min'), '.3f')}/min, CPU "
            f"{fmt(1000 * r['heartbeat_cpu_pct'] / 100 / max(r.get('connected', 1), 1), '.3f')} "
            f"ms/s, server faults {r.get('server_faults', '-')}; of the push, the issuing "
            f"call (stored, committed, handed to Redis) p50 {fmt(r.get('push_service_p50'))} / "
            f"p99 {fmt(r.get('push_service_p99'))} ms at {PUSH_RATE:g}/s, "
            f"{fmt(r.get('b2b_service_p50'))} / {fmt(r.get('b2b_service_p99'))} ms back to back"
        )
    by = {(r["kind"], r["level"]): r for r in results}
    ratios = []
    for level in LEVELS:
        p, e = by.get(("platform", level)), by.get(("echo", level))
        if not p or not e or not p.get("handshake_p50") or not e.get("handshake_p50"):
            continue
        ratios.append(
            f"- {level:,}: handshake p50 x{p['handshake_p50'] / e['handshake_p50']:.2f}, "
            f"p99 x{(p['handshake_p99'] or 0) / max(e['handshake_p99'] or 0.1, 0.1):.2f}; "
            f"KB/cabinet x{p['kb_per_cabinet'] / max(e['kb_per_cabinet'], 0.1):.2f}; "
            f"heartbeat CPU x{p['heartbeat_cpu_pct'] / max(e['heartbeat_cpu_pct'], 0.1):.2f}"
            + (
                f"; storm settle x{p['storm_settle_s'] / max(e['storm_settle_s'], 0.1):.2f}"
                if "storm_settle_s" in p and "storm_settle_s" in e
                else ""
            )
        )
    if ratios:
        lines += ["", "Platform ÷ echo, same run:", "", *ratios]
    return "\n".join(lines) + "\n"


def main() -> int:
    if "REDIS_URL" not in os.environ:
        print("REDIS_URL is not set (scripts/bench.sh starts an embedded Redis)")
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 65536)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    if wanted < max(LEVELS) * 2 + 100:
        print(f"note: open files limited to {wanted}; large levels may fail")
    workdir, database, env = bench_environment(
        "fleet",
        CABINET_HEARTBEAT_INTERVAL_S=str(HEARTBEAT_S),
        # Storm commands must outlive the storm: this measures delivery, not expiry.
        CABINET_UNLOCK_TTL_S="600",
    )
    started = time.monotonic()
    fleet = setup_django(env)
    # config.settings.test switches admission by loop lateness and the garbage collector's
    # periodic freeze off; the servers measured here run production's values (read once
    # Django is set up: config.settings.base reads the environment when imported).
    from config.settings import base as production

    env.update(
        {
            name: os.environ.get(name, str(getattr(production, name)))
            for name in ("CABINET_ADMISSION_MAX_LAG_S", "CABINET_GC_FREEZE_S", "CABINET_GC_THAW_S")
        }
    )
    print(f"provisioned {len(fleet)} cabinets in {time.monotonic() - started:.0f} s", flush=True)
    print(f"server logs in {workdir}", flush=True)
    results: list[dict[str, Any]] = []
    loads: list[float] = []

    async def run_all() -> None:
        for level in LEVELS:
            for kind in KINDS:
                if time.monotonic() - started > BUDGET_S:
                    print(f"time budget spent: skipping {kind} at {level}", flush=True)
                    continue
                loads.append(os.getloadavg()[0])
                result = await measure(kind, level, fleet, env, workdir)
                loads.append(os.getloadavg()[0])
                results.append(result)
                print(json.dumps(result, default=str), flush=True)

    asyncio.run(run_all())
    engine = database.split(":", 1)[0]
    load = f"{min(loads):.1f}-{max(loads):.1f} (1-minute, 2 cores)" if loads else "-"
    section = report(results, database=engine, took=time.monotonic() - started, load=load)
    print(section)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Fleet benchmark\n\nWritten by `bench/fleet.py` (`make bench`); the newest run "
        "replaces the section below. See ../shared/CHANNELS-NOTES.md for the earlier bare "
        "measurements and docs/cabinet-protocol.md for the protocol.\n\n"
    )
    # What was found and decided, written by hand (bench/fleet-notes.md), follows the table.
    notes = NOTES.read_text() if NOTES.exists() else ""
    OUTPUT.write_text(header + section + ("\n" + notes if notes else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
