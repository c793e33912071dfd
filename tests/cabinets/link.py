"""Helpers for driving the cabinet consumer in tests."""

from __future__ import annotations

import json
from typing import Any

from channels.testing import WebsocketCommunicator

from cabinet_agent import protocol
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
