"""A fault-injecting websocket proxy between reference agents and the real server.

Each agent connection gets its own upstream connection (same `Authorization` and
`Cabinet-Protocol` headers). Every frame after the server's `hello` may be dropped,
duplicated or delayed (delays reorder frames), in both directions; a connection is cut at a
random moment (no close frame: the agent sees 1006) so that agents reconnect; and a command
may be held until just after its expiry ("late": the agent may still accept it within its
clock skew, and its result reaches the server after the server's expiry). Decisions come
from one seeded `random.Random`; timing does not, so a seed replays the same mix of faults,
not the same interleaving."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.http11 import Request, Response

from cabinet_agent import protocol


@dataclass
class FaultRates:
    drop: float = 0.03
    duplicate: float = 0.03
    delay: float = 0.05
    max_delay_s: float = 1.5
    late: float = 0.0  # share of commands held until just after expires_at
    late_within_ms: int = 0  # how far past expires_at a held command goes
    cut_after_s: tuple[float, float] = (3.0, 15.0)


class FaultProxy:
    def __init__(self, upstream_url: str, *, rng: random.Random, rates: FaultRates) -> None:
        self.upstream_url = upstream_url
        self.rng = rng
        self.rates = rates
        self.faults: Counter[str] = Counter()
        self.calm = False  # no more faults: the run settles
        self._upstreams: dict[int, ClientConnection] = {}
        self._held: dict[str, float] = {}  # command id -> hold until (unix s), or 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: Server | None = None

    async def start(self, port: int) -> None:
        self._server = await serve(
            self._relay,
            "127.0.0.1",
            port,
            process_request=self._open_upstream,
            compression=None,
            max_size=protocol.MAX_FRAME_BYTES,
            ping_interval=None,
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 10)
        for task in list(self._tasks):
            task.cancel()

    async def _open_upstream(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        headers = {
            name: request.headers[name]
            for name in ("Authorization", protocol.PROTOCOL_HEADER)
            if name in request.headers
        }
        try:
            upstream = await connect(
                self.upstream_url,
                additional_headers=headers,
                compression=None,
                open_timeout=30,
                max_size=protocol.MAX_FRAME_BYTES,
                ping_interval=None,
            )
        except InvalidStatus as exc:
            return connection.respond(exc.response.status_code, "refused upstream\n")
        except (OSError, TimeoutError, WebSocketException):
            return connection.respond(502, "upstream unreachable\n")
        self._upstreams[id(connection)] = upstream
        return None

    async def _relay(self, client: ServerConnection) -> None:
        upstream = self._upstreams.pop(id(client))
        pumps = [
            asyncio.create_task(self._pump(upstream, client, "down")),
            asyncio.create_task(self._pump(client, upstream, "up")),
        ]
        cutter = asyncio.create_task(asyncio.sleep(self.rng.uniform(*self.rates.cut_after_s)))
        try:
            done, _ = await asyncio.wait([*pumps, cutter], return_when=asyncio.FIRST_COMPLETED)
            if cutter in done and not self.calm:
                self.faults["cut"] += 1
                client.transport.abort()  # no close frame: the agent sees 1006
            elif cutter in done:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (*pumps, cutter):
                task.cancel()
            with contextlib.suppress(Exception):
                await upstream.close()
            with contextlib.suppress(Exception):
                await client.close()

    async def _pump(self, source: Any, target: Any, direction: str) -> None:
        first = direction == "down"  # the server's hello passes untouched
        with contextlib.suppress(ConnectionClosed):
            async for raw in source:
                if first:
                    first = False
                    await target.send(raw)
                    continue
                self._forward(raw, target, direction)

    def _forward(self, raw: str | bytes, target: Any, direction: str) -> None:
        if self.calm:
            self._later(target, raw, 0.0)
            return
        rates = self.rates
        hold = self._late_hold(raw) if direction == "down" else 0.0
        if hold:
            self.faults["late_down"] += 1
            self._later(target, raw, hold)
            return
        roll = self.rng.random()
        if roll < rates.drop:
            self.faults[f"drop_{direction}"] += 1
        elif roll < rates.drop + rates.duplicate:
            self.faults[f"duplicate_{direction}"] += 1
            self._later(target, raw, 0.0)
            self._later(target, raw, self.rng.uniform(0, rates.max_delay_s))
        elif roll < rates.drop + rates.duplicate + rates.delay:
            self.faults[f"delay_{direction}"] += 1
            self._later(target, raw, self.rng.uniform(0, rates.max_delay_s))
        else:
            self._later(target, raw, 0.0)

    def _late_hold(self, raw: str | bytes) -> float:
        """Seconds to hold a command frame: every copy of a chosen command waits until a
        moment just past its expiry."""
        if not self.rates.late or b'"command"' not in (
            raw if isinstance(raw, bytes) else raw.encode()
        ):
            return 0.0
        frame = json.loads(raw)
        if frame.get("type") != protocol.COMMAND:
            return 0.0
        command = frame["command"]
        until = self._held.get(command["id"])
        if until is None:
            late = self.rng.random() < self.rates.late
            offset_ms = self.rng.uniform(0, self.rates.late_within_ms)
            until = (command["expires_at"] + offset_ms) / 1000 if late else 0.0
            self._held[command["id"]] = until
        return max(0.0, until - time.time()) if until else 0.0

    def _later(self, target: Any, raw: str | bytes, delay: float) -> None:
        async def send() -> None:
            if delay:
                await asyncio.sleep(delay)
            with contextlib.suppress(ConnectionClosed):
                await target.send(raw)

        # Immediate sends go in order too: each is its own task, started in arrival order,
        # and a websocket send that does not wait keeps that order.
        task = asyncio.create_task(send())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
