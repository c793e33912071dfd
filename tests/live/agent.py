"""The reference agent (cabinet_agent.CabinetAgent) in the test process: on its own event
loop in a thread, observed through its own state (results received, commands executed, the
simulated lock's unlock counts)."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from cabinet_agent.agent import CabinetAgent
from tests.identity.faces import FACES


class AgentThread:
    """The reference agent on its own event loop in a thread, driven from the test."""

    def __init__(self, config: Any, camera_file: Path) -> None:
        self.config = config
        self.camera_file = camera_file
        self.loop = asyncio.new_event_loop()
        self.created = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        # Built in its own thread: the agent's SQLite state belongs to the thread that opens it.
        self.agent = CabinetAgent(self.config)
        self.created.set()
        self.loop.run_until_complete(self.agent.run())

    def start(self) -> None:
        self.thread.start()
        assert self.created.wait(10)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async def wrapped() -> Any:
            result = fn(*args, **kwargs)
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout=30)

    def sees(self, photo: str) -> None:
        image = Image.open(FACES / photo).convert("RGB")
        image.thumbnail((640, 640))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=90)
        self.camera_file.write_bytes(out.getvalue())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.agent.stop)
        self.thread.join(timeout=30)
