"""The cabinet end of the link: thin, async, authenticated before accept.

Protocol: docs/cabinet-protocol.md (cabinet_agent/protocol.py is its executable form)."""

from __future__ import annotations

import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from cabinet_agent import protocol
from cabinets import services
from cabinets.presence import presence_forget, presence_touch
from cabinets.push import cabinet_group
from cabinets.selectors import CabinetSession, cabinet_authenticate, commands_to_deliver

logger = logging.getLogger(__name__)

# Consecutive invalid frames after which the socket is closed (a broken or hostile client).
MAX_PROTOCOL_VIOLATIONS = 20


def _telemetry_digest(telemetry: dict[str, Any]) -> tuple[Any, ...]:
    # What makes a telemetry write worth it: doors, versions and power source, not the
    # temperature's last decimal.
    return (
        tuple(sorted((telemetry.get("doors") or {}).items())),
        telemetry.get("firmware_version"),
        telemetry.get("config_version"),
        telemetry.get("power"),
    )


class CabinetConsumer(AsyncWebsocketConsumer):
    session: CabinetSession | None = None

    async def connect(self) -> None:
        headers = dict(self.scope.get("headers") or [])
        raw = headers.get(b"authorization")
        auth = await database_sync_to_async(cabinet_authenticate)(
            raw.decode("latin-1") if raw else None
        )
        if auth.session is None:
            client = self.scope.get("client") or ("?", 0)
            logger.warning("cabinet link refused (%s) from %s", auth.reason, client[0])
            # Before accept, this refuses the handshake (HTTP 403): nothing is disclosed.
            await self.close()
            return
        self.session = auth.session
        self.replaced = False
        self.violations = 0
        self.telemetry_digest: tuple[Any, ...] | None = None
        self.telemetry_written_at = 0.0
        self.delivered: set[str] = set()
        group = cabinet_group(auth.session.cabinet_id)
        # A newer connection of the same cabinet wins; the older one is told and closes.
        await self.channel_layer.group_send(
            group, {"type": "link.replace", "by": self.channel_name}
        )
        await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await database_sync_to_async(services.cabinet_connected)(cabinet_id=auth.session.cabinet_id)
        await presence_touch(auth.session.cabinet_id)
        # Unacknowledged, unexpired commands are re-sent after the hello; the cabinet dedupes
        # by id, and so does this connection (a push may race the query).
        pending = await database_sync_to_async(commands_to_deliver)(auth.session)
        await self._send(
            protocol.make_hello(
                cabinet=auth.session.serial,
                server_time=protocol.now_ms(),
                heartbeat_interval=settings.CABINET_HEARTBEAT_INTERVAL_S,
            )
        )
        for frame in pending:
            await self._deliver(frame)

    async def disconnect(self, code: int) -> None:
        if self.session is None:
            return
        await self.channel_layer.group_discard(
            cabinet_group(self.session.cabinet_id), self.channel_name
        )
        if not self.replaced:
            await database_sync_to_async(services.cabinet_disconnected)(
                cabinet_id=self.session.cabinet_id
            )
            await presence_forget(self.session.cabinet_id)

    # --- frames from the cabinet ------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        assert self.session is not None
        try:
            frame = protocol.validate_cabinet_frame(
                protocol.decode_frame(text_data if text_data is not None else bytes_data or b"")
            )
        except protocol.ProtocolError as exc:
            await self._violation(exc.code, exc.message, ref=exc.ref)
            return
        self.violations = 0
        if frame["type"] == protocol.HEARTBEAT:
            await self._heartbeat(frame)
            return
        try:
            await database_sync_to_async(services.cabinet_message_handle)(
                cabinet_id=self.session.cabinet_id, frame=frame
            )
        except Exception:
            logger.exception("cabinet %s: could not store %s", self.session.serial, frame["type"])
            # Not acknowledged: the cabinet keeps the event and replays it.
            await self._send(
                protocol.make_error(
                    protocol.ErrorCode.RETRY_LATER, "could not store the event", ref=frame["id"]
                )
            )
            return
        await self._send(protocol.make_ack(frame["id"]))

    async def _heartbeat(self, frame: dict[str, Any]) -> None:
        assert self.session is not None
        await presence_touch(self.session.cabinet_id)
        telemetry = frame["telemetry"]
        digest = _telemetry_digest(telemetry)
        now = time.monotonic()
        if (
            digest != self.telemetry_digest
            or now - self.telemetry_written_at >= settings.CABINET_TELEMETRY_WRITE_INTERVAL_S
        ):
            await database_sync_to_async(services.cabinet_telemetry_record)(
                cabinet_id=self.session.cabinet_id, telemetry=telemetry
            )
            self.telemetry_digest, self.telemetry_written_at = digest, now

    async def _violation(self, code: str, message: str, *, ref: str | None) -> None:
        self.violations += 1
        await self._send(protocol.make_error(code, message, ref=ref))
        if self.violations >= MAX_PROTOCOL_VIOLATIONS:
            assert self.session is not None
            logger.warning("cabinet %s: closing after repeated invalid frames", self.session.serial)
            await self.close(code=protocol.CloseCode.PROTOCOL_VIOLATION)

    # --- messages from the platform (channel layer) --------------------------------------------

    async def command_deliver(self, message: dict[str, Any]) -> None:
        await self._deliver(message["frame"])

    async def link_send(self, message: dict[str, Any]) -> None:
        await self._send(message["frame"])

    async def link_replace(self, message: dict[str, Any]) -> None:
        if message["by"] != self.channel_name:
            self.replaced = True
            await self.close(code=protocol.CloseCode.REPLACED)

    async def link_revoke(self, message: dict[str, Any]) -> None:
        await self.close(code=protocol.CloseCode.REVOKED)

    async def _deliver(self, frame: dict[str, Any]) -> None:
        command_id = frame["command"]["id"]
        if command_id in self.delivered:
            return
        self.delivered.add(command_id)
        await self._send(frame)
        await database_sync_to_async(services.command_mark_sent)(command_id=command_id)

    async def _send(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=protocol.encode_frame(frame))
