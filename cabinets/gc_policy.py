"""Garbage collection in an ASGI process that holds thousands of cabinet sockets.

CPython's full collection walks every tracked object that is not frozen. What a socket keeps
while it is open (its consumer, the ASGI server's protocol objects, tasks, queues: about 120
tracked objects each) lives for hours, so with 5,000 sockets in a process a full collection
walked some 600,000 objects and took up to 1.3 s, and a reconnect storm ran about a dozen of
them: every heartbeat, unlock and handshake of the process waited, and admission refused
handshakes because the event loop ran late (docs/benchmarks.md, "Garbage collection").

So the process freezes what has lived a while: every `CABINET_GC_FREEZE_S` seconds,
`gc.freeze()` moves every tracked object into the permanent generation, which no collection
walks (it costs no walk itself). An object that dies afterwards is still freed at once by
reference counting, which is how almost everything of a closed socket goes; only a garbage
cycle among frozen objects waits, until the thaw: every `CABINET_GC_THAW_S` seconds the
process unfreezes, runs one full collection and freezes again. That one pause is the price of
not paying a dozen of them in every storm; 0 turns the thaw off.

Started by the first handshake of each event loop (the loop is not running yet when the ASGI
application is imported), like admission's lateness watch.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass

from django.conf import settings

logger = logging.getLogger(__name__)


@dataclass
class GcPolicy:
    """One per process; its timers live on the loop that served the first handshake."""

    freezes: int = 0
    thaws: int = 0
    last_thaw_collected: int = 0
    last_thaw_s: float = 0.0
    _loop: asyncio.AbstractEventLoop | None = None

    def freeze_start_up(self) -> None:
        """Once the application is imported (config/asgi.py): everything imported so far
        (Django, the apps, their modules) lives as long as the process."""
        if settings.CABINET_ASGI_GC_FREEZE:
            gc.collect()
            gc.freeze()

    def watch(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._loop = loop
        if settings.CABINET_GC_FREEZE_S > 0:
            loop.call_later(settings.CABINET_GC_FREEZE_S, self._freeze)
        if settings.CABINET_GC_THAW_S > 0:
            loop.call_later(settings.CABINET_GC_THAW_S, self._thaw)

    def _freeze(self) -> None:
        gc.freeze()
        self.freezes += 1
        assert self._loop is not None
        self._loop.call_later(settings.CABINET_GC_FREEZE_S, self._freeze)

    def _thaw(self) -> None:
        started = time.perf_counter()
        gc.unfreeze()
        self.last_thaw_collected = gc.collect()
        gc.freeze()
        self.last_thaw_s = time.perf_counter() - started
        self.thaws += 1
        logger.info(
            "gc thaw: %d unreachable objects collected in %.0f ms",
            self.last_thaw_collected,
            self.last_thaw_s * 1000,
        )
        assert self._loop is not None
        self._loop.call_later(settings.CABINET_GC_THAW_S, self._thaw)


gc_policy = GcPolicy()
