"""The cabinet end of the link: thin, async, authenticated before accept.

Protocol: docs/cabinet-protocol.md (cabinet_agent/protocol.py is its executable form)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from cabinet_agent import protocol
from cabinets.admission import admission_busy_reason, admission_refuse, admission_ticket
from cabinets.presence import presence_claim, presence_release, presence_touch
from cabinets.push import cabinet_group
from cabinets.selectors import (
    CabinetSession,
    cabinet_authenticate_on_loop,
    link_backlog_on_loop,
)
from cabinets.services.commands import command_mark_sent
from cabinets.services.credentials import cabinet_credential_rotation_complete
from cabinets.services.liveness import cabinet_telemetry_record
from cabinets.services.messages import cabinet_message_handle
from core.loop_reads import on_pool_thread

logger = logging.getLogger(__name__)


# Services from async code: on the thread pool, each call its own transaction.
db = on_pool_thread


# Protocol §12: one bad frame is answered, not punished; more than this many within the
# window close the socket with 4400 (a broken or hostile client).
MAX_BAD_FRAMES = 10
BAD_FRAME_WINDOW_S = 60.0
# Protocol §9: no frame at all for this many heartbeat intervals closes the socket with 4408.
SILENT_HEARTBEATS = 3
# Frames that prove a command reached the cabinet (protocol §8).
COMMAND_ACKNOWLEDGEMENTS = frozenset(
    {protocol.COMMAND_RECEIPT, protocol.COMMAND_RESULT, protocol.COMMAND_REJECTED}
)


def _telemetry_digest(telemetry: dict[str, Any]) -> int:
    # What makes a telemetry write worth it: doors, versions and power source, not the
    # temperature's last decimal. Kept per socket as a hash, not as the tuple.
    digest = (
        sorted((telemetry.get("doors") or {}).items()),
        telemetry.get("firmware_version"),
        telemetry.get("config_version"),
        telemetry.get("power"),
    )
    return hash(repr(digest))


def supported_protocol(headers: dict[bytes, bytes]) -> bool:
    """`Cabinet-Protocol` may list several versions; a missing header means version 1."""
    raw = headers.get(protocol.PROTOCOL_HEADER.lower().encode())
    if raw is None:
        return True
    offered = {part.strip() for part in raw.decode("latin-1").split(",")}
    return str(protocol.PROTOCOL_VERSION) in offered


class CabinetConsumer(AsyncWebsocketConsumer):
    session: CabinetSession | None = None
    # True once this side sent a close or the socket is gone: nothing more may be sent (the
    # ASGI server raises "Unexpected ASGI message ... after sending 'websocket.close'").
    closed = False

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch hops to its one shared sync thread before every message to close
        old database connections, so that every frame, connect and disconnect of every socket
        in the process queues on one thread (py-spy under a reconnect storm: docs/benchmarks.md).
        This consumer never touches the database on that thread: its calls run through
        `db()`, whose pool threads close old connections themselves."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # As AsyncWebsocketConsumer's, without its hop to the sync thread (see dispatch).
        self.closed = True
        await self.disconnect(message.get("code", 1006))
        raise StopConsumer()

    async def connect(self) -> None:
        # Admission ran before this consumer was made (cabinets.admission.AdmissionGate): a
        # saturated process refused at once, with a hint, instead of accepting slowly until
        # the cabinet times out. This handshake holds one of the process's places until here.
        completed = False
        try:
            await self._open()
            # A link closed right after its hello (busy, retired) did not complete.
            completed = self.session is not None and not self.closed
        finally:
            admission_ticket(self.scope).leave(completed=completed)

    async def _refuse_busy(self) -> None:
        self.closed = True
        await admission_refuse(self.scope, self.base_send)

    async def _open(self) -> None:
        headers = dict(self.scope.get("headers") or [])
        if not supported_protocol(headers):
            self._refuse("unsupported_protocol")
            # Before accept, this refuses the handshake (HTTP 403): nothing is disclosed.
            await self.close()
            return
        raw = headers.get(b"authorization")
        try:
            # On the event loop (PostgreSQL): a thread hop cost more than the query.
            auth = await cabinet_authenticate_on_loop(raw.decode("latin-1") if raw else None)
        except DatabaseError as exc:
            # The database is away or restarting: busy, not broken (the hint brings it back).
            logger.warning("cabinet link refused, database: %s", exc)
            await self._refuse_busy()
            return
        if auth.session is None:
            self._refuse(auth.reason)
            await self.close()
            return
        # The stored telemetry is kept once, below, not in the session too.
        self.session = dataclasses.replace(auth.session, telemetry={})
        self.replaced = False
        # Closed so that the cabinet switches to the credential it just stored (link_revoke).
        self.switching = False
        # Per socket, times 10,000: what most links never need is made when first needed (an
        # empty deque is 760 bytes, a set 216).
        self.bad_frames: deque[float] | None = None
        # What is stored counts as just written: a reconnecting cabinet's first heartbeat
        # costs no database write unless something changed.
        self.telemetry_digest: int | None = (
            _telemetry_digest(auth.session.telemetry) if auth.session.telemetry else None
        )
        self.telemetry_written_at = time.monotonic()
        # Telemetry keys are optional (protocol §4): a key a heartbeat leaves out keeps the
        # value last reported, rather than erasing the stored one.
        # Not copied: heartbeats merge into a new dict, they never change this one.
        self.telemetry: dict[str, Any] = auth.session.telemetry or {}
        self.delivered: set[str] | None = None
        self.resends: dict[str, asyncio.Task[None]] | None = None
        loop = asyncio.get_running_loop()
        self.last_frame_at = loop.time()
        # A timer handle, not a task: 10,000 sleeping coroutines would cost memory per socket.
        self.silence_timer: asyncio.TimerHandle | None = loop.call_later(
            self._silence_timeout(), self._check_silence
        )
        # Online is a Redis write; the liveness task folds it into the database in bulk. A
        # newer connection of the same cabinet wins: the older one is told and closes, in
        # whichever process it is (its channel name routes through Redis).
        try:
            previous, _ = await asyncio.gather(
                presence_claim(auth.session.cabinet_id, self.channel_name),
                self.channel_layer.group_add(
                    cabinet_group(auth.session.cabinet_id), self.channel_name
                ),
            )
            if previous is not None and previous != self.channel_name:
                await self.channel_layer.send(
                    previous, {"type": "link.replace", "by": self.channel_name}
                )
        except (RedisError, OSError) as exc:
            # Redis is down or this process cannot reach it in time: busy, not broken. The
            # cabinet comes back after the hint; disconnect() undoes what was done.
            logger.warning("cabinet %s: link refused, Redis: %s", auth.session.serial, exc)
            await self._refuse_busy()
            return
        if auth.session.retiring_key_id is not None:
            # The cabinet proves it holds its new credential: the old one is revoked now,
            # before the hello, so that once the cabinet is told it is in, the old one is out.
            await db(cabinet_credential_rotation_complete)(
                cabinet_id=auth.session.cabinet_id, key_id=auth.session.key_id
            )
        await self.accept()
        await self._send(
            protocol.make_hello(
                cabinet=auth.session.serial,
                server_time=protocol.now_ms(),
                heartbeat_interval=settings.CABINET_HEARTBEAT_INTERVAL_S,
                max_clock_skew_ms=settings.CABINET_MAX_CLOCK_SKEW_MS,
                revision=protocol.PROTOCOL_REVISION,
            )
        )
        # Read only now, in the group (a command committed from here on is pushed to this
        # link, and pushes queue until connect() returns), and after the hello: what it finds
        # follows the hello either way (protocol §3, §8), and the cabinet is in one database
        # round trip sooner (docs/benchmarks.md, "Cabinet fleet").
        try:
            backlog = await link_backlog_on_loop(auth.session)
        except DatabaseError as exc:
            logger.warning("cabinet %s: link closed, database: %s", auth.session.serial, exc)
            # Busy, as before the hello (protocol §1: 4429 with the hint); disconnect() undoes
            # the presence and the group entry.
            await self.close(
                code=protocol.CloseCode.TRY_AGAIN_LATER,
                reason=admission_busy_reason(),
            )
            return
        if backlog.state == protocol.CabinetLifecycle.RETIRED:
            # Retired after the credential check, before the join: no push told this link,
            # so it is told here, as a link open at the retirement is (protocol §3).
            logger.warning(
                "cabinet %s: retired while its link opened, closing", auth.session.serial
            )
            await self._send(protocol.make_cabinet_state(state=backlog.state))
            await self.close(code=protocol.CloseCode.REVOKED)
            return
        if backlog.state == protocol.CabinetLifecycle.MAINTENANCE:
            # Protocol §3: the state a cabinet connects in is announced like a change to it.
            await self._send(protocol.make_cabinet_state(state=backlog.state))
        # Unacknowledged, unexpired commands are re-sent after the hello; the cabinet dedupes
        # by id, and so does this connection (a push may race the query).
        for frame in backlog.pending:
            await self._deliver(frame)

    async def disconnect(self, code: int) -> None:
        if self.session is None:
            return
        if self.silence_timer is not None:
            self.silence_timer.cancel()
            self.silence_timer = None
        for task in list((self.resends or {}).values()):
            task.cancel()
        try:
            await self.channel_layer.group_discard(
                cabinet_group(self.session.cabinet_id), self.channel_name
            )
            if not self.replaced:
                # Offline within one liveness tick, without a write per disconnect (a server
                # restart disconnects the whole fleet at once).
                await presence_release(
                    self.session.cabinet_id, self.channel_name, reconnecting=self.switching
                )
        except (RedisError, OSError) as exc:
            # Left behind, both expire: the group entry after the layer's group expiry, the
            # presence entry at the liveness task's offline cutoff; a push to the dead
            # channel is dropped and the command re-sent on reconnect.
            logger.warning("cabinet %s: disconnect cleanup failed: %s", self.session.serial, exc)

    def _refuse(self, reason: str) -> None:
        client = self.scope.get("client") or ("?", 0)
        logger.warning("cabinet link refused (%s) from %s", reason, client[0])

    # --- frames from the cabinet ------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        assert self.session is not None
        self.last_frame_at = asyncio.get_running_loop().time()
        try:
            frame = protocol.validate_cabinet_frame(
                protocol.decode_frame(text_data if text_data is not None else bytes_data or b"")
            )
        except protocol.ProtocolError as exc:
            await self._bad_frame(exc.code, exc.message, ref=exc.ref)
            return
        if frame["type"] == protocol.HEARTBEAT:
            await self._heartbeat(frame)
            return
        try:
            outcome = await db(cabinet_message_handle)(
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
        if frame["type"] in COMMAND_ACKNOWLEDGEMENTS:
            self._stop_resending(frame.get("command_id"))
        if outcome.error is not None:
            # Stored all the same, so acked after the error: resending it would not help.
            await self._send(
                protocol.make_error(
                    outcome.error, outcome.error_message or outcome.error, ref=frame["id"]
                )
            )
        await self._send(protocol.make_ack(frame["id"]))

    async def _heartbeat(self, frame: dict[str, Any]) -> None:
        assert self.session is not None
        await presence_touch(self.session.cabinet_id)
        telemetry = self.telemetry = {**self.telemetry, **frame["telemetry"]}
        digest = _telemetry_digest(telemetry)
        now = time.monotonic()
        if (
            digest != self.telemetry_digest
            or now - self.telemetry_written_at >= settings.CABINET_TELEMETRY_WRITE_INTERVAL_S
        ):
            await db(cabinet_telemetry_record)(
                cabinet_id=self.session.cabinet_id, telemetry=telemetry
            )
            self.telemetry_digest, self.telemetry_written_at = digest, now

    async def _bad_frame(self, code: str, message: str, *, ref: str | None) -> None:
        assert self.session is not None
        now = asyncio.get_running_loop().time()
        if self.bad_frames is None:
            self.bad_frames = deque()
        self.bad_frames.append(now)
        while self.bad_frames and self.bad_frames[0] <= now - BAD_FRAME_WINDOW_S:
            self.bad_frames.popleft()
        await self._send(protocol.make_error(code, message, ref=ref))
        if len(self.bad_frames) > MAX_BAD_FRAMES:
            logger.warning("cabinet %s: closing after repeated invalid frames", self.session.serial)
            await self.close(code=protocol.CloseCode.PROTOCOL_VIOLATION)

    # --- liveness -------------------------------------------------------------------------

    @staticmethod
    def _silence_timeout() -> float:
        return float(SILENT_HEARTBEATS * settings.CABINET_HEARTBEAT_INTERVAL_S)

    def _check_silence(self) -> None:
        loop = asyncio.get_running_loop()
        remaining = self.last_frame_at + self._silence_timeout() - loop.time()
        if remaining > 0:
            self.silence_timer = loop.call_later(remaining, self._check_silence)
            return
        self.silence_timer = None
        assert self.session is not None
        logger.info("cabinet %s: silent for %.0f s, closing", self.session.serial, -remaining)
        # Kept referenced: the loop holds only a weak reference to a task.
        self.closing = loop.create_task(self.close(code=protocol.CloseCode.HEARTBEAT_TIMEOUT))

    # --- messages from the platform (channel layer) --------------------------------------------

    async def command_deliver(self, message: dict[str, Any]) -> None:
        assert self.session is not None
        # During a credential rotation: the frame signed with the key this link uses. None
        # when its credential is no longer valid (the link is being closed): a frame signed
        # with another key would only be rejected, and a rejection is final.
        frames = message.get("frames")
        frame = message["frame"] if frames is None else frames.get(self.session.key_id)
        if frame is not None:
            await self._deliver(frame)

    async def link_send(self, message: dict[str, Any]) -> None:
        await self._send(message["frame"])

    async def link_replace(self, message: dict[str, Any]) -> None:
        if message["by"] != self.channel_name:
            self.replaced = True
            await self.close(code=protocol.CloseCode.REPLACED)

    async def link_revoke(self, message: dict[str, Any]) -> None:
        # Protocol §1: a rotation is 4401 (the cabinet needs its new credential); a
        # revocation, or a message that does not say, is 4403. Only the link that
        # authenticated with the credential named closes: a cabinet that already reconnected
        # with its new one keeps it (the message can arrive after that reconnect).
        assert self.session is not None
        key_id = message.get("key_id")
        if key_id is not None and key_id != self.session.key_id:
            return
        rotated = message.get("reason") == "rotated"
        # The cabinet holds its new credential and reconnects with it at once (protocol §17,
        # item 4): its presence is kept over the reconnect.
        self.switching = rotated and message.get("switching") is True
        await self.close(
            code=protocol.CloseCode.BAD_CREDENTIAL if rotated else protocol.CloseCode.REVOKED
        )

    async def link_state(self, message: dict[str, Any]) -> None:
        """An admin changed the cabinet's lifecycle state: tell it; a retired one is closed."""
        assert self.session is not None
        state = message.get("state")
        if state not in protocol.LIFECYCLE_STATES:
            logger.warning("cabinet %s: ignoring link.state %r", self.session.serial, state)
            return
        await self._send(protocol.make_cabinet_state(state=state))
        if state == protocol.CabinetLifecycle.RETIRED:
            await self.close(code=protocol.CloseCode.REVOKED)

    # --- commands -------------------------------------------------------------------------

    async def _deliver(self, frame: dict[str, Any]) -> None:
        command_id = frame["command"]["id"]
        if self.delivered is None:
            self.delivered = set()
        elif command_id in self.delivered:
            return
        self.delivered.add(command_id)
        await self._send(frame)
        if await db(command_mark_sent)(command_id=command_id):
            if self.resends is None:
                self.resends = {}
            self.resends[command_id] = asyncio.create_task(self._resend_until_received(frame))

    async def _resend_until_received(self, frame: dict[str, Any]) -> None:
        """A push can be lost (the layer's capacity, a dying socket) and `group_send` confirms
        nothing, so the same frame goes again while no receipt came and it has not expired."""
        command_id = frame["command"]["id"]
        try:
            while True:
                await asyncio.sleep(settings.CABINET_RECEIPT_TIMEOUT_S)
                if protocol.now_ms() >= frame["command"]["expires_at"]:
                    return
                # Counted before it goes out: False once a receipt, result or rejection was
                # stored (from any connection), and then there is nothing to resend. (Counted
                # after, a receipt for this very frame could be stored first.)
                if not await db(command_mark_sent)(command_id=command_id):
                    return
                try:
                    await self._send(frame)
                except Exception:  # the socket is going away; disconnect() cleans up
                    return
        finally:
            if self.resends is not None:
                self.resends.pop(command_id, None)

    def _stop_resending(self, command_id: str | None) -> None:
        task = self.resends.pop(command_id, None) if command_id and self.resends else None
        if task is not None:
            task.cancel()

    async def _send(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=protocol.encode_frame(frame))

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        if self.closed:
            return
        try:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        except (OSError, RuntimeError):
            # The cabinet went away while this frame was on its way (uvicorn raises
            # ClientDisconnected, or RuntimeError once it saw the close): the disconnect
            # message follows and cleans up; an undelivered command is re-sent on reconnect.
            self.closed = True

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Once: a replacement, a revocation and a silence timeout may all ask to close the same
        socket, and the cabinet may have gone already."""
        if self.closed:
            return
        self.closed = True
        # Gone already (see send): the disconnect message follows all the same.
        with contextlib.suppress(OSError, RuntimeError):
            await super().close(code=code, reason=reason)
