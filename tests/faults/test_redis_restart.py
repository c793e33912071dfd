"""Redis restarted (killed, then started empty) while cabinets are connected: the channel
layer and presence live there. The agents reconnect with jitter, commands issued before and
during the outage are delivered or expire, none runs twice, and nothing stored in the
database is lost. Redis here is a server of this test's own on a free port."""

from __future__ import annotations

import random
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cabinet_agent import protocol
from cabinets.models import CabinetCommand, CabinetMessage, CommandStatus, Compartment
from cabinets.services.commands import commands_expire, compartment_unlock
from cabinets.services.simulation import simulated_fleet_provision
from core.actors import Actor
from tests.live.fleet import AgentFleet, fleet_labels
from tests.live.server import LiveServer, free_port, live_env
from tests.live.wait import eventually

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
CABINETS = 20
STAFF = Actor.system("fault test")


class OwnRedis:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not on PATH")
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.directory)],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        eventually(lambda: _pings(client), "our Redis to answer", within_s=30)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def own_redis(tmp_path: Path, settings) -> Iterator[OwnRedis]:  # type: ignore[no-untyped-def]
    server = OwnRedis(tmp_path)
    server.start()
    # This process pushes commands through the channel layer and reads presence: both on it.
    settings.REDIS_URL = server.url
    layers = {**settings.CHANNEL_LAYERS}
    layers["default"] = {
        **layers["default"],
        "CONFIG": {
            **layers["default"]["CONFIG"],
            "hosts": [{**layers["default"]["CONFIG"]["hosts"][0], "address": server.url}],
        },
    }
    settings.CHANNEL_LAYERS = layers
    try:
        yield server
    finally:
        server.kill()


def test_a_redis_restart_under_connected_cabinets_loses_nothing_and_runs_nothing_twice(
    own_redis, tmp_path, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.CABINET_UNLOCK_TTL_S = 20
    issued = simulated_fleet_provision(prefix="RDS-", count=CABINETS, create=True, actor=STAFF)
    server = LiveServer(
        tmp_path / "uvicorn.log",
        env=live_env(REDIS_URL=own_redis.url, CABINET_RECEIPT_TIMEOUT_S="1"),
    )
    server.start()
    fleet = AgentFleet(
        issued,
        url=server.ws_url,
        labels=fleet_labels(i.cabinet_id for i in issued),
        options={"reconnect_spread": 2.0, "backoff_cap": 3.0},
    )
    rng = random.Random(7)
    compartments = list(Compartment.objects.filter(cabinet__serial__startswith="RDS-"))

    def logs() -> str:
        return server.log_tail(60)

    def issue(count: int) -> list[str]:
        return [
            str(
                compartment_unlock(compartment=rng.choice(compartments), actor=STAFF, reason="t").pk
            )
            for _ in range(count)
        ]

    try:
        fleet.start()
        eventually(lambda: fleet.connected() == CABINETS, "the cabinets connected", logs=logs)
        before = issue(20)
        eventually(
            lambda: (
                CabinetCommand.objects.filter(pk__in=before, status=CommandStatus.SUCCEEDED).count()
                == len(before)
            ),
            "the first commands to succeed",
            logs=logs,
        )
        stored = CabinetMessage.objects.count()

        own_redis.kill()
        during = issue(20)  # stored; their pushes fail while Redis is away
        own_redis.start()  # empty: no groups, no presence, no link keys
        after = issue(20)
        issued_ids = before + during + after

        # Delivered (on a resend or a reconnect) or expired: every command ends final.
        eventually(
            lambda: (
                commands_expire() is not None
                and not CabinetCommand.objects.filter(pk__in=issued_ids)
                .exclude(status__in=[CommandStatus.SUCCEEDED, CommandStatus.EXPIRED])
                .exists()
            ),
            "every command succeeded or expired",
            logs=logs,
            within_s=120,
        )
        eventually(
            lambda: fleet.connected() == CABINETS and fleet.queued() == 0,
            "every cabinet connected with nothing left to send",
            logs=logs,
        )
        sessions = fleet.sessions()
        runs = Counter(a.command_id for a in fleet.actuations())
    finally:
        fleet.stop()
        server.stop()

    assert [c for c, n in runs.items() if n > 1] == []
    statuses = dict(CabinetCommand.objects.filter(pk__in=issued_ids).values_list("pk", "status"))
    succeeded = {str(pk) for pk, status in statuses.items() if status == CommandStatus.SUCCEEDED}
    # every door that opened is recorded as opened, and only those
    assert succeeded == set(runs)
    assert set(before) <= succeeded
    # nothing stored before the outage is gone, and every result is stored once
    assert CabinetMessage.objects.count() >= stored
    results = CabinetMessage.objects.filter(type=protocol.COMMAND_RESULT)
    assert results.count() == len(runs)
    print(
        f"\nRedis restart: {len(succeeded)} of {len(issued_ids)} commands succeeded, "
        f"{len(issued_ids) - len(succeeded)} expired; sessions per cabinet {Counter(sessions)}"
    )
