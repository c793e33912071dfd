"""The cabinet link over a real socket: uvicorn serving config.asgi, channels_redis on Redis,
and the reference agent in its own process (`python -m cabinet_agent`).

The agent is observed from outside only: through the server's database, its own SQLite state
and its log. Every wait polls with a generous deadline; nothing asserts on timing."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from cabinet_agent import protocol
from cabinets.models import (
    Cabinet,
    CabinetCommand,
    CabinetMessage,
    CommandStatus,
    Compartment,
    ConnectionState,
)
from cabinets.push import cabinet_group
from cabinets.selectors import active_key_id, command_frame
from cabinets.services.commands import command_issue, commands_expire, compartment_unlock
from cabinets.services.credentials import IssuedCredential, cabinet_credential_issue
from cabinets.services.liveness import cabinets_liveness_sync
from core.actors import Actor
from tests.factories import CabinetFactory, CompartmentFactory
from tests.live.server import ROOT, LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
STAFF = Actor.system("test")
DEADLINE_S = 60.0
RECONNECT_LINE = re.compile(r"reconnecting in [0-9.]+ s \((\w+), \d+ failures\)")
# The cabinet accepts a command until its expiry plus this; the server expires it only then.
SKEW = timedelta(milliseconds=settings.CABINET_MAX_CLOCK_SKEW_MS)


class AgentProcess:
    """`python -m cabinet_agent` with a TOML config in a temporary directory."""

    def __init__(
        self,
        directory: Path,
        *,
        url: str,
        issued: IssuedCredential,
        auto_close_after: float | None = 2.0,
    ) -> None:
        """`auto_close_after`: seconds until the simulated lock closes an opened door by
        itself; None leaves it open."""
        self.directory = directory
        self.config_path = directory / "agent.toml"
        self.log_path = directory / "agent.log"
        self.state_path = directory / "state" / "agent.sqlite3"
        self.config_path.write_text(
            f"""
[server]
url = "{url}"

[cabinet]
serial = "{issued.serial}"
credential = "{issued.credential}"
signing_key = "{issued.signing_key_hex}"
compartments = ["A01", "A02"]

[agent]
state_dir = "state"
hello_timeout = 5
ack_timeout = 2
# Small, so that a crafted command from two minutes ago is plainly expired.
max_clock_skew_ms = 2000

[backoff]
base = 0.2
cap = 1.0
spread = 0.3

[simulator]
"""
            + ("" if auto_close_after is None else f"auto_close_after = {auto_close_after}\n")
        )
        self.config_path.chmod(0o600)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cabinet_agent", "--config", str(self.config_path)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def sessions(self) -> int:
        """How many links the agent opened (its log line after each server hello)."""
        return self.log().count("connected to ")

    def reconnects(self) -> list[str]:
        """Why the agent reconnected, each time, in order: "switched" (to a delivered
        credential), "ended", "failed", ... (its log line, cabinet_agent.agent.Outcome)."""
        return RECONNECT_LINE.findall(self.log())

    def runs_of(self, command_id: str) -> int:
        """How many times the agent drove an action for this command (its log line)."""
        return self.log().count(f"running unlock {command_id}")

    def executed_ids(self) -> set[str]:
        """Command ids the agent claimed in its durable store (claimed before acting)."""
        if not self.state_path.exists():
            return set()
        db = sqlite3.connect(f"file:{self.state_path}?mode=ro", uri=True, timeout=10)
        try:
            return {row[0] for row in db.execute("SELECT command_id FROM executed_command")}
        finally:
            db.close()


def eventually(
    condition: Callable[[], Any], *, what: str, agent: AgentProcess, server: LiveServer
) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(
        f"gave up waiting for {what}\n--- agent log ---\n{agent.log()[-4000:]}"
        f"\n--- server log ---\n{server.log_tail()}"
    )


@pytest.fixture
def link(
    asgi_server_process: LiveServer, tmp_path: Path
) -> Iterator[tuple[Cabinet, AgentProcess, LiveServer]]:
    cabinet = CabinetFactory(serial="SH-E2E-0001")
    CompartmentFactory(cabinet=cabinet, label="A01")
    CompartmentFactory(cabinet=cabinet, label="A02")
    issued = cabinet_credential_issue(cabinet=cabinet, actor=STAFF)
    agent = AgentProcess(tmp_path, url=asgi_server_process.ws_url, issued=issued)
    agent.start()
    try:
        wait_online(cabinet, agent, asgi_server_process)
        yield cabinet, agent, asgi_server_process
    finally:
        assert agent.stop() == 0, agent.log()[-4000:]


def wait_online(cabinet: Cabinet, agent: AgentProcess, server: LiveServer) -> None:
    # telemetry_at is written by the first heartbeat, which the agent sends right after hello
    eventually(
        lambda: Cabinet.objects.filter(
            pk=cabinet.pk, connection_state=ConnectionState.ONLINE, telemetry_at__isnull=False
        ).exists(),
        what="the cabinet online with telemetry",
        agent=agent,
        server=server,
    )


def wait_status(
    command: CabinetCommand, status: str, agent: AgentProcess, server: LiveServer
) -> CabinetCommand:
    return eventually(
        lambda: CabinetCommand.objects.filter(pk=command.pk, status=status).first(),
        what=f"command {command.pk} {status}",
        agent=agent,
        server=server,
    )


def push_raw(cabinet: Cabinet, frame: dict[str, Any]) -> None:
    """What a compromised or confused platform component could put on the channel layer:
    the consumer forwards `link.send` frames as they are."""
    async_to_sync(get_channel_layer().group_send)(
        cabinet_group(cabinet.pk), {"type": "link.send", "frame": frame}
    )


def rejection(command_id: str) -> CabinetMessage | None:
    return CabinetMessage.objects.filter(
        type=protocol.COMMAND_REJECTED, payload__command_id=command_id
    ).first()


def results_for(command_id: str) -> int:
    return CabinetMessage.objects.filter(
        type=protocol.COMMAND_RESULT, payload__command_id=command_id
    ).count()


def test_an_unlock_reaches_the_agent_whose_lock_opens_and_the_outcome_is_recorded(link) -> None:  # type: ignore[no-untyped-def]
    cabinet, agent, server = link
    compartment = Compartment.objects.get(cabinet=cabinet, label="A01")

    command = compartment_unlock(compartment=compartment, actor=STAFF, reason="pickup")
    done = wait_status(command, CommandStatus.SUCCEEDED, agent, server)

    assert done.sent_at and done.received_at and done.completed_at
    assert done.result == {"status": "succeeded", "door": "open", "detail": "unlocked"}
    assert str(command.pk) in agent.executed_ids()
    assert agent.runs_of(str(command.pk)) == 1
    # the agent reports the opening as a door event after the result
    eventually(
        lambda: CabinetMessage.objects.filter(
            type=protocol.DOOR_EVENT, payload__compartment="A01", payload__event="opened"
        ).exists(),
        what="the opened door event",
        agent=agent,
        server=server,
    )


def test_a_connection_cut_mid_command_still_runs_the_command_exactly_once(link) -> None:  # type: ignore[no-untyped-def]
    cabinet, agent, server = link
    a01 = Compartment.objects.get(cabinet=cabinet, label="A01")
    a02 = Compartment.objects.get(cabinet=cabinet, label="A02")

    # 1. The server dies while the command is on its way (pushed, maybe delivered, maybe run,
    #    its receipt and result maybe stored): the restart must neither lose nor repeat it.
    in_flight = compartment_unlock(compartment=a01, actor=STAFF, reason="pickup")
    server.kill()
    # 2. Issued while the server is down: stored, pushed to nobody, sent on reconnect.
    while_down = compartment_unlock(compartment=a02, actor=STAFF, reason="pickup")
    server.start()

    for command in (in_flight, while_down):
        wait_status(command, CommandStatus.SUCCEEDED, agent, server)
    wait_online(cabinet, agent, server)
    for command in (in_flight, while_down):
        assert agent.runs_of(str(command.pk)) == 1
        assert str(command.pk) in agent.executed_ids()
        # a result resent after the reconnect carries the same event id: stored once
        assert results_for(str(command.pk)) == 1


def test_an_expired_command_is_never_executed(link) -> None:  # type: ignore[no-untyped-def]
    cabinet, agent, server = link
    a01 = Compartment.objects.get(cabinet=cabinet, label="A01")
    a02 = Compartment.objects.get(cabinet=cabinet, label="A02")

    # The cabinet is away while a short-lived unlock expires.
    assert agent.stop() == 0
    # Disconnects write nothing: the liveness tick (beat, every 15 s) marks the cabinet offline.
    eventually(
        lambda: (
            cabinets_liveness_sync()
            and Cabinet.objects.filter(
                pk=cabinet.pk, connection_state=ConnectionState.OFFLINE
            ).exists()
        ),
        what="the cabinet offline",
        agent=agent,
        server=server,
    )
    stale = command_issue(
        cabinet=cabinet, compartment=a01, action="unlock", actor=STAFF, reason="late", ttl_s=1
    )
    eventually(
        lambda: timezone.now() > stale.expires_at + timedelta(seconds=1),
        what="the command to expire",
        agent=agent,
        server=server,
    )
    agent.start()
    # Commands run in arrival order: once a later one has run, the stale one would have too.
    fresh = compartment_unlock(compartment=a02, actor=STAFF, reason="pickup")
    wait_status(fresh, CommandStatus.SUCCEEDED, agent, server)
    assert str(stale.pk) not in agent.executed_ids()
    assert agent.runs_of(str(stale.pk)) == 0
    assert commands_expire(now=timezone.now() + SKEW) == 1
    stale.refresh_from_db()
    assert stale.status == CommandStatus.EXPIRED

    # Even if an expired command does reach it (a correctly signed one, two minutes old),
    # the agent refuses it by its own clock.
    issued_at = protocol.now_ms() - 120_000
    body = protocol.make_command(
        cabinet=cabinet.serial,
        action="unlock",
        compartment="A01",
        issued_at=issued_at,
        ttl_ms=30_000,
    )
    key = bytes.fromhex(agent.config_path.read_text().split('signing_key = "')[1][:64])
    push_raw(cabinet, protocol.make_command_frame(key, body))
    refused = eventually(
        lambda: rejection(body["id"]),
        what="the expired command refused",
        agent=agent,
        server=server,
    )
    assert refused.payload["reason"] == "expired"
    assert body["id"] not in agent.executed_ids()


def test_a_forged_or_replayed_command_is_refused_by_the_agent(link) -> None:  # type: ignore[no-untyped-def]
    cabinet, agent, server = link
    a01 = Compartment.objects.get(cabinet=cabinet, label="A01")
    a02 = Compartment.objects.get(cabinet=cabinet, label="A02")
    command = compartment_unlock(compartment=a01, actor=STAFF, reason="pickup")
    wait_status(command, CommandStatus.SUCCEEDED, agent, server)
    genuine = command_frame(command, serial=cabinet.serial, key_id=active_key_id(cabinet.pk))

    # Forged: a fresh, well-formed unlock signed with a key that is not the cabinet's.
    forged_body = protocol.make_command(
        cabinet=cabinet.serial,
        action="unlock",
        compartment="A01",
        issued_at=protocol.now_ms(),
        ttl_ms=60_000,
    )
    push_raw(cabinet, protocol.make_command_frame(b"not-the-cabinet-key-0123456789ab", forged_body))
    # Tampered: the genuine signature on a command for another compartment.
    tampered = {**genuine, "command": {**genuine["command"], "compartment": "A02"}}
    push_raw(cabinet, tampered)
    # Replayed: the genuine frame of the command that already ran.
    push_raw(cabinet, genuine)
    # A barrier: the agent runs commands in arrival order and sends its events in queue order
    # on one connection, so once this later unlock's result is stored, the server has stored
    # everything the agent answered to the three frames above (nothing races a log line).
    barrier = compartment_unlock(compartment=a02, actor=STAFF, reason="pickup")
    wait_status(barrier, CommandStatus.SUCCEEDED, agent, server)

    forged = rejection(forged_body["id"])
    assert forged is not None and forged.payload["reason"] == "bad_signature"
    assert forged_body["id"] not in agent.executed_ids()
    # the tampered copy (same id) arrived before the replay and was refused on its signature
    assert CabinetMessage.objects.filter(
        type=protocol.COMMAND_REJECTED,
        payload__command_id=str(command.pk),
        payload__reason="bad_signature",
    ).exists()
    # the replay was recognised: not run again, its stored result resent with the same event
    # id and deduplicated by the server
    assert f"duplicate command {command.pk}: resending its result" in agent.log()
    assert agent.runs_of(str(command.pk)) == 1
    assert results_for(str(command.pk)) == 1
    command.refresh_from_db()
    # a rejection after success changes nothing
    assert command.status == CommandStatus.SUCCEEDED
