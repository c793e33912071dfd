"""A small platform stand-in: authenticates like the real consumer, greets, records, acks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from cabinet_agent import protocol

SERIAL = "CAB-0001"
CREDENTIAL = "k3y1d0001.c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
SIGNING_KEY = bytes(range(32, 64))


class FakePlatform:
    def __init__(
        self,
        *,
        auto_ack: bool = True,
        heartbeat_interval: int = 30,
        max_clock_skew_ms: int | None = None,
    ) -> None:
        self.auto_ack = auto_ack
        self.heartbeat_interval = heartbeat_interval
        self.max_clock_skew_ms = max_clock_skew_ms
        self.secret_hash = protocol.hash_secret(CREDENTIAL.split(".", 1)[1])
        # key id -> secret hash of every credential accepted (two during a rotation)
        self.accepted: dict[str, str] = {CREDENTIAL.split(".")[0]: self.secret_hash}
        self.requests: list[Request] = []
        self.received: list[dict[str, Any]] = []
        # event id -> error code: answered with that error instead of an ack
        self.refusals: dict[str, str] = {}
        self.sessions = 0
        self.port = 0
        self._server: Server | None = None
        self._ws: ServerConnection | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{protocol.WEBSOCKET_PATH}"

    async def start(self) -> None:
        self._server = await serve(
            self._handler, "127.0.0.1", self.port, process_request=self._authenticate
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        self._server = None

    def _authenticate(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        parsed = protocol.parse_credential(request.headers.get("Authorization"))
        if parsed is None or parsed[0] not in self.accepted:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "bad credential\n")
        if not protocol.secret_matches(parsed[1], self.accepted[parsed[0]]):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "bad credential\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        self._ws = ws
        self.sessions += 1
        hello = protocol.make_hello(
            cabinet=SERIAL,
            server_time=protocol.now_ms(),
            heartbeat_interval=self.heartbeat_interval,
            max_clock_skew_ms=self.max_clock_skew_ms,
        )
        await ws.send(protocol.encode_frame(hello))
        try:
            async for raw in ws:
                frame = protocol.validate_cabinet_frame(protocol.decode_frame(raw))
                self.received.append(frame)
                refusal = self.refusals.get(frame.get("id", ""))
                if refusal is not None:
                    error = protocol.make_error(refusal, "refused by the test", ref=frame["id"])
                    await ws.send(protocol.encode_frame(error))
                elif self.auto_ack and frame["type"] in protocol.CABINET_EVENT_TYPES:
                    await ws.send(protocol.encode_frame(protocol.make_ack(frame["id"])))
        except ConnectionClosed:
            pass

    async def send(self, frame: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send(protocol.encode_frame(frame))

    async def close(self, code: int) -> None:
        assert self._ws is not None
        await self._ws.close(code)

    def accept(self, credential: str) -> None:
        key_id, secret = credential.split(".", 1)
        self.accepted[key_id] = protocol.hash_secret(secret)

    def credential_used(self) -> str | None:
        """The credential of the last handshake."""
        parsed = protocol.parse_credential(self.requests[-1].headers.get("Authorization"))
        return None if parsed is None else ".".join(parsed)

    async def ack(self, event_id: str) -> None:
        await self.send(protocol.make_ack(event_id))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [frame for frame in self.received if frame["type"] == kind]

    async def wait_for(self, predicate: Callable[[], Any], *, timeout: float = 20.0) -> Any:
        return await eventually(predicate, timeout=timeout)


async def eventually(predicate: Callable[[], Any], *, timeout: float = 20.0) -> Any:
    """Poll until true; the deadline is generous so that a busy machine only makes it slower."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def signed_command(
    *,
    action: str = protocol.Action.UNLOCK,
    compartment: str | None = "A01",
    payload: dict[str, Any] | None = None,
    issued_at: int | None = None,
    ttl_ms: int = 120_000,
    cabinet: str = SERIAL,
    key: bytes = SIGNING_KEY,
) -> dict[str, Any]:
    command = protocol.make_command(
        cabinet=cabinet,
        action=action,
        compartment=compartment,
        payload=payload,
        issued_at=protocol.now_ms() if issued_at is None else issued_at,
        ttl_ms=ttl_ms,
    )
    return protocol.make_command_frame(key, command)
