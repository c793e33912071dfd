"""Admission control for cabinet handshakes, per ASGI process (docs/cabinet-protocol.md §11).

A reconnect storm (a deploy, a network coming back) brings the whole fleet at once. Accepting
every handshake makes each one slow (database, Redis and the event loop queue behind each
other) until clients time out and retry, which is worse. Instead a process lets at most
`CABINET_HANDSHAKE_MAX_IN_FLIGHT` handshakes run at a time, and none while its event loop runs
late by more than `CABINET_ADMISSION_MAX_LAG_S` (the loop also parses every upgrade request and
serves every socket: when it is late, everything is), and refuses the rest at once, before any
database or Redis work, with a hint of when to come back. The hint follows the
queue: the cabinets refused in the last few seconds over the handshakes this process
completes per second is how long the waiting fleet needs, and a random spread on top keeps
them from coming back together.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from dataclasses import dataclass, field

from django.conf import settings

# The window over which refusals and completions are counted for the hint.
WINDOW_S = 10.0
# How often the event loop's lateness is sampled.
LAG_TICK_S = 0.1


@dataclass
class HandshakeAdmission:
    """Counts in one process (one event loop: no lock needed)."""

    in_flight: int = 0
    refused_total: int = 0
    _refused: deque[float] = field(default_factory=deque)
    _completed: deque[float] = field(default_factory=deque)
    _rng: random.Random = field(default_factory=random.Random)
    lag_s: float = 0.0  # how late the loop ran at its last sample
    _watched: asyncio.AbstractEventLoop | None = None

    def try_enter(self) -> bool:
        self._watch()
        max_lag = settings.CABINET_ADMISSION_MAX_LAG_S
        if self.in_flight >= settings.CABINET_HANDSHAKE_MAX_IN_FLIGHT or (
            max_lag > 0 and self.lag_s > max_lag
        ):
            now = time.monotonic()
            self._refused.append(now)
            self.refused_total += 1
            self._trim(self._refused, now)
            return False
        self.in_flight += 1
        return True

    def leave(self, *, completed: bool) -> None:
        self.in_flight -= 1
        if completed:
            now = time.monotonic()
            self._completed.append(now)
            self._trim(self._completed, now)

    def retry_after_s(self) -> int:
        """Whole seconds (an HTTP `Retry-After`): about the time this process needs for the
        cabinets waiting, jittered by ±50%, within CABINET_ADMISSION_RETRY_S and
        CABINET_ADMISSION_RETRY_MAX_S."""
        now = time.monotonic()
        self._trim(self._refused, now)
        self._trim(self._completed, now)
        # Before any handshake completed, assume each slot turns over once a second.
        limit = settings.CABINET_HANDSHAKE_MAX_IN_FLIGHT
        rate = max(len(self._completed) / WINDOW_S, float(limit), 1.0)
        floor = settings.CABINET_ADMISSION_RETRY_S
        ceiling = settings.CABINET_ADMISSION_RETRY_MAX_S
        needed = len(self._refused) / rate * self._rng.uniform(0.5, 1.5)
        return int(min(max(math.ceil(needed), floor), ceiling))

    def _watch(self) -> None:
        """Sample the running loop's lateness from now on (one timer per loop, not a task)."""
        loop = asyncio.get_running_loop()
        if self._watched is loop:
            return
        self._watched, self.lag_s = loop, 0.0
        due = loop.time() + LAG_TICK_S

        def tick() -> None:
            nonlocal due
            now = loop.time()
            self.lag_s = max(0.0, now - due)
            due = now + LAG_TICK_S
            loop.call_at(due, tick)

        loop.call_at(due, tick)

    @staticmethod
    def _trim(times: deque[float], now: float) -> None:
        while times and times[0] < now - WINDOW_S:
            times.popleft()


admission = HandshakeAdmission()
