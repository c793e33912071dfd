"""python manage.py simulate_fleet --count N [--server URL] [--prefix SIM-] [--create]

Runs N reference agents (cabinet_agent.CabinetAgent with simulated locks) in one asyncio
process against a running platform, for demos and load tests. Ctrl-C stops them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
import time
from argparse import ArgumentParser
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from cabinet_agent.agent import CabinetAgent
from cabinet_agent.config import AgentConfig, ConfigError
from cabinet_agent.drivers import SimulatedLockDriver
from cabinet_agent.outbox import Outbox
from cabinets.models import Compartment
from cabinets.services.credentials import IssuedCredential
from cabinets.services.simulation import simulated_fleet_provision
from core.actors import Actor
from core.servers import SERVER_HELP, cabinet_websocket_url

REFRESH_S = 1.0
LOG_EVERY_S = 10.0  # when the output is not a terminal: one line every so often


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--count", type=int, required=True, help="how many cabinets")
        parser.add_argument(
            "--server",
            default=None,
            help=SERVER_HELP,
        )
        parser.add_argument("--prefix", default="SIM-", help="serials are <prefix>00001…")
        parser.add_argument(
            "--create", action="store_true", help="create missing cabinets (4 compartments)"
        )
        parser.add_argument(
            "--spread",
            type=float,
            default=None,
            help="seconds over which the agents connect (default: count/1000, at least 1)",
        )
        parser.add_argument(
            "--duration", type=float, default=0, help="stop after this many seconds (0: Ctrl-C)"
        )
        parser.add_argument(
            "--state-dir", help="keep each agent's queue in <dir>/<serial>/ (default: in memory)"
        )
        parser.add_argument(
            "--auto-close", type=float, default=5.0, help="simulated doors close after seconds"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        count: int = options["count"]
        if not 1 <= count <= 100_000:
            raise CommandError("--count must be between 1 and 100000")
        url = cabinet_websocket_url(options["server"])
        try:
            issued = simulated_fleet_provision(
                prefix=options["prefix"],
                count=count,
                create=options["create"],
                actor=Actor.system("fleet simulator"),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        labels: dict[int, list[str]] = {}
        for cabinet_id, label in Compartment.objects.filter(
            cabinet_id__in=[i.cabinet_id for i in issued]
        ).values_list("cabinet_id", "label"):
            labels.setdefault(cabinet_id, []).append(label)
        spread = options["spread"] if options["spread"] is not None else max(1.0, count / 1000)
        if options["verbosity"] < 2:
            # 10,000 agents logging every connect drown the progress line.
            logging.getLogger("cabinet_agent").setLevel(logging.WARNING)
        state_dir = Path(options["state_dir"]) if options["state_dir"] else None
        try:
            agents = [
                _agent(
                    credential,
                    url=url,
                    labels=sorted(labels[credential.cabinet_id]),
                    spread=spread,
                    state_dir=state_dir,
                    auto_close=options["auto_close"],
                )
                for credential in issued
            ]
        except ConfigError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"* {count} simulated cabinets → {url} (connecting over {spread:.0f} s)")
        self.stdout.flush()
        stats = asyncio.run(
            run_fleet(
                agents,
                duration=options["duration"],
                write=self._write,
                tty=self.stdout.isatty(),
            )
        )
        self.stdout.write(f"\n* stopped: {stats}")

    def _write(self, text: str) -> None:
        self.stdout.write(text, ending="")
        self.stdout.flush()


def _agent(
    issued: IssuedCredential,
    *,
    url: str,
    labels: list[str],
    spread: float,
    state_dir: Path | None,
    auto_close: float,
) -> CabinetAgent:
    # Each agent has its own state: a directory of its own under --state-dir, or else an
    # in-memory queue (its directory, named after the serial too, is then never opened).
    base = state_dir if state_dir is not None else Path(tempfile.gettempdir()) / "simulate_fleet"
    directory = base / issued.serial
    config = AgentConfig(
        server_url=url,
        serial=issued.serial,
        credential=issued.credential,
        signing_key=bytes.fromhex(issued.signing_key_hex),
        compartments=tuple(labels),
        state_dir=directory,
        firmware_version="sim-1",
        reconnect_spread=spread,
        auto_close_after=auto_close,
    )
    outbox = None if state_dir is not None else Outbox(":memory:")
    lock = SimulatedLockDriver(config.compartments, auto_close_after=auto_close)
    return CabinetAgent(config, lock=lock, outbox=outbox)


def fleet_status(agents: list[CabinetAgent]) -> dict[str, int]:
    return {
        "connected": sum(agent.connected.is_set() for agent in agents),
        "total": len(agents),
        "heartbeats": sum(agent.heartbeats_sent for agent in agents),
        "commands": sum(len(agent.executed_commands) for agent in agents),
        "rejected": sum(len(agent.rejected_commands) for agent in agents),
    }


def status_line(status: dict[str, int], elapsed: float) -> str:
    return (
        f"[{elapsed:7.0f} s] connected {status['connected']}/{status['total']}"
        f"  heartbeats {status['heartbeats']}  commands executed {status['commands']}"
        f"  rejected {status['rejected']}"
    )


async def run_fleet(
    agents: list[CabinetAgent], *, duration: float, write: Callable[[str], None], tty: bool
) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(agent.run()) for agent in agents]
    started = time.monotonic()
    last_logged = 0.0
    try:
        while not stop.is_set():
            elapsed = time.monotonic() - started
            if duration and elapsed >= duration:
                break
            line = status_line(fleet_status(agents), elapsed)
            if tty:
                write("\r" + line.ljust(100))
            elif elapsed - last_logged >= LOG_EVERY_S or last_logged == 0.0:
                write(line + "\n")
                last_logged = elapsed or 1e-9
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REFRESH_S)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for agent in agents:
            agent.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
    return fleet_status(agents)
