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
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from cabinet_agent import protocol
from cabinets.gc_policy import gc_policy

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

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


@dataclass
class AdmissionTicket:
    """One admitted handshake's place in `in_flight`, given back once: by the consumer when its
    handshake ended, or by the gate when the socket ended before that."""

    left: bool = False

    def leave(self, *, completed: bool) -> None:
        if not self.left:
            self.left = True
            admission.leave(completed=completed)


SCOPE_KEY = "cabinet.admission"


def admission_ticket(scope: dict[str, Any]) -> AdmissionTicket:
    """The ticket the gate put in the scope (a spent one where no gate ran, e.g. a test
    mounting the consumer alone)."""
    ticket = scope.get(SCOPE_KEY)
    return ticket if isinstance(ticket, AdmissionTicket) else AdmissionTicket(left=True)


# Set, in the handshake's own task, once it was refused with a denial response.
_denied: ContextVar[bool] = ContextVar("cabinet_handshake_denied", default=False)
SPURIOUS_DENIAL_ERROR = "ASGI callable returned without completing handshake."


class SpuriousDenialError(logging.Filter):
    """uvicorn's websockets-sansio logs `ASGI callable returned without completing
    handshake.` at ERROR after every denial response, though the response went out (it never
    marks such a handshake complete; uvicorn PR 3138, open): a reconnect storm wrote 13,776
    of them. This drops that line only for a handshake this gate refused (the flag is set in
    the task that runs the application, which is the one that logs it), so an application
    that really returns without answering is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_denied.get() and record.getMessage() == SPURIOUS_DENIAL_ERROR)


def admission_log_filter_install() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, SpuriousDenialError) for f in logger.filters):
        logger.addFilter(SpuriousDenialError())


def admission_busy_reason(retry_after: int | None = None) -> str:
    """The close reason of a busy refusal sent over an accepted link (close 4429, protocol
    §1): `retry-after=N`."""
    seconds = admission.retry_after_s() if retry_after is None else retry_after
    return f"{protocol.RETRY_AFTER_REASON_PREFIX}{seconds}"


async def admission_refuse(scope: dict[str, Any], send: Send) -> None:
    """Refuse a cabinet's handshake as busy, with a retry hint (protocol §11): HTTP 503 and
    `Retry-After` through the ASGI denial-response extension (uvicorn), else accept and close
    4429 with `retry-after=N` (a close before accept would be a bare 403, which says nothing
    about load)."""
    retry_after = admission.retry_after_s()
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": protocol.ADMISSION_HTTP_STATUS,
                "headers": [
                    (protocol.RETRY_AFTER_HEADER.lower().encode(), str(retry_after).encode()),
                    (b"content-type", b"text/plain"),
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"busy\n"})
        _denied.set(True)
        return
    await send({"type": "websocket.accept"})
    await send(
        {
            "type": "websocket.close",
            "code": protocol.CloseCode.TRY_AGAIN_LATER,
            "reason": admission_busy_reason(retry_after),
        }
    )


class AdmissionGate:
    """ASGI middleware in front of the cabinet link's router: a handshake the process cannot
    take now is refused here, before Channels makes a consumer for it (a consumer starts a
    channel-layer receive on Redis and two tasks, and in a storm most handshakes are refused:
    py-spy, docs/benchmarks.md). An admitted one carries its ticket in the scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        gc_policy.watch()
        if not admission.try_enter():
            message = await receive()
            if message["type"] == "websocket.connect":
                await admission_refuse(scope, send)
            return
        ticket = AdmissionTicket()
        try:
            await self.app({**scope, SCOPE_KEY: ticket}, receive, send)
        finally:
            ticket.leave(completed=False)  # the socket ended during its handshake
