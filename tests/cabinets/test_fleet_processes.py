"""Several ASGI processes sharing one fleet through the channel layer (Redis): real uvicorn
processes on the test database, reference agents in this process.

- a command issued in this process (as a Celery worker issues one: the service, then a push
  through the channel layer) and one issued by another server process (an admin's remote open)
  reach a cabinet wherever its socket is;
- a newer connection in one process replaces the older one in the other (4409);
- a saturated process refuses handshakes with HTTP 503 and Retry-After, and the agents retry
  and connect.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.sync.client import connect

from cabinet_agent import protocol
from cabinets.models import CabinetCommand, CommandStatus, Compartment
from cabinets.services.commands import compartment_unlock
from cabinets.services.simulation import simulated_fleet_provision
from core.actors import Actor
from tests.live.fleet import AgentFleet, fleet_labels
from tests.live.server import LiveServer, live_env
from tests.live.wait import eventually

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
STAFF = Actor.system("fleet test")
# What a server must never log, whatever the cabinets do.
SERVER_FAULTS = (
    "Traceback",
    "Unexpected ASGI message",
    "No connection available",
    "returned without completing handshake",
)


def _faults(server: LiveServer) -> list[str]:
    text = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
    return [line for line in text.splitlines() if any(f in line for f in SERVER_FAULTS)]


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    env = live_env(LOG_LEVEL="WARNING")
    servers = (
        LiveServer(tmp_path / "one.log", env=env),
        LiveServer(tmp_path / "two.log", env=env),
    )
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def _fleet(prefix: str, count: int, url: str, **options: Any) -> tuple[AgentFleet, list[Any]]:
    issued = simulated_fleet_provision(prefix=prefix, count=count, create=True, actor=STAFF)
    fleet = AgentFleet(
        issued, url=url, labels=fleet_labels(i.cabinet_id for i in issued), options=options
    )
    return fleet, issued


def _admin_remote_open(server: LiveServer, compartment: Compartment, password: str) -> None:
    """An admin's remote open, served by `server`: the command is issued in that process."""
    session = requests.Session()

    def submit(url: str, fields: dict[str, str]) -> requests.Response:
        page = session.get(url, timeout=30)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, page.text[:500]
        data = {"csrfmiddlewaretoken": token.group(1), **fields}
        response = session.post(url, data=data, headers={"Referer": url}, timeout=30)
        assert response.ok, response.text[:500]
        return response

    login = f"{server.url}/admin/login/"
    fields = {"username": "ops", "password": password, "next": "/admin/"}
    assert "/admin/login/" not in submit(login, fields).url, "admin login failed"
    url = f"{server.url}/admin/cabinets/compartment/{compartment.pk}/operation/remote_open/"
    submit(url, {"reason": "cross-process test"})


def test_commands_from_any_process_reach_the_cabinet_and_a_newer_connection_in_another_process_replaces_the_older(
    two_servers, django_user_model
) -> None:  # type: ignore[no-untyped-def]
    one, two = two_servers
    password = "a long test password 1"
    django_user_model.objects.create_superuser("ops", "ops@example.com", password)
    fleet, issued = _fleet("XP-", 1, one.ws_url, reconnect_spread=0.0)
    cabinet = issued[0]
    compartment = Compartment.objects.filter(cabinet_id=cabinet.cabinet_id).order_by("label")[0]

    def logs() -> str:
        return f"--- one ---\n{one.log_tail(30)}\n--- two ---\n{two.log_tail(30)}"

    def ran(command_id: str) -> bool:
        return command_id in {a.command_id for a in fleet.actuations()}

    fleet.start()
    try:
        eventually(lambda: fleet.connected() == 1, "the cabinet connected to one", logs=logs)

        # Issued in this process, pushed through the channel layer (as from a Celery worker).
        here = str(compartment_unlock(compartment=compartment, actor=STAFF, reason="t").pk)
        eventually(lambda: ran(here), "the unlock from this process ran", logs=logs)

        # Issued by server two (an admin's remote open), to the socket held by server one.
        _admin_remote_open(two, compartment, password)
        remote = CabinetCommand.objects.exclude(pk=here).get(cabinet_id=cabinet.cabinet_id)
        eventually(lambda: ran(str(remote.pk)), "the unlock issued by server two ran", logs=logs)
        eventually(
            lambda: (
                CabinetCommand.objects.filter(
                    pk__in=[here, remote.pk], status=CommandStatus.SUCCEEDED
                ).count()
                == 2
            ),
            "both results stored",
            logs=logs,
        )

        # A newer connection through server two replaces the agent's on server one.
        headers = {
            "Authorization": protocol.authorization_header(cabinet.credential),
            protocol.PROTOCOL_HEADER: "1",
        }
        with connect(two.ws_url, additional_headers=headers, open_timeout=30) as newer:
            hello = protocol.decode_frame(newer.recv(timeout=30))
            assert hello["type"] == protocol.HELLO
            last_close = lambda: fleet.call(lambda: fleet.agents[0].last_close)  # noqa: E731
            closed = eventually(last_close, "the older connection closed", logs=logs)
            assert closed[0] == protocol.CloseCode.REPLACED
            # The newer connection, on server two, is now the cabinet's: a command reaches it.
            latest = compartment_unlock(compartment=compartment, actor=STAFF, reason="t")
            frame = protocol.decode_frame(newer.recv(timeout=30))
            assert frame["type"] == protocol.COMMAND
            assert frame["command"]["id"] == str(latest.pk)
    finally:
        fleet.stop()
    assert _faults(one) == [] and _faults(two) == []


def test_a_saturated_server_refuses_handshakes_with_503_and_a_hint_and_the_agents_retry_and_connect(
    tmp_path: Path,
) -> None:
    server = LiveServer(
        tmp_path / "uvicorn.log",
        env=live_env(
            LOG_LEVEL="WARNING",
            CABINET_HANDSHAKE_MAX_IN_FLIGHT="1",
            CABINET_ADMISSION_RETRY_S="1",
            CABINET_ADMISSION_RETRY_MAX_S="3",
        ),
    )
    server.start()
    # Forty cabinets at the same instant against one handshake at a time.
    fleet, issued = _fleet("ADM-", 40, server.ws_url, reconnect_spread=0.0, backoff_cap=60.0)
    try:
        fleet.start()
        eventually(
            lambda: fleet.connected() == len(issued),
            "every cabinet connected",
            logs=lambda: server.log_tail(40),
            within_s=120,
        )
        throttled = fleet.call(lambda: [(a.throttled, a.retry_after) for a in fleet.agents])
        last_closes = fleet.call(lambda: [a.last_close for a in fleet.agents])
    finally:
        fleet.stop()
        server.stop()
    assert sum(count for count, _ in throttled) > 0, "no handshake was refused"
    assert {hint for count, hint in throttled if count} <= {1.0, 2.0, 3.0}
    # Refused before the upgrade (HTTP 503), not accepted and closed with 4429.
    assert all(close is None for close in last_closes)
    assert _faults(server) == []
