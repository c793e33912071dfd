"""Helpers for driving the cabinet consumer in tests (WebsocketCommunicator on config.asgi,
the real channels_redis layer): connect, send and receive frames, push what the services
push, and see how the server closes."""

from __future__ import annotations

import json
from typing import Any

from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from cabinet_agent import protocol
from cabinets.push import cabinet_group
from config.asgi import application


def communicator(credential: str | None, *, version: str | None = None) -> WebsocketCommunicator:
    headers = []
    if credential is not None:
        headers.append((b"authorization", protocol.authorization_header(credential).encode()))
    if version is not None:
        headers.append((protocol.PROTOCOL_HEADER.lower().encode(), version.encode()))
    return WebsocketCommunicator(application, protocol.WEBSOCKET_PATH, headers=headers)


async def receive(comm: WebsocketCommunicator, timeout: float = 5) -> dict[str, Any]:
    return json.loads(await comm.receive_from(timeout=timeout))


async def send(comm: WebsocketCommunicator, frame: dict[str, Any]) -> None:
    await comm.send_to(text_data=protocol.encode_frame(frame))


async def open_link(credential: str) -> tuple[WebsocketCommunicator, dict[str, Any]]:
    """An accepted link and its hello."""
    comm = communicator(credential)
    connected, _ = await comm.connect(timeout=5)
    assert connected
    hello = await receive(comm)
    assert hello["type"] == "hello"
    return comm, hello


async def still_open(comm: WebsocketCommunicator) -> None:
    """A good event is acknowledged: the link survived whatever came before. (Z99 is no
    compartment of the cabinet: the event is stored and acked, and changes no door.)"""
    event = protocol.make_door_event(compartment="Z99", event="closed", at=protocol.now_ms())
    await send(comm, event)
    assert await receive(comm) == {"type": "ack", "ref": event["id"]}


async def push(cabinet_id: int, message: dict[str, Any]) -> None:
    """What cabinets.services pushes to a cabinet's group after commit."""
    layer = get_channel_layer()
    assert layer is not None
    await layer.group_send(cabinet_group(cabinet_id), message)


async def closed_with(comm: WebsocketCommunicator, timeout: float = 5) -> int:
    """The code of the close the server sends next; any other output fails the test."""
    output = await comm.receive_output(timeout=timeout)
    assert output["type"] == "websocket.close", output
    return int(output["code"])


def telemetry(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "temperature_c": 21.5,
        "power": "mains",
        "battery_pct": None,
        "firmware_version": "1.2.0",
        "config_version": 7,
        "doors": {"A01": "closed"},
    }
    values.update(overrides)
    return protocol.make_telemetry(**values)
