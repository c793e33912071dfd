"""Hardware seams: the lock controller and the environment sensors, with in-memory simulators."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .protocol import DoorEvent, DoorState, Power

DoorEventSink = Callable[[str, DoorEvent], None]


class LockDriver(Protocol):
    async def unlock(self, label: str) -> bool:
        """Release the latch of one compartment; True if the controller reports it released.

        The agent reports the resulting `opened` door event itself, after the command result,
        so the sink must not be called for the opening caused by this call.
        """
        ...

    def door_state(self, label: str) -> str:
        """The door sensor reading: "open", "closed" or "fault"."""
        ...

    def set_event_sink(self, sink: DoorEventSink | None) -> None:
        """Register the callback for spontaneous door changes (closed, forced, fault)."""
        ...


class Sensors(Protocol):
    def read(self) -> dict[str, Any]:
        """Return temperature_c (float or None), power ("mains"/"battery"), battery_pct."""
        ...


@dataclass
class SimulatedSensors:
    temperature_c: float | None = 21.5
    power: Power = Power.MAINS
    battery_pct: int | None = 100

    def read(self) -> dict[str, Any]:
        return {
            "temperature_c": self.temperature_c,
            "power": self.power,
            "battery_pct": self.battery_pct,
        }


class SimulatedLockDriver:
    """In-memory doors. `jammed` compartments refuse to unlock; `faulty` ones read "fault"."""

    def __init__(
        self,
        labels: Iterable[str],
        *,
        auto_close_after: float | None = None,
        jammed: Iterable[str] = (),
        faulty: Iterable[str] = (),
        unlock_delay: float = 0.0,
    ) -> None:
        self.doors: dict[str, DoorState] = {label: DoorState.CLOSED for label in labels}
        self.unlock_counts: Counter[str] = Counter()
        self.auto_close_after = auto_close_after
        self.jammed: set[str] = set(jammed)
        self.faulty: set[str] = set(faulty)
        self.unlock_delay = unlock_delay
        self._sink: DoorEventSink | None = None
        self._timers: dict[str, asyncio.Task[None]] = {}

    def set_event_sink(self, sink: DoorEventSink | None) -> None:
        self._sink = sink

    async def unlock(self, label: str) -> bool:
        if label not in self.doors:
            return False
        self.unlock_counts[label] += 1
        if self.unlock_delay:
            await asyncio.sleep(self.unlock_delay)
        if label in self.jammed or label in self.faulty:
            return False
        self.doors[label] = DoorState.OPEN
        if self.auto_close_after is not None:
            self._cancel_timer(label)
            self._timers[label] = asyncio.get_running_loop().create_task(self._auto_close(label))
        return True

    def door_state(self, label: str) -> str:
        if label in self.faulty:
            return DoorState.FAULT
        return self.doors.get(label, DoorState.FAULT)

    # Simulated physical actions, used by tests and demos.

    def close_door(self, label: str) -> None:
        self._cancel_timer(label)
        if self.doors.get(label) == DoorState.OPEN:
            self.doors[label] = DoorState.CLOSED
            self._emit(label, DoorEvent.CLOSED)

    def force_door(self, label: str) -> None:
        if self.doors.get(label) == DoorState.CLOSED:
            self.doors[label] = DoorState.OPEN
            self._emit(label, DoorEvent.FORCED)

    def break_door(self, label: str) -> None:
        self.faulty.add(label)
        self._emit(label, DoorEvent.FAULT)

    def close(self) -> None:
        for label in list(self._timers):
            self._cancel_timer(label)

    async def _auto_close(self, label: str) -> None:
        assert self.auto_close_after is not None
        await asyncio.sleep(self.auto_close_after)
        self._timers.pop(label, None)
        if self.doors.get(label) == DoorState.OPEN:
            self.doors[label] = DoorState.CLOSED
            self._emit(label, DoorEvent.CLOSED)

    def _cancel_timer(self, label: str) -> None:
        timer = self._timers.pop(label, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    def _emit(self, label: str, event: DoorEvent) -> None:
        if self._sink is not None:
            self._sink(label, event)
