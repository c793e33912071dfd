"""Many reference agents (cabinet_agent.CabinetAgent, simulated locks, in-memory queues) on
one event loop in a thread of the test process, as cabinets/management/commands/simulate_fleet
runs them, with a record of every lock they drove: the agents' own account of what ran, to
count double and late opens against."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cabinet_agent.agent import CabinetAgent
from cabinet_agent.config import AgentConfig
from cabinet_agent.drivers import SimulatedLockDriver
from cabinet_agent.outbox import Outbox
from cabinet_agent.protocol import Action
from cabinets.services.credentials import IssuedCredential


@dataclass(frozen=True)
class Actuation:
    """One time an agent drove a lock: for which command and door; when the agent accepted the
    command (the clock reading it verified the window with, from its own lock record) and when
    it drove the lock (its clock, ms); the window it accepted against (expires_at and the clock
    skew in force, the one the server's hello announced)."""

    command_id: str
    compartment: str
    accepted_at_ms: int
    driven_at_ms: int
    expires_at_ms: int
    max_clock_skew_ms: int

    @property
    def accepted_late_by_ms(self) -> int:
        """How far past its window the agent accepted the command; > 0 breaks protocol §7."""
        return self.accepted_at_ms - (self.expires_at_ms + self.max_clock_skew_ms)


class RecordingAgent(CabinetAgent):
    """The reference agent, unchanged, plus a list of the actions it drove."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.actuations: list[Actuation] = []

    async def _run_action(self, command: dict[str, Any]) -> Any:
        if command["action"] == Action.UNLOCK:
            # Claimed (and so accepted) just before this call, with no await in between: the
            # skew in force now is the one the window was checked with.
            record = self.outbox.executed_command(command["id"])
            assert record is not None, "an unlock driven without a claim"
            self.actuations.append(
                Actuation(
                    command_id=command["id"],
                    compartment=command["compartment"],
                    accepted_at_ms=record.claimed_ms,
                    driven_at_ms=self._clock(),
                    expires_at_ms=command["expires_at"],
                    max_clock_skew_ms=self.max_clock_skew_ms,
                )
            )
        return await super()._run_action(command)


@dataclass
class AgentFleet:
    """`start()` runs every agent; `call()` runs a function on the fleet's loop; `stop()`
    stops them cleanly. Built in the fleet's thread: each agent's SQLite queue belongs to the
    thread that opened it."""

    issued: list[IssuedCredential]
    url: str | Callable[[IssuedCredential], str]
    labels: dict[int, list[str]]
    options: dict[str, Any] = field(default_factory=dict)
    agents: list[RecordingAgent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agent-fleet", daemon=True)
        self._error: BaseException | None = None

    def _agent(self, issued: IssuedCredential) -> RecordingAgent:
        url = self.url(issued) if callable(self.url) else self.url
        values: dict[str, Any] = {
            "server_url": url,
            "serial": issued.serial,
            "credential": issued.credential,
            "signing_key": bytes.fromhex(issued.signing_key_hex),
            "compartments": tuple(sorted(self.labels[issued.cabinet_id])),
            "state_dir": Path("/nonexistent"),  # in-memory queue: never opened
            "firmware_version": "fault-1",
            # Generous: a thousand handshakes at once on two cores take time.
            "hello_timeout": 30.0,
            "ack_timeout": 3.0,
            "backoff_base": 0.5,
            "backoff_cap": 4.0,
            "reconnect_spread": 3.0,
            **self.options,
        }
        config = AgentConfig(**values)
        lock = SimulatedLockDriver(config.compartments, auto_close_after=None)
        return RecordingAgent(config, lock=lock, outbox=Outbox(":memory:"))

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        # A thousand agents logging every connect would cost more than they do (simulate_fleet
        # does the same).
        logging.getLogger("cabinet_agent").setLevel(logging.WARNING)
        try:
            self.agents = [self._agent(issued) for issued in self.issued]
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
            return
        self._tasks = [self.loop.create_task(agent.run()) for agent in self.agents]
        self._ready.set()
        # Runs until stop(): the loop outlives the agents so that what lives beside them (a
        # proxy) can be closed on it too.
        self.loop.run_forever()
        self.loop.close()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(60), "the fleet did not start"
        if self._error is not None:
            raise self._error

    def call(self, fn: Callable[[], Any], timeout: float = 60) -> Any:
        """fn() on the fleet's loop (agent state is only read and changed there)."""

        async def wrapped() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout=timeout)

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        """Await `coro` on the fleet's loop (a proxy that lives beside the agents)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def stop(self, *, then: Coroutine[Any, Any, Any] | None = None) -> None:
        """Stop every agent and wait for them; then await `then` (closing a proxy), then end
        the loop."""
        if not self._thread.is_alive():
            return

        async def finish() -> None:
            for agent in self.agents:
                agent.stop()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if then is not None:
                await then

        try:
            asyncio.run_coroutine_threadsafe(finish(), self.loop).result(timeout=90)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=30)

    # --- what the agents say --------------------------------------------------------------

    def connected(self) -> int:
        return int(self.call(lambda: sum(a.connected.is_set() for a in self.agents)))

    def sessions(self) -> list[int]:
        return list(self.call(lambda: [a.sessions for a in self.agents]))

    def actuations(self) -> list[Actuation]:
        return list(self.call(lambda: [x for a in self.agents for x in a.actuations]))

    def unlock_counts(self) -> int:
        """Unlocks counted by the simulated lock drivers themselves."""
        return int(
            self.call(lambda: sum(sum(a.lock.unlock_counts.values()) for a in self.agents))  # type: ignore[attr-defined]
        )

    def queued(self) -> int:
        """Events still waiting for an ack, over the fleet."""
        return int(self.call(lambda: sum(len(a.outbox) for a in self.agents)))


def fleet_labels(cabinet_ids: Iterable[int]) -> dict[int, list[str]]:
    from cabinets.models import Compartment

    labels: dict[int, list[str]] = {}
    for cabinet_id, label in Compartment.objects.filter(
        cabinet_id__in=list(cabinet_ids)
    ).values_list("cabinet_id", "label"):
        labels.setdefault(cabinet_id, []).append(label)
    return labels
