"""The one way to push something to a connected cabinet: through the channel layer, after
the transaction that decided it has committed."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

# How long a push from sync code waits for Redis before it is given up (and logged): the
# command row is the truth, an undelivered command is re-sent on reconnect.
PUSH_TIMEOUT_S = 10.0


def cabinet_group(cabinet_id: int) -> str:
    return f"cabinet.{cabinet_id}"


class PushLoop:
    """One event loop per process, in a daemon thread, for pushes from sync code (a Celery
    task, a management command, a thread of the ASGI process's pool).

    `async_to_sync` from a thread with no event loop of its own makes a new loop for every
    call, and channels_redis keeps its Redis connections per loop: every push paid a new
    connection (in bench/fleet.py, unlocks issued from a worker-like process took twice as
    long, 28 ms against 14 ms at the median). This loop lives as long as the process and keeps
    its connections. Made on first use in each process (a forked Celery child makes its own).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid: int | None = None

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=loop.run_forever, name="cabinet-push-loop", daemon=True
                ).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def run(
        self, make: Callable[[], Awaitable[Any]], *, timeout: float | None = PUSH_TIMEOUT_S
    ) -> Any:
        async def call() -> Any:
            return await make()

        future = asyncio.run_coroutine_threadsafe(call(), self._running())
        return future.result(timeout)


push_loop = PushLoop()


def _layer() -> Any:
    layer = get_channel_layer()
    if layer is None:  # pragma: no cover - a misconfiguration, surfaced loudly
        raise RuntimeError("CHANNEL_LAYERS is not configured")
    return layer


def push_now(cabinet_id: int, message: dict[str, Any]) -> None:
    layer = _layer()
    try:
        push_loop.run(lambda: layer.group_send(cabinet_group(cabinet_id), message))
    except Exception:
        # The database row is the truth: an undelivered command is re-sent on reconnect.
        logger.exception("push to cabinet %s failed", cabinet_id)


def push_after_commit(cabinet_id: int, message: dict[str, Any]) -> None:
    # A cabinet must never act on a decision that was rolled back.
    transaction.on_commit(lambda: push_now(cabinet_id, message))


def push_many_after_commit(messages: Mapping[int, dict[str, Any]]) -> None:
    """A message to each of many cabinets (cabinet id -> its message), concurrently (a bulk
    rotation of thousands)."""
    ids = list(messages)

    async def send_all() -> None:
        layer = _layer()
        results = await asyncio.gather(
            *(layer.group_send(cabinet_group(pk), messages[pk]) for pk in ids),
            return_exceptions=True,
        )
        failed = sum(isinstance(result, Exception) for result in results)
        if failed:
            logger.error("push to %d of %d cabinets failed", failed, len(ids))

    if ids:
        # No deadline of its own: thousands of sends, each bounded by the layer's pool timeout.
        transaction.on_commit(lambda: push_loop.run(send_all, timeout=None))
