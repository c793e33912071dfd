"""The fleet simulator: provisioning in bulk, and N agents in one process against a real
ASGI server (started by the asgi_server fixture), stopped with Ctrl-C."""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
import time

import pytest
from django.core.management import CommandError, call_command

from cabinet_agent import protocol
from cabinets.management.commands.simulate_fleet import websocket_url
from cabinets.models import (
    Cabinet,
    CabinetCommand,
    CabinetCredential,
    CommandStatus,
    Compartment,
    ConnectionState,
)
from cabinets.selectors import cabinet_authenticate
from cabinets.services.commands import compartment_unlock
from cabinets.services.liveness import cabinets_liveness_sync
from cabinets.services.simulation import simulated_fleet_provision
from core.actors import Actor
from tests.live.server import ROOT, LiveServer, live_env

STAFF = Actor.system("test")


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("ws://127.0.0.1:8000", "ws://127.0.0.1:8000/ws/cabinet/"),
        ("http://127.0.0.1:8000/", "ws://127.0.0.1:8000/ws/cabinet/"),
        ("wss://cabinets.example/ws/cabinet/", "wss://cabinets.example/ws/cabinet/"),
    ],
)
def test_the_server_option_takes_a_base_url_or_the_endpoint(given: str, url: str) -> None:
    assert websocket_url(given) == url


@pytest.mark.django_db
def test_provisioning_creates_cabinets_once_and_rotates_their_credentials() -> None:
    first = simulated_fleet_provision(prefix="SIMP-", count=3, create=True, actor=STAFF)
    again = simulated_fleet_provision(prefix="SIMP-", count=3, create=True, actor=STAFF)

    assert [i.serial for i in again] == ["SIMP-00001", "SIMP-00002", "SIMP-00003"]
    assert Cabinet.objects.filter(serial__startswith="SIMP-").count() == 3
    assert Compartment.objects.filter(cabinet__serial="SIMP-00001").count() == 4
    assert CabinetCredential.objects.filter(revoked_at__isnull=True).count() == 3
    # the first run's credentials no longer open a link; the new ones do
    header = protocol.authorization_header
    assert cabinet_authenticate(header(first[0].credential)).reason == "revoked"
    assert cabinet_authenticate(header(again[0].credential)).session is not None


@pytest.mark.django_db
def test_without_create_it_refuses_a_fleet_that_does_not_exist() -> None:
    with pytest.raises(CommandError, match="do not exist"):
        call_command("simulate_fleet", "--count", "2", "--prefix", "NOPE-")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_simulated_cabinets_connect_execute_an_unlock_and_stop_on_ctrl_c(
    asgi_server_process: LiveServer, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    log_path = tmp_path / "fleet.log"
    command = [
        sys.executable, "manage.py", "simulate_fleet", "--count", "3", "--create",
        "--prefix", "SIMT-", "--server", asgi_server_process.url, "--spread", "0.5",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        fleet = subprocess.Popen(
            command, cwd=ROOT, env=live_env(), stdout=log, stderr=subprocess.STDOUT
        )

    def output() -> str:
        return log_path.read_text(errors="replace")

    def wait_for(condition, what: str, *, running: bool = True) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if condition():
                return
            assert not running or fleet.poll() is None, f"the simulator exited:\n{output()}"
            time.sleep(0.2)
        fleet.kill()
        pytest.fail(f"gave up waiting for {what}:\n{output()}\n{asgi_server_process.log_tail()}")

    try:
        wait_for(
            lambda: (
                Cabinet.objects.filter(
                    serial__startswith="SIMT-", connection_state=ConnectionState.ONLINE
                ).count()
                == 3
            ),
            "three simulated cabinets online",
        )
        compartment = Compartment.objects.get(cabinet__serial="SIMT-00002", label="A01")
        unlock = compartment_unlock(compartment=compartment, actor=STAFF, reason="demo")
        wait_for(
            lambda: CabinetCommand.objects.filter(
                pk=unlock.pk, status=CommandStatus.SUCCEEDED
            ).exists(),
            "the unlock to succeed",
        )
        wait_for(lambda: "commands executed 1" in output(), "the progress line to count it")
        fleet.send_signal(signal.SIGINT)
        assert fleet.wait(timeout=30) == 0, output()
    finally:
        if fleet.poll() is None:
            fleet.kill()
            fleet.wait()

    stats = ast.literal_eval(output().rsplit("* stopped: ", 1)[1].strip())
    assert stats == {"connected": 0, "total": 3, "heartbeats": stats["heartbeats"],
                     "commands": 1, "rejected": 0}  # fmt: skip
    assert stats["heartbeats"] >= 3
    assert "connected 3/3" in output()
    # each agent closed its link on the way out
    # disconnects write nothing: the liveness tick (beat) marks them offline
    wait_for(
        lambda: (
            cabinets_liveness_sync() is not None
            and not Cabinet.objects.filter(
                serial__startswith="SIMT-", connection_state=ConnectionState.ONLINE
            ).exists()
        ),
        "the cabinets offline",
        running=False,
    )
