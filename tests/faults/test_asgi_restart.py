"""The ASGI server (uvicorn) restarted under 1,000 connected cabinets: reference agents in
this process, a real uvicorn on the test database, Redis. Commands are issued before the
restart, while the server is down and while the fleet reconnects; each runs exactly once on
its agent (counted from the agents' own record of the locks they drove) and every cabinet
connects again."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cabinet_agent import protocol
from cabinets.models import CabinetCommand, CabinetMessage, CommandStatus, Compartment
from cabinets.services.commands import compartment_unlock
from cabinets.services.simulation import simulated_fleet_provision
from core.actors import Actor
from tests.live.fleet import AgentFleet, fleet_labels
from tests.live.server import LiveServer, live_env
from tests.live.wait import eventually

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
CABINETS = 1000
COMMANDS_PER_PHASE = 150
STAFF = Actor.system("fault test")


@pytest.fixture
def fleet_and_server(tmp_path: Path, settings) -> Iterator[tuple[AgentFleet, LiveServer]]:  # type: ignore[no-untyped-def]
    # Long enough to outlive the restart: this test is about delivery, not expiry.
    settings.CABINET_UNLOCK_TTL_S = 300
    issued = simulated_fleet_provision(prefix="RST-", count=CABINETS, create=True, actor=STAFF)
    server = LiveServer(
        tmp_path / "uvicorn.log",
        env=live_env(CABINET_RECEIPT_TIMEOUT_S="2", LOG_LEVEL="WARNING"),
    )
    server.start()
    fleet = AgentFleet(
        issued,
        url=server.ws_url,
        labels=fleet_labels(i.cabinet_id for i in issued),
        options={"reconnect_spread": 10.0},
    )
    try:
        fleet.start()
        yield fleet, server
    finally:
        fleet.stop()
        server.stop()


@pytest.mark.xfail(
    condition="postgres" in os.environ.get("DATABASE_URL", ""),
    strict=False,
    reason=(
        "open: on PostgreSQL (one run, on a busy machine) not every command had succeeded 120 s "
        "after the restart; passes on SQLite. Not yet diagnosed: stuck status or slow drain"
    ),
)
def test_a_restarted_asgi_server_loses_no_command_and_runs_none_twice_under_1000_cabinets(
    fleet_and_server,
) -> None:  # type: ignore[no-untyped-def]
    fleet, server = fleet_and_server
    rng = random.Random(20260101)
    compartments = list(Compartment.objects.filter(cabinet__serial__startswith="RST-"))

    def logs() -> str:
        return server.log_tail(40)

    def issue(count: int) -> list[str]:
        return [
            str(
                compartment_unlock(compartment=rng.choice(compartments), actor=STAFF, reason="t").pk
            )
            for _ in range(count)
        ]

    started = time.monotonic()
    eventually(lambda: fleet.connected() == CABINETS, "1,000 cabinets connected", logs=logs)
    connected_s = time.monotonic() - started
    before = issue(COMMANDS_PER_PHASE)
    server.stop()  # a deploy: uvicorn closes every socket (1012)
    eventually(lambda: fleet.connected() == 0, "every link closed", logs=logs)
    while_down = issue(COMMANDS_PER_PHASE)
    server.start()
    started = time.monotonic()
    reconnecting = issue(COMMANDS_PER_PHASE)
    issued = before + while_down + reconnecting

    eventually(
        lambda: fleet.connected() == CABINETS and min(fleet.sessions()) >= 2,
        "every cabinet connected again",
        logs=logs,
        within_s=120,
    )
    reconnected_s = time.monotonic() - started
    eventually(
        lambda: (
            CabinetCommand.objects.filter(pk__in=issued, status=CommandStatus.SUCCEEDED).count()
            == len(issued)
        ),
        "every command succeeded",
        logs=logs,
        within_s=120,
    )
    # Settled: nothing left to acknowledge on any agent, so no result is still on its way.
    eventually(lambda: fleet.queued() == 0, "every agent event acknowledged", logs=logs)

    runs = Counter(a.command_id for a in fleet.actuations())
    assert set(runs) == set(issued)
    assert [c for c, n in runs.items() if n > 1] == []
    assert fleet.unlock_counts() == len(issued)
    results = CabinetMessage.objects.filter(type=protocol.COMMAND_RESULT)
    assert results.count() == len(issued)
    print(
        f"\n{CABINETS} cabinets connected in {connected_s:.1f} s, {len(issued)} commands, "
        "every cabinet back within "
        f"{reconnected_s:.1f} s after the restart; runs per command: {set(runs.values())}"
    )
