"""The ASGI server (uvicorn) restarted under 1,000 connected cabinets: reference agents in
this process, a real uvicorn on the test database, Redis. Commands are issued before the
restart, while the server is down and while the fleet reconnects; each runs exactly once on
its agent (counted from the agents' own record of the locks they drove) and every cabinet
connects again."""

from __future__ import annotations

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
from tests.live.wait import eventually, progressing

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
        # Persistent connections, as in production: with a new PostgreSQL connection per
        # database hop, 1,000 handshakes at once did not all complete within 90 s on a
        # busy machine (py-spy: the consumer's pool threads in psycopg's connect).
        env=live_env(
            CABINET_RECEIPT_TIMEOUT_S="2", LOG_LEVEL="WARNING", DATABASE_CONN_MAX_AGE="60"
        ),
    )
    server.start()
    fleet = AgentFleet(
        issued,
        url=server.ws_url,
        labels=fleet_labels(i.cabinet_id for i in issued),
        # The agent's own backoff (1 s doubling to 60 s), not the fleet helper's fast 0.5-4 s:
        # on a busy machine a server behind on 1,000 handshakes fails some, and agents
        # retrying within 4 s fed it more handshakes than it completed (no progress for
        # minutes). A hello late by more than its timeout makes the agent give up and retry
        # too: generous.
        options={
            "reconnect_spread": 10.0,
            "hello_timeout": 120.0,
            "backoff_base": 1.0,
            "backoff_cap": 60.0,
        },
    )
    try:
        fleet.start()
        yield fleet, server
    finally:
        fleet.stop()
        server.stop()


def test_a_restarted_asgi_server_loses_no_command_and_runs_none_twice_under_1000_cabinets(
    fleet_and_server,
) -> None:  # type: ignore[no-untyped-def]
    fleet, server = fleet_and_server
    rng = random.Random(20260101)
    compartments = list(Compartment.objects.filter(cabinet__serial__startswith="RST-"))

    def logs() -> str:
        return f"{fleet.connected()} cabinets connected\n{server.log_tail(40)}"

    def unfinished() -> str:
        """What a stuck command looks like from both ends: its row, and the agent's record."""
        seen = fleet.call(
            lambda: {
                c: (a.config.serial, a.connected.is_set(), a.sessions)
                for a in fleet.agents
                for c in (*a.executed_commands, *a.duplicate_commands)
            }
        )
        rows = CabinetCommand.objects.filter(pk__in=issued).exclude(status=CommandStatus.SUCCEEDED)
        lines = [
            f"{c.pk} {c.cabinet.serial} {c.status} sent {c.send_count}x; agent: "
            f"{seen.get(str(c.pk), 'never ran it')}"
            for c in rows.select_related("cabinet")[:30]
        ]
        return "\n".join([f"{rows.count()} commands not succeeded:", *lines, logs()])

    def issue(count: int) -> list[str]:
        return [
            str(
                compartment_unlock(compartment=rng.choice(compartments), actor=STAFF, reason="t").pk
            )
            for _ in range(count)
        ]

    started = time.monotonic()
    progressing(fleet.connected, CABINETS, "cabinets connected", logs=logs)
    connected_s = time.monotonic() - started
    before = issue(COMMANDS_PER_PHASE)
    server.stop()  # a deploy: uvicorn closes every socket (1012)
    eventually(lambda: fleet.connected() == 0, "every link closed", logs=logs)
    while_down = issue(COMMANDS_PER_PHASE)
    server.start()
    started = time.monotonic()
    reconnecting = issue(COMMANDS_PER_PHASE)
    issued = before + while_down + reconnecting

    progressing(
        lambda: fleet.call(
            lambda: sum(a.connected.is_set() and a.sessions >= 2 for a in fleet.agents)
        ),
        CABINETS,
        "cabinets connected again",
        logs=logs,
    )
    reconnected_s = time.monotonic() - started
    progressing(
        lambda: CabinetCommand.objects.filter(
            pk__in=issued, status=CommandStatus.SUCCEEDED
        ).count(),
        len(issued),
        "commands succeeded",
        logs=unfinished,
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
