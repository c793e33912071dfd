"""A cabinet connected through uvicorn with the reference agent in its own process, and a
watch on its presence: what the rotation tests and the door grid's browser test drive."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from cabinets.models import Cabinet
from cabinets.presence import presence_snapshot
from cabinets.services.credentials import IssuedCredential, cabinet_credential_issue
from cabinets.services.liveness import cabinets_alive
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


class PresenceWatch:
    """Reads the presence set in a thread, as fast as Redis answers, and applies the liveness
    rule to every reading (cabinets.services.liveness.cabinets_alive, what the liveness task
    folds into the database): `offline` lists each reading, (seconds since start, cabinet id),
    in which a watched cabinet would have been marked offline."""

    def __init__(self, cabinet_ids: Iterable[int]) -> None:
        self.cabinet_ids = set(cabinet_ids)
        self.readings = 0
        self.offline: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="presence-watch", daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            alive = cabinets_alive(presence_snapshot(), now=time.time())
            self.readings += 1
            at = round(time.monotonic() - started, 3)
            self.offline.extend((at, pk) for pk in sorted(self.cabinet_ids - alive.keys()))

    def __enter__(self) -> PresenceWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
