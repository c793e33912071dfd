"""Credential rotation with overlap end to end (protocol §17): uvicorn serving config.asgi and
the reference agent in its own process. The agent is observed from outside: the server's
database, its SQLite state dir and the socket. Waits poll with a deadline."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from cabinet_agent import protocol
from cabinets.models import Cabinet, CabinetCredential, CommandStatus
from cabinets.presence import presence_snapshot
from cabinets.services.commands import compartment_unlock
from cabinets.services.credentials import cabinet_credentials_rotate
from core.actors import Actor
from tests.cabinets.connected import connected_cabinet
from tests.cabinets.test_link_integration import AgentProcess, eventually, wait_status
from tests.live.server import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
STAFF = Actor.system("test")


def stored_credential(agent: AgentProcess) -> str | None:
    """The credential the agent keeps in its state dir (None until one was delivered)."""
    if not agent.state_path.exists():
        return None
    db = sqlite3.connect(f"file:{agent.state_path}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute("SELECT value FROM state WHERE key = 'credential'").fetchone()
    finally:
        db.close()
    return None if row is None else json.loads(row[0])["credential"]


def handshake_status(url: str, credential: str) -> int | None:
    """The HTTP status refusing a handshake with `credential`; None if it was accepted."""

    async def attempt() -> int | None:
        try:
            async with connect(
                url,
                additional_headers={"Authorization": protocol.authorization_header(credential)},
                open_timeout=10,
            ):
                return None
        except InvalidStatus as exc:
            return int(exc.response.status_code)

    return asyncio.run(attempt())


@pytest.fixture
def online(asgi_server_process: LiveServer, tmp_path: Path) -> Iterator[tuple]:  # type: ignore[type-arg]
    with connected_cabinet(asgi_server_process, tmp_path, serial="SH-ROT-E2E") as linked:
        yield (*linked, asgi_server_process)


def test_the_cabinet_switches_to_its_new_credential_by_itself_and_the_old_is_refused(
    online,  # type: ignore[no-untyped-def]
) -> None:
    cabinet, old, agent, server = online
    old_key_id = old.credential.split(".", 1)[0]

    [started] = cabinet_credentials_rotate(cabinets=[cabinet], actor=STAFF)

    # Delivered over the open link, stored durably by the agent, used to reconnect: the
    # server then revokes the old one. Nobody touched the cabinet.
    new = eventually(
        lambda: (c := stored_credential(agent)) and c.startswith(f"{started.key_id}.") and c,
        what="the new credential in the agent's state dir",
        agent=agent,
        server=server,
    )
    eventually(
        lambda: CabinetCredential.objects.filter(
            key_id=old_key_id, revoked_reason="rotated", revoked_at__isnull=False
        ).exists(),
        what="the old credential revoked once the cabinet used the new one",
        agent=agent,
        server=server,
    )
    eventually(
        lambda: cabinet.pk in presence_snapshot(),
        what="the cabinet connected again",
        agent=agent,
        server=server,
    )
    assert handshake_status(server.ws_url, old.credential) == 403
    assert "credential rotated: reconnecting with the new one" in agent.log()

    # The cabinet is in service on the new link: a door opens (a command signed with the
    # new key, verified by the agent with the key it was given).
    command = compartment_unlock(
        compartment=Cabinet.objects.get(pk=cabinet.pk).compartments.get(label="A01"),
        actor=STAFF,
        reason="after rotation",
    )
    wait_status(command, CommandStatus.SUCCEEDED, agent, server)
    assert new.startswith(f"{started.key_id}.")


def test_a_restarted_agent_keeps_the_credential_it_was_given(online) -> None:  # type: ignore[no-untyped-def]
    cabinet, old, agent, server = online
    [started] = cabinet_credentials_rotate(cabinets=[cabinet], actor=STAFF)
    eventually(
        lambda: CabinetCredential.objects.filter(
            key_id=started.key_id, supersedes__revoked_at__isnull=False
        ).exists(),
        what="the rotation completed",
        agent=agent,
        server=server,
    )

    # The config file still holds the old, now revoked credential: the state dir wins.
    assert agent.stop() == 0
    agent.start()
    command = compartment_unlock(
        compartment=Cabinet.objects.get(pk=cabinet.pk).compartments.get(label="A02"),
        actor=STAFF,
        reason="after restart",
    )
    wait_status(command, CommandStatus.SUCCEEDED, agent, server)
    assert stored_credential(agent).startswith(f"{started.key_id}.")  # type: ignore[union-attr]
