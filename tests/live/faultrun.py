"""A randomized fault run of the command path: reference agents -> FaultProxy -> a real
uvicorn -> database and Redis, with unlock commands issued throughout, some short-lived (they
expire, some of them only just: late results), and the expiry task running as beat would.

Counted once the run settles, from the agents' own record of the locks they drove and the
server's command rows:

- double opens: a lock driven twice for one command (one command is one authorisation here),
  or the simulated lock drivers counting more unlocks than the agents recorded;
- late opens: a command the agent accepted (by its own clock, the reading it verified the
  window with, kept in its lock record) after expires_at + the clock skew in force on it (the
  one the server announced in hello; fault_server_env() makes it the run's skew). When the
  lock then moved does not matter: protocol §7 promises acceptance, not actuation, within
  the window;
- lost commands: executed by an agent but not recorded succeeded/failed by the server, or
  never reaching a final status.

Used by tests/faults/test_command_path_faults.py and `python -m bench.faults`."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.test import override_settings

from cabinets.models import CabinetCommand, CommandStatus, Compartment
from cabinets.services.commands import command_issue, commands_expire
from cabinets.services.simulation import simulated_fleet_provision
from core.actors import Actor
from tests.live.faultproxy import FaultProxy, FaultRates
from tests.live.fleet import AgentFleet, fleet_labels
from tests.live.server import free_port

SEED_ENV = "FAULT_SEED"
FINAL = (
    CommandStatus.SUCCEEDED,
    CommandStatus.FAILED,
    CommandStatus.REJECTED,
    CommandStatus.EXPIRED,
)
ACTOR = Actor.system("fault run")
# The allowed clock skew of the run, on the server (hello, expiry) and so on the agents: small,
# so that "late" results and commands held past their expiry meet a tight window.
SKEW_MS = 2000


def fault_server_env(*, skew_ms: int = SKEW_MS) -> dict[str, str]:
    """What the uvicorn of a fault run needs beyond live_env(): the run's skew (announced in
    hello: the agents adopt it) and fast resends."""
    return {
        "CABINET_MAX_CLOCK_SKEW_MS": str(skew_ms),
        "CABINET_RECEIPT_TIMEOUT_S": "1",
        "LOG_LEVEL": "WARNING",
        # Persistent connections, as in production (a new one per database hop is what
        # makes a handshake storm slow on PostgreSQL).
        "DATABASE_CONN_MAX_AGE": "60",
    }


def fault_seed() -> int:
    """FAULT_SEED when set (to replay a failure), else a fresh one; always printed."""
    raw = os.environ.get(SEED_ENV)
    return int(raw) if raw else random.SystemRandom().randrange(1, 2**31)


@dataclass
class FaultReport:
    seed: int
    cabinets: int
    commands: int
    short_lived: int
    faults: dict[str, int]
    statuses: dict[str, int]
    executed: int
    double_opens: int
    late_opens: int
    lost: int
    # lost, by cause: executed but expired on the server (the known late-result defects), or
    # never final
    lost_executed_but_expired: int
    lost_not_final: int
    took_s: float
    # The clock skews the agents accepted commands under (announced by the server's hello)
    skews_in_force: set[int]
    # Agent clock from accepting a command to driving its lock, worst case (informational)
    max_accept_to_drive_ms: int
    details: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        return [
            f"fault run: seed {self.seed} (replay with {SEED_ENV}={self.seed})",
            f"  {self.cabinets} cabinets, {self.commands} unlock commands "
            f"({self.short_lived} short-lived), {self.executed} executed, {self.took_s:.0f} s",
            f"  faults injected: {faults} (total {sum(self.faults.values())})",
            f"  server statuses: {statuses}",
            f"  skew in force {sorted(self.skews_in_force)} ms, accepted-to-driven at most "
            f"{self.max_accept_to_drive_ms} ms",
            f"  double opens {self.double_opens}, late opens {self.late_opens}, "
            f"lost {self.lost} (executed but expired on the server "
            f"{self.lost_executed_but_expired}, never final {self.lost_not_final})",
            *(f"  ! {line}" for line in self.details[:20]),
        ]


def fault_run(
    *,
    server_ws_url: str,
    seed: int,
    cabinets: int = 50,
    commands: int = 1000,
    issue_per_s: float = 40.0,
    short_share: float = 0.2,
    short_ttl_s: int = 3,
    ttl_s: int = 15,
    skew_ms: int = SKEW_MS,
    rates: FaultRates | None = None,
    settle_s: float = 120.0,
    prefix: str = "FLT-",
    say: Callable[[str], None] = print,
) -> FaultReport:
    """Needs Django set up on the database `server_ws_url`'s server uses, and its Redis; that
    server started with fault_server_env(skew_ms=skew_ms)."""
    started = time.monotonic()
    rng = random.Random(seed)
    rates = rates or FaultRates(late=0.25, late_within_ms=skew_ms)
    issued = simulated_fleet_provision(prefix=prefix, count=cabinets, create=True, actor=ACTOR)
    compartments = list(
        Compartment.objects.filter(cabinet_id__in=[i.cabinet_id for i in issued]).select_related(
            "cabinet"
        )
    )
    port = free_port()
    proxy = FaultProxy(server_ws_url, rng=random.Random(rng.random()), rates=rates)
    fleet = AgentFleet(
        issued,
        url=f"ws://127.0.0.1:{port}/ws/cabinet/",
        labels=fleet_labels(i.cabinet_id for i in issued),
        options={
            "max_clock_skew_ms": skew_ms,
            "ack_timeout": 2.0,
            "reconnect_spread": 1.0,
            "backoff_base": 0.2,
            "backoff_cap": 2.0,
        },
    )
    fleet.start()
    expiring = threading.Event()
    expirer = threading.Thread(target=_expire_like_beat, args=(expiring,), daemon=True)
    # The expiry runs in this process: with the server's skew, not this process's setting.
    server_skew = override_settings(CABINET_MAX_CLOCK_SKEW_MS=skew_ms)
    server_skew.enable()
    ids: list[str] = []
    short = 0
    try:
        fleet.run(proxy.start(port))
        _wait(lambda: fleet.connected() >= cabinets * 0.9, 60, "the fleet to connect")
        expirer.start()
        interval = 1.0 / issue_per_s
        next_at = time.monotonic()
        for _ in range(commands):
            ttl = ttl_s
            if rng.random() < short_share:
                ttl, short = short_ttl_s, short + 1
            compartment = rng.choice(compartments)
            command = command_issue(
                cabinet=compartment.cabinet,
                compartment=compartment,
                action="unlock",
                actor=ACTOR,
                reason="fault run",
                ttl_s=ttl,
            )
            ids.append(str(command.pk))
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        say(f"  {commands} commands issued in {time.monotonic() - started:.0f} s; settling")
        # Settling: faults stop, every command's expiry plus skew passes, every agent event is
        # acknowledged and no command is still open.
        proxy.calm = True
        last_short_expiry = time.time() + short_ttl_s
        _wait(
            lambda: (
                time.time() > last_short_expiry + skew_ms / 1000 + 1
                and fleet.queued() == 0
                and not CabinetCommand.objects.filter(pk__in=ids).exclude(status__in=FINAL).exists()
            ),
            settle_s,
            "the run to settle",
            raise_on_timeout=False,
        )
    finally:
        expiring.set()
        if expirer.is_alive():
            expirer.join(timeout=30)
        server_skew.disable()
        faults = dict(proxy.faults)
        actuations = fleet.actuations()
        driver_unlocks = fleet.unlock_counts()
        fleet.stop(then=proxy.stop())
    return _count(
        seed=seed,
        cabinets=cabinets,
        ids=ids,
        short=short,
        faults=faults,
        actuations=actuations,
        driver_unlocks=driver_unlocks,
        skew_ms=skew_ms,
        took_s=time.monotonic() - started,
    )


def _count(
    *,
    seed: int,
    cabinets: int,
    ids: list[str],
    short: int,
    faults: dict[str, int],
    actuations: list[Any],
    driver_unlocks: int,
    skew_ms: int,
    took_s: float,
) -> FaultReport:
    status = dict(CabinetCommand.objects.filter(pk__in=ids).values_list("pk", "status"))
    status = {str(k): v for k, v in status.items()}
    runs = Counter(a.command_id for a in actuations)
    details = []
    double = sum(n - 1 for n in runs.values() if n > 1) + max(0, driver_unlocks - len(actuations))
    details += [f"command {c} driven {n} times" for c, n in runs.items() if n > 1]
    late = [a for a in actuations if a.accepted_late_by_ms > 0]
    details += [
        f"command {a.command_id} accepted {a.accepted_late_by_ms} ms after expires_at + "
        f"{a.max_clock_skew_ms} ms skew"
        for a in late
    ]
    # The window is judged with the skew each agent used; a different one than the run's means
    # the server announced something else, and the run did not test the window it meant to.
    details += [
        f"an agent accepted a command under a {n} ms skew, not the run's {skew_ms} ms"
        for n in sorted({a.max_clock_skew_ms for a in actuations} - {skew_ms})
    ]
    executed_but_expired = [
        c for c in runs if status.get(c) not in (CommandStatus.SUCCEEDED, CommandStatus.FAILED)
    ]
    not_final = [c for c in ids if status.get(c) not in FINAL and c not in runs]
    details += [f"command {c} executed, server says {status.get(c)}" for c in executed_but_expired]
    details += [f"command {c} never final ({status.get(c)})" for c in not_final]
    return FaultReport(
        seed=seed,
        cabinets=cabinets,
        commands=len(ids),
        short_lived=short,
        faults=faults,
        statuses=dict(Counter(status.values())),
        executed=len(runs),
        double_opens=double,
        late_opens=len(late),
        lost=len(executed_but_expired) + len(not_final),
        lost_executed_but_expired=sum(
            1 for c in executed_but_expired if status.get(c) == CommandStatus.EXPIRED
        ),
        lost_not_final=len(not_final)
        + sum(1 for c in executed_but_expired if status.get(c) != CommandStatus.EXPIRED),
        took_s=took_s,
        skews_in_force={a.max_clock_skew_ms for a in actuations},
        max_accept_to_drive_ms=max(
            (a.driven_at_ms - a.accepted_at_ms for a in actuations), default=0
        ),
        details=details,
    )


def _expire_like_beat(stop: threading.Event) -> None:
    """The beat's cabinets-expire-commands task, more often than every 10 s."""
    from django.db import close_old_connections

    try:
        while not stop.wait(1.0):
            commands_expire()
    finally:
        close_old_connections()


def _wait(
    condition: Callable[[], Any], within_s: float, what: str, *, raise_on_timeout: bool = True
) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            if raise_on_timeout:
                raise TimeoutError(f"gave up after {within_s:.0f} s waiting for {what}")
            return
        time.sleep(0.2)
