"""Fleet benchmark: how many cabinets one ASGI process holds, memory per socket, heartbeat
CPU and unlock push latency, for the platform's CabinetConsumer NEXT TO a bare Channels echo
consumer, in the same run, on the same Redis.

    make bench                       # every bench/*.py, embedded Redis (scripts/bench.sh)
    REDIS_URL=redis://… python bench/fleet.py

Environment: BENCH_FLEET_LEVELS (default "1000,5000,10000"), BENCH_FLEET_PUSHES (200),
BENCH_FLEET_CONNECT_RATE (500 handshakes/s),
BENCH_FLEET_WINDOW_S (30: the heartbeat-only window in which server CPU is measured),
BENCH_DATABASE_URL (default: a throwaway SQLite file), BENCH_FLEET_OUTPUT (bench/results/fleet.md).
Loopback only, bounded in time (BENCH_FLEET_BUDGET_S, 540), stops by itself.

Clients are lean protocol clients (the reference agent's frames, no SQLite queue) in this
process, so that the measured server is not starved by 10,000 agents' bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._environment import bench_environment, cpu_model, django_start  # noqa: E402

HEARTBEAT_S = 30
LEVELS = [int(n) for n in os.environ.get("BENCH_FLEET_LEVELS", "1000,5000,10000").split(",")]
PUSHES = int(os.environ.get("BENCH_FLEET_PUSHES", "200"))
WINDOW_S = float(os.environ.get("BENCH_FLEET_WINDOW_S", "30"))
BUDGET_S = float(os.environ.get("BENCH_FLEET_BUDGET_S", "540"))
# Handshakes per second: 500 is 10,000 cabinets reconnecting with a 20 s spread.
CONNECT_RATE = int(os.environ.get("BENCH_FLEET_CONNECT_RATE", "500"))
OUTPUT = Path(os.environ.get("BENCH_FLEET_OUTPUT", ROOT / "bench" / "results" / "fleet.md"))
PREFIX = "BENCH-"


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


# --- orchestration ------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, kind: str, env: dict[str, str]) -> None:
        self.kind = kind
        self.port = free_port()
        target = (
            ["config.asgi:application"]
            if kind == "platform"
            else ["--factory", "bench.fleet:echo_application_factory"]
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", *target, "--port", str(self.port),
             "--loop", "asyncio", "--ws", "websockets", "--no-access-log",
             "--log-level", "warning"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{kind} server did not start")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/cabinet/"

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Client:
    serial: str
    cabinet_id: int
    credential: str
    labels: list[str]
    ws: Any = None
    commands: asyncio.Queue[tuple[float, dict[str, Any]]] = field(default_factory=asyncio.Queue)
    acks: dict[str, asyncio.Future[float]] = field(default_factory=dict)
    heartbeats: int = 0


async def client_session(client: Client, kind: str, url: str, hello: asyncio.Event) -> None:
    from websockets.asyncio.client import connect

    from cabinet_agent import protocol

    headers = {"Authorization": protocol.authorization_header(client.credential),
               "Cabinet-Protocol": "1", "X-Cabinet-Id": str(client.cabinet_id)}  # fmt: skip
    # The server pings every 20 s (uvicorn's default); the client does not add its own.
    client.ws = await connect(
        url, additional_headers=headers, compression=None, ping_interval=None, open_timeout=60,
        max_size=protocol.MAX_FRAME_BYTES,
    )  # fmt: skip
    first = json.loads(await client.ws.recv())
    assert first["type"] == "hello", first
    hello.set()
    telemetry = protocol.make_telemetry(
        temperature_c=21.0, power="mains", battery_pct=None, firmware_version="bench",
        config_version=1, doors={label: "closed" for label in client.labels},
    )  # fmt: skip

    async def beat() -> None:
        await asyncio.sleep(random.uniform(0, 1))
        while True:
            frame = protocol.make_heartbeat(sent_at=protocol.now_ms(), telemetry=telemetry)
            await client.ws.send(protocol.encode_frame(frame))
            client.heartbeats += 1
            await asyncio.sleep(HEARTBEAT_S)

    beater = asyncio.create_task(beat())
    try:
        async for raw in client.ws:
            now = time.perf_counter()
            frame = json.loads(raw)
            if frame["type"] == "command":
                client.commands.put_nowait((now, frame))
                if kind == "platform":
                    body = frame["command"]
                    receipt = protocol.make_command_receipt(
                        command_id=body["id"], at=protocol.now_ms()
                    )
                    client.acks[receipt["id"]] = asyncio.get_running_loop().create_future()
                    client.acks["last"] = client.acks[receipt["id"]]
                    await client.ws.send(protocol.encode_frame(receipt))
                    result = protocol.make_command_result(
                        command_id=body["id"], status="succeeded", door="open",
                        detail="unlocked", at=protocol.now_ms(),
                    )  # fmt: skip
                    await client.ws.send(protocol.encode_frame(result))
            elif frame["type"] == "ack":
                future = client.acks.pop(frame["ref"], None)
                if future is not None and not future.done():
                    future.set_result(now)
    except Exception:
        pass
    finally:
        beater.cancel()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


async def measure(
    kind: str, level: int, fleet: list[Client], env: dict[str, str]
) -> dict[str, Any]:
    from asgiref.sync import sync_to_async
    from channels.layers import get_channel_layer

    from cabinet_agent import protocol
    from cabinets.models import Compartment
    from cabinets.services.commands import compartment_unlock
    from core.actors import Actor

    server = Server(kind, env)
    clients = [Client(c.serial, c.cabinet_id, c.credential, c.labels) for c in fleet[:level]]
    result: dict[str, Any] = {"kind": kind, "level": level}
    try:
        await asyncio.sleep(2)
        rss0 = server.rss_kb()
        started = time.monotonic()
        hellos = [asyncio.Event() for _ in clients]
        sessions = []
        for i, client in enumerate(clients):
            sessions.append(
                asyncio.create_task(client_session(client, kind, server.url, hellos[i]))
            )
            if i % (CONNECT_RATE // 10) == 0:
                await asyncio.sleep(0.1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(h.wait() for h in hellos)), 120)
        connected = sum(h.is_set() for h in hellos)
        failed = sum(1 for s in sessions if s.done() and s.exception() is not None)
        result.update(connected=connected, failed=failed,
                      connect_s=time.monotonic() - started)  # fmt: skip
        await asyncio.sleep(5)  # first heartbeats and their telemetry writes settle
        rss1 = server.rss_kb()
        cpu0, t0 = server.cpu_s(), time.monotonic()
        await asyncio.sleep(WINDOW_S)
        cpu1, t1 = server.cpu_s(), time.monotonic()
        result.update(
            rss_mb=rss1 / 1024,
            kb_per_socket=(rss1 - rss0) / max(connected, 1),
            heartbeat_cpu_pct=100 * (cpu1 - cpu0) / (t1 - t0),
            heartbeats=sum(c.heartbeats for c in clients),
        )
        # Sequential unlocks to random connected cabinets, under the heartbeat load.
        layer = get_channel_layer()
        live = [c for c, h in zip(clients, hellos, strict=True) if h.is_set()]
        compartments = {}
        if kind == "platform":
            rows = Compartment.objects.filter(
                cabinet_id__in=[c.cabinet_id for c in live], label="A01"
            ).select_related("cabinet")
            compartments = await sync_to_async(lambda: {r.cabinet_id: r for r in rows})()
        push_ms, receipt_ms, lost = [], [], 0
        actor = Actor.system("bench")
        for _ in range(PUSHES):
            client = random.choice(live)
            start = time.perf_counter()
            if kind == "platform":
                await sync_to_async(compartment_unlock)(
                    compartment=compartments[client.cabinet_id], actor=actor, reason="bench"
                )
            else:
                frame = {"type": "command", "command": {"id": protocol.new_id()}}
                await layer.group_send(f"cabinet.{client.cabinet_id}",
                                       {"type": "link.send", "frame": frame})  # fmt: skip
            try:
                received, _ = await asyncio.wait_for(client.commands.get(), 10)
            except TimeoutError:
                lost += 1
                continue
            push_ms.append((received - start) * 1000)
            if kind == "platform":
                while "last" not in client.acks:
                    await asyncio.sleep(0)
                try:
                    acked = await asyncio.wait_for(client.acks.pop("last"), 10)
                    receipt_ms.append((acked - start) * 1000)
                except TimeoutError:
                    pass
        result.update(
            push_p50=percentile(push_ms, 50), push_p95=percentile(push_ms, 95),
            push_p99=percentile(push_ms, 99), push_lost=lost,
            receipt_p50=percentile(receipt_ms, 50) if receipt_ms else None,
            receipt_p99=percentile(receipt_ms, 99) if receipt_ms else None,
            server_rss_after_mb=server.rss_kb() / 1024,
        )  # fmt: skip
    finally:
        for client in clients:
            if client.ws is not None:
                client.ws.transport.abort()  # no close handshake: 10,000 closes take long
        for task in sessions:
            task.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)
        server.stop()
    return result


def setup_django(env: dict[str, str]) -> list[Client]:
    django_start(env)
    from cabinets.models import Compartment
    from cabinets.services.simulation import simulated_fleet_provision
    from core.actors import Actor

    issued = simulated_fleet_provision(
        prefix=PREFIX, count=max(LEVELS), create=True, actor=Actor.system("bench")
    )
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


def report(results: list[dict[str, Any]], *, database: str, took: float) -> str:
    lines = [
        "## Fleet: platform consumer next to a bare Channels echo consumer",
        "",
        f"Machine: {machine()}. Database: {database}. Run took {took:.0f} s "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
        "",
        f"Each row is one fresh uvicorn process (`--loop asyncio --ws websockets`, "
        f"FleetRedisChannelLayer), N lean clients connecting at about {CONNECT_RATE}/s, "
        f"heartbeats every {HEARTBEAT_S} s; CPU is the server's over a {WINDOW_S:.0f} s window "
        f"of heartbeats only; then {PUSHES} sequential unlocks to random cabinets under that "
        "load. Push = issue → command frame received by the client (platform: the "
        "`compartment_unlock` service, stored then pushed on commit; echo: a bare "
        "`group_send`). Receipt = issue → the server's ack of the client's `command_receipt` "
        "(stored).",
        "",
        "| server | cabinets | connected | connect s | RSS MB | KB/socket | heartbeat CPU % "
        "| push p50 / p95 / p99 ms | lost | receipt p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['kind']} | {r['level']:,} | {r.get('connected', 0):,} | "
            f"{fmt(r.get('connect_s'))} | {fmt(r.get('rss_mb'), '.0f')} | "
            f"{fmt(r.get('kb_per_socket'))} | {fmt(r.get('heartbeat_cpu_pct'))} | "
            f"{fmt(r.get('push_p50'))} / {fmt(r.get('push_p95'))} / {fmt(r.get('push_p99'))} | "
            f"{r.get('push_lost', '-')} | {fmt(r.get('receipt_p50'))} / {fmt(r.get('receipt_p99'))} |"
        )
    by = {(r["kind"], r["level"]): r for r in results}
    ratios = []
    for level in LEVELS:
        p, e = by.get(("platform", level)), by.get(("echo", level))
        if not p or not e or "push_p50" not in p or "push_p50" not in e:
            continue
        ratios.append(
            f"- {level:,}: KB/socket x{p['kb_per_socket'] / max(e['kb_per_socket'], 0.1):.2f}, "
            f"heartbeat CPU x{p['heartbeat_cpu_pct'] / max(e['heartbeat_cpu_pct'], 0.1):.2f}, "
            f"push p50 x{p['push_p50'] / e['push_p50']:.1f}, p99 x{p['push_p99'] / e['push_p99']:.1f}"
        )
    if ratios:
        lines += ["", "Platform ÷ echo, same run:", "", *ratios]
    medians = [r["push_p50"] for r in results if r["kind"] == "platform" and "push_p50" in r]
    if medians:
        lines += ["", f"Median of the platform's push p50 over the levels: "
                  f"{statistics.median(medians):.1f} ms."]  # fmt: skip
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
    _, database, env = bench_environment("fleet", CABINET_HEARTBEAT_INTERVAL_S=str(HEARTBEAT_S))
    started = time.monotonic()
    fleet = setup_django(env)
    print(f"provisioned {len(fleet)} cabinets in {time.monotonic() - started:.0f} s", flush=True)
    results: list[dict[str, Any]] = []

    async def run_all() -> None:
        for level in LEVELS:
            for kind in ("echo", "platform"):
                if time.monotonic() - started > BUDGET_S:
                    print(f"time budget spent: skipping {kind} at {level}", flush=True)
                    continue
                result = await measure(kind, level, fleet, env)
                results.append(result)
                print(json.dumps(result, default=str), flush=True)

    asyncio.run(run_all())
    engine = database.split(":", 1)[0]
    section = report(results, database=engine, took=time.monotonic() - started)
    print(section)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Fleet benchmark\n\nWritten by `bench/fleet.py` (`make bench`); the newest run "
        "replaces the section below. See ../shared/CHANNELS-NOTES.md for the earlier bare "
        "measurements and docs/cabinet-protocol.md for the protocol.\n\n"
    )
    OUTPUT.write_text(header + section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
