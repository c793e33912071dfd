"""The fleet simulator: provisioning in bulk, and N agents in one process against a real
ASGI server (started by the asgi_server fixture), stopped with Ctrl-C."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from cabinet_agent import protocol
from cabinets.management.commands.simulate_fleet import _agent
from cabinets.models import (
    Cabinet,
    CabinetCommand,
    CabinetCredential,
    CommandStatus,
    Compartment,
    ConnectionState,
    RolloutKind,
    RolloutState,
    RolloutTarget,
)
from cabinets.rollouts.driver import rollout_advance
from cabinets.rollouts.services import rollout_create, rollout_start
from cabinets.selectors import cabinet_authenticate
from cabinets.services.commands import compartment_unlock
from cabinets.services.credentials import IssuedCredential
from cabinets.services.liveness import cabinets_liveness_sync
from cabinets.services.simulation import simulated_fleet_provision, simulated_location
from core.actors import Actor
from core.servers import cabinet_websocket_url
from tests.live.server import ROOT, LiveServer, live_env

STAFF = Actor.system("test")


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("ws://127.0.0.1:8000", "ws://127.0.0.1:8000/ws/cabinet/"),
        ("http://127.0.0.1:8000/", "ws://127.0.0.1:8000/ws/cabinet/"),
        ("wss://cabinets.example/ws/cabinet/", "wss://cabinets.example/ws/cabinet/"),
        ("https://cabinets.example", "wss://cabinets.example/ws/cabinet/"),
    ],
)
def test_the_server_option_takes_a_base_url_or_the_endpoint(given: str, url: str) -> None:
    assert cabinet_websocket_url(given) == url


@override_settings(PUBLIC_BASE_URL="http://127.0.0.1:8123")
def test_without_a_server_it_uses_the_platforms_own_base_url() -> None:
    assert cabinet_websocket_url(None) == "ws://127.0.0.1:8123/ws/cabinet/"


def test_the_base_url_follows_port_unless_it_is_set(tmp_path: Path) -> None:
    def base_url(**env: str) -> str:
        environment = {k: v for k, v in os.environ.items() if k not in ("PORT", "PUBLIC_BASE_URL")}
        code = "from django.conf import settings; print(settings.PUBLIC_BASE_URL)"
        return subprocess.run(
            [sys.executable, "-c", f"import django; django.setup(); {code}"],
            cwd=ROOT, env={**environment, **env}, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    assert base_url(PORT="8765") == "http://127.0.0.1:8765"
    assert base_url(PORT="8765", PUBLIC_BASE_URL="https://p.example") == "https://p.example"
    assert base_url() == "http://127.0.0.1:8000"


def _issued(serial: str) -> IssuedCredential:
    return IssuedCredential(
        cabinet_id=1,
        serial=serial,
        credential="k3y1d0001.c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0",
        signing_key_hex="ab" * 32,
    )


def _frame(n: int) -> dict[str, object]:
    return {"type": "event", "id": f"evt-{n}", "v": protocol.PROTOCOL_VERSION}


@pytest.mark.parametrize("state_dir", [None, "dir"])
def test_every_simulated_agent_keeps_its_own_queue(tmp_path: Path, state_dir: str | None) -> None:
    """Empty queues are falsy: agents given one must not fall back to one shared state file,
    where one agent's events (and command results) would go out over another's link."""
    base = tmp_path / state_dir if state_dir else None
    agents = [
        _agent(_issued(f"SIMQ-{n}"), url="ws://127.0.0.1:1/ws/cabinet/", labels=["A01"],
               spread=1.0, state_dir=base, auto_close=1.0)
        for n in (1, 2)
    ]  # fmt: skip
    first, second = agents
    try:
        assert first.config.state_path != second.config.state_path
        assert first.outbox is not second.outbox
        first.outbox.enqueue(_frame(1), created_ms=1)
        assert (len(first.outbox), len(second.outbox)) == (1, 0)
        if base is None:
            # In memory: nothing written to the temp folder.
            assert not first.config.state_path.exists()
        else:
            assert first.config.state_path.parent == base / "SIMQ-1"
            assert first.config.state_path.exists()
    finally:
        for agent in agents:
            agent.outbox.close()


def test_simulated_cabinets_get_distinct_plausible_places_around_shanghai() -> None:
    places = [simulated_location(f"SIM-{n:05d}") for n in range(1, 201)]

    assert len(set(places)) == 200
    for lat, lng in places:
        assert 30.9 < lat < 31.5 and 121.2 < lng < 121.8
    # seeded: the same cabinet lands on the same spot every run
    assert simulated_location("SIM-00007") == places[6]


@pytest.mark.django_db
def test_provisioning_creates_cabinets_once_and_rotates_their_credentials() -> None:
    first = simulated_fleet_provision(prefix="SIMP-", count=3, create=True, actor=STAFF)
    again = simulated_fleet_provision(prefix="SIMP-", count=3, create=True, actor=STAFF)

    assert [i.serial for i in again] == ["SIMP-00001", "SIMP-00002", "SIMP-00003"]
    assert Cabinet.objects.filter(serial__startswith="SIMP-").count() == 3
    assert Compartment.objects.filter(cabinet__serial="SIMP-00001").count() == 4
    assert CabinetCredential.objects.filter(revoked_at__isnull=True).count() == 3
    created = Cabinet.objects.get(serial="SIMP-00002")
    assert (created.latitude, created.longitude) == simulated_location("SIMP-00002")
    # the first run's credentials no longer open a link; the new ones do
    header = protocol.authorization_header
    assert cabinet_authenticate(header(first[0].credential)).reason == "revoked"
    assert cabinet_authenticate(header(again[0].credential)).session is not None


@pytest.mark.django_db
def test_without_create_it_refuses_a_fleet_that_does_not_exist() -> None:
    with pytest.raises(CommandError, match="do not exist"):
        call_command("simulate_fleet", "--count", "2", "--prefix", "NOPE-")


class Simulator:
    """`manage.py simulate_fleet` in a child process, with its output in a file."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path, server: LiveServer):
        self.process, self.log_path, self.server = process, log_path, server

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(
        self,
        condition: Callable[[], bool],
        what: str,
        *,
        running: bool = True,
        within_s: float = 60,
    ) -> None:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if condition():
                return
            assert not running or self.process.poll() is None, (
                f"the simulator exited:\n{self.output()}"
            )
            time.sleep(0.2)
        self.process.kill()
        pytest.fail(f"gave up waiting for {what}:\n{self.output()}\n{self.server.log_tail()}")

    def online(self, prefix: str) -> int:
        return Cabinet.objects.filter(
            serial__startswith=prefix, connection_state=ConnectionState.ONLINE
        ).count()

    def stop(self) -> dict[str, int]:
        """Ctrl-C, then the final statistics line."""
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(timeout=60) == 0, self.output()
        stats: dict[str, int] = ast.literal_eval(self.output().rsplit("* stopped: ", 1)[1].strip())
        return stats


@contextmanager
def simulator(server: LiveServer, tmp_path: Path, *args: str) -> Iterator[Simulator]:
    log_path = tmp_path / "fleet.log"
    command = [sys.executable, "manage.py", "simulate_fleet", "--create", "--server", server.url,
               *args]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=live_env(), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield Simulator(process, log_path, server)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_simulated_cabinets_connect_execute_an_unlock_and_stop_on_ctrl_c(
    asgi_server_process: LiveServer, tmp_path: Path
) -> None:
    args = ("--count", "3", "--prefix", "SIMT-", "--spread", "0.5")
    with simulator(asgi_server_process, tmp_path, *args) as fleet:
        fleet.wait_for(lambda: fleet.online("SIMT-") == 3, "three simulated cabinets online")
        compartment = Compartment.objects.get(cabinet__serial="SIMT-00002", label="A01")
        unlock = compartment_unlock(compartment=compartment, actor=STAFF, reason="demo")
        fleet.wait_for(
            lambda: CabinetCommand.objects.filter(
                pk=unlock.pk, status=CommandStatus.SUCCEEDED
            ).exists(),
            "the unlock to succeed",
        )
        fleet.wait_for(lambda: "commands executed 1" in fleet.output(), "the progress line")
        stats = fleet.stop()

    assert stats == {"connected": 0, "total": 3, "heartbeats": stats["heartbeats"],
                     "commands": 1, "rejected": 0}  # fmt: skip
    assert stats["heartbeats"] >= 3
    assert "connected 3/3" in fleet.output()
    # each agent closed its link on the way out
    # disconnects write nothing: the liveness tick (beat) marks them offline
    fleet.wait_for(
        lambda: (
            cabinets_liveness_sync() is not None
            and not Cabinet.objects.filter(
                serial__startswith="SIMT-", connection_state=ConnectionState.ONLINE
            ).exists()
        ),
        "the cabinets offline",
        running=False,
    )


# The README's `simulate_fleet --count 200` run: set SIMULATED_ROLLOUT_COUNT=200 to run it at
# that size (docs/benchmarks.md has the output); the default keeps the suite light.
ROLLOUT_FLEET = int(os.environ.get("SIMULATED_ROLLOUT_COUNT", "20"))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_simulated_fleet_takes_a_rollout_to_every_cabinet(
    asgi_server_process: LiveServer, tmp_path: Path
) -> None:
    """Every wave goes out over the simulated cabinets' own links, and each one answers its
    own command: the rollout completes with every target succeeded. The driver steps as the
    beat task would (one rollout_advance per tick)."""
    count = ROLLOUT_FLEET
    args = ("--count", str(count), "--prefix", "SIMR-", "--spread", str(max(1.0, count / 100)))
    with simulator(asgi_server_process, tmp_path, *args) as fleet:
        fleet.wait_for(
            lambda: fleet.online("SIMR-") == count, f"{count} cabinets online", within_s=180
        )
        rollout = rollout_create(
            name="fleet firmware",
            kind=RolloutKind.FIRMWARE,
            version="sim-2",
            payload={"url": "https://fw.example/sim-2.bin", "sha256": "cd" * 32},
            wave_plan="5,10%,50%,100%",
            min_sample=5,
            actor=STAFF,
        )
        rollout_start(rollout_id=rollout.pk, actor=STAFF)
        started = time.monotonic()

        def completed() -> bool:
            rollout_advance(rollout_id=rollout.pk)
            rollout.refresh_from_db()
            assert rollout.state in (RolloutState.RUNNING, RolloutState.COMPLETED), (
                f"{rollout.state}: {list(rollout.events.values_list('action', 'detail'))}"
            )
            return rollout.state == RolloutState.COMPLETED

        fleet.wait_for(completed, "the rollout to complete", within_s=300)
        took_s = time.monotonic() - started
        stats = fleet.stop()

    targets = RolloutTarget.objects.filter(rollout=rollout)
    assert targets.count() == count
    assert set(targets.values_list("state", flat=True)) == {"succeeded"}
    assert set(
        Cabinet.objects.filter(serial__startswith="SIMR-").values_list(
            "firmware_version", flat=True
        )
    ) == {"sim-2"}
    # every agent ran exactly its own command, none was refused
    assert (stats["commands"], stats["rejected"]) == (count, 0)
    print(f"\nrollout to {count} simulated cabinets completed in {took_s:.1f} s; {stats}")
