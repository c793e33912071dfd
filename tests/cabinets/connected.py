"""A cabinet connected through uvicorn with the reference agent in its own process: what the
rotation tests and the door grid's browser test drive."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from cabinets.models import Cabinet
from cabinets.presence import presence_snapshot
from cabinets.services.credentials import IssuedCredential, cabinet_credential_issue
from core.actors import Actor
from tests.cabinets.test_link_integration import AgentProcess, eventually
from tests.factories import CabinetFactory, CompartmentFactory
from tests.live.server import LiveServer


@contextlib.contextmanager
def connected_cabinet(
    server: LiveServer,
    directory: Path,
    *,
    serial: str,
    auto_close_after: float | None = 2.0,
) -> Iterator[tuple[Cabinet, IssuedCredential, AgentProcess]]:
    """A cabinet with doors A01 and A02 whose agent is connected; `auto_close_after` as in
    AgentProcess (None: an opened door stays open). The agent keeps its files in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    cabinet = CabinetFactory(serial=serial)
    CompartmentFactory(cabinet=cabinet, label="A01")
    CompartmentFactory(cabinet=cabinet, label="A02")
    issued = cabinet_credential_issue(cabinet=cabinet, actor=Actor.system("test"))
    agent = AgentProcess(
        directory, url=server.ws_url, issued=issued, auto_close_after=auto_close_after
    )
    agent.start()
    try:
        eventually(
            lambda: cabinet.pk in presence_snapshot(),
            what="the cabinet connected",
            agent=agent,
            server=server,
        )
        yield cabinet, issued, agent
    finally:
        assert agent.stop() == 0, agent.log()[-4000:]
