"""The cabinet side of the cabinet link: one websocket to the platform, kept open for ever."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from . import __version__, protocol
from .camera import BurstCamera, Camera, CameraError, FileCamera, VideoBurstCamera
from .config import AgentConfig
from .drivers import LockDriver, Sensors, SimulatedLockDriver, SimulatedSensors
from .outbox import Outbox
from .protocol import Action, DoorEvent, DoorState, RejectReason, ResultStatus

log = logging.getLogger("cabinet_agent")

T = TypeVar("T")

# Closes and handshake statuses that mean "this cabinet may not be here right now": a credential
# problem, a second agent with the same credential, or a protocol mismatch. Retrying fast would
# only hammer the server (or fight the other agent), so these wait between cap/2 and cap.
REFUSING_CLOSE_CODES = frozenset(
    {
        protocol.CloseCode.PROTOCOL_VIOLATION,
        protocol.CloseCode.BAD_CREDENTIAL,
        protocol.CloseCode.REVOKED,
        protocol.CloseCode.REPLACED,
        protocol.CloseCode.UNSUPPORTED_PROTOCOL,
    }
)
REFUSING_HTTP_STATUSES = frozenset({400, 401, 403, 426})
# Errors that say a frame can never be accepted as it is: resending the same event (same id,
# same bytes) would be refused again after every reconnect until the server closes with 4400.
UNACCEPTABLE_ERRORS = frozenset(
    {protocol.ErrorCode.INVALID_FRAME, protocol.ErrorCode.MALFORMED_JSON}
)
SENDER_POLL_S = 5.0
SHUTDOWN_GRACE_S = 5.0


class Outcome(enum.Enum):
    STOPPED = "stopped"  # stop() was called
    ENDED = "ended"  # a session that got its hello closed: reconnect within the spread window
    FAILED = "failed"  # no session: exponential backoff with full jitter
    REFUSED = "refused"  # credential, replacement or protocol refusal: long wait
    SWITCHED = "switched"  # a credential rotation (1.2): reconnect at once with the other one
    THROTTLED = "throttled"  # admission control: wait as long as the server's hint says


class _Stopped(Exception):
    pass


CREDENTIAL_STATE = "credential"
PREVIOUS_CREDENTIAL_STATE = "previous_credential"


def _with_credential(config: AgentConfig, stored: dict[str, str]) -> AgentConfig:
    return config.with_overrides(
        credential=stored["credential"], signing_key=bytes.fromhex(stored["signing_key"])
    )


class CabinetAgent:
    """Run with `await agent.run()`; `stop()` ends it. One instance runs once."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        lock: LockDriver | None = None,
        camera: Camera | None = None,
        burst_camera: BurstCamera | None = None,
        sensors: Sensors | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], int] = protocol.now_ms,
        outbox: Outbox | None = None,
    ) -> None:
        self.config = config
        self.lock: LockDriver = lock or SimulatedLockDriver(
            config.compartments, auto_close_after=config.auto_close_after
        )
        self.camera: Camera | None = camera or (
            FileCamera(config.camera_path) if config.camera_path is not None else None
        )
        self.burst_camera: BurstCamera | None = burst_camera or (
            VideoBurstCamera(
                config.burst_path,
                start=config.burst_start,
                step=config.burst_step,
                count=config.burst_frames,
            )
            if config.burst_path is not None
            else None
        )
        self.sensors: Sensors = sensors or SimulatedSensors()
        # A fleet simulator passes Outbox(":memory:"): thousands of agents, no files. Not
        # `outbox or …`: an empty Outbox has length 0, and every simulated agent would share
        # one state file instead.
        self.outbox = outbox if outbox is not None else Outbox(config.state_path)
        # A credential delivered over the link (credential_rotate, 1.2) outlives the config
        # file it replaces: the state dir is the cabinet's durable memory.
        stored = self.outbox.get_state(CREDENTIAL_STATE)
        if stored is not None:
            config = self.config = _with_credential(config, stored)
        self._rng = rng or random.SystemRandom()
        self._clock = clock
        self.heartbeat_interval: float = config.heartbeat_interval
        # The skew allowed around a command's window: the server's (hello) when it says, else
        # the configured one.
        self.max_clock_skew_ms: int = config.max_clock_skew_ms

        # Observable state, for tests, the CLI and a local display.
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.disconnected.set()
        self.hello: dict[str, Any] | None = None
        self.sessions = 0
        self.heartbeats_sent = 0
        self.last_heartbeat: dict[str, Any] | None = None
        self.last_close: tuple[int | None, str | None] | None = None
        # Handshakes the server refused for load (HTTP 503 or close 4429), and its last hint.
        self.throttled = 0
        self.retry_after: float | None = None
        self.executed_commands: list[str] = []
        self.duplicate_commands: list[str] = []
        self.rejected_commands: list[tuple[str | None, str]] = []
        self.acked: list[str] = []
        self.discarded_events: list[str] = []  # queued events the server refused as invalid
        self.server_errors: list[dict[str, Any]] = []
        self.face_results: list[dict[str, Any]] = []
        self.code_results: list[dict[str, Any]] = []
        self.courier_results: list[dict[str, Any]] = []
        # The lifecycle state the server last announced (cabinet_state, 1.1); None until then.
        # Recorded only: the reference agent does not change what it offers locally.
        self.cabinet_state: str | None = None
        self.face_challenges: list[dict[str, Any]] = []  # 1.2
        self.face_bursts: dict[str, str] = {}  # face_start id -> face_burst id (1.2)
        self.burst_errors: list[str] = []
        self.on_face_result: Callable[[dict[str, Any]], None] | None = None
        # Protocol 1.2: asked for when a face_result says "confirm"; returns the four digits
        # the person typed (None: they walked away). Else confirm_face() answers later.
        self.on_confirm: Callable[[dict[str, Any]], str | None] | None = None
        self.on_code_result: Callable[[dict[str, Any]], None] | None = None

        self._stop = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._scans: dict[str, tuple[str, bool]] = {}
        self._starts: dict[str, str] = {}  # face_start id -> purpose
        self._background: set[asyncio.Task[Any]] = set()
        self._sent_at: dict[str, float] = {}  # event id -> loop time sent in this session
        self._idle = asyncio.Event()
        self._idle.set()
        self.lock.set_event_sink(self._on_door_event)

    # --- public API -----------------------------------------------------------------------

    async def run(self) -> None:
        self._purge_commands()
        worker = asyncio.create_task(self._command_worker(), name="cabinet-commands")
        try:
            await self._connect_loop()
        finally:
            # Let a running command finish and record its result: cancelling an unlock midway
            # would leave it claimed but unreported ("interrupted") after the restart.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), SHUTDOWN_GRACE_S)
            for task in (worker, *self._background):
                task.cancel()
            await asyncio.gather(worker, *self._background, return_exceptions=True)
            self.lock.set_event_sink(None)
            close_lock = getattr(self.lock, "close", None)
            if callable(close_lock):
                close_lock()
            self.outbox.close()
            log.info("agent stopped")

    def stop(self) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop)

    async def scan_face(
        self, purpose: str = protocol.ScanPurpose.PICKUP, *, light_on: bool = False
    ) -> str:
        """Capture one picture and queue a face_scan; returns its id (the face_result's scan_id)."""
        purpose = protocol.ScanPurpose(purpose)
        if self.camera is None:
            raise CameraError("no camera configured")
        image = await self.camera.capture(light_on)
        if len(image) > protocol.MAX_IMAGE_BYTES:
            raise CameraError("image larger than 512 KiB")
        frame = protocol.make_face_scan(
            purpose=purpose, image=image, light_on=light_on, taken_at=self._clock()
        )
        self._scans[frame["id"]] = (purpose, light_on)
        self._queue_event(frame, ttl_s=self.config.interactive_ttl)
        return frame["id"]

    @property
    def server_revision(self) -> int:
        """The server's minor revision from hello (1.2 sends 2; older servers none: 1)."""
        return int((self.hello or {}).get("revision", 1))

    def start_face(self, purpose: str = protocol.ScanPurpose.PICKUP) -> str:
        """Protocol 1.2: the person chose face; queue a face_start and return its id. The
        server's face_challenge is answered with a burst from `burst_camera`; its
        face_result has the burst's id as scan_id (`face_bursts[start_id]`)."""
        if self.burst_camera is None:
            raise CameraError("no burst camera configured")
        frame = protocol.make_face_start(purpose=protocol.ScanPurpose(purpose), at=self._clock())
        self._starts[frame["id"]] = frame["purpose"]
        self._queue_event(frame, ttl_s=self.config.interactive_ttl)
        return frame["id"]

    def confirm_face(self, confirm_id: str, digits: str) -> str:
        """Queue the last four digits of the person's phone after a face_result "confirm";
        returns the face_confirm id (the face_result's scan_id)."""
        if not protocol.CONFIRM_DIGITS_RE.fullmatch(digits):
            raise ValueError("four digits")
        frame = protocol.make_face_confirm(confirm_id=confirm_id, digits=digits, at=self._clock())
        self._queue_event(frame, ttl_s=self.config.interactive_ttl)
        return frame["id"]

    async def _answer_challenge(self, challenge: dict[str, Any]) -> None:
        assert self.burst_camera is not None
        started = self._clock()
        try:
            frames = await self.burst_camera.burst(list(challenge["actions"]), False)
        except CameraError as exc:
            log.warning("burst capture failed: %s", exc)
            self.burst_errors.append(str(exc))
            return
        if self._clock() > challenge["expires_at"]:
            log.warning("challenge %s expired during the capture", challenge["challenge_id"])
            return
        frame = protocol.make_face_burst(
            challenge_id=challenge["challenge_id"],
            nonce=challenge["nonce"],
            frames=frames,
            light_on=False,
            taken_at=started,
        )
        self.face_bursts[challenge["start_id"]] = frame["id"]
        self._queue_event(frame, ttl_s=self.config.interactive_ttl)

    def enter_code(self, code: str) -> str:
        """Queue a code_entry typed on the keypad; returns its id (the code_result's entry_id)."""
        if not protocol.CODE_RE.fullmatch(code):
            raise ValueError("a pickup code is 4 to 12 digits")
        frame = protocol.make_code_entry(code=code, entered_at=self._clock())
        self._queue_event(frame, ttl_s=self.config.interactive_ttl)
        return frame["id"]

    def courier_request(
        self, *, badge: str, pin: str, action: str, tracking_number: str | None = None
    ) -> str:
        """Queue what a courier asked for at the screen; returns its id (the courier_result's
        request_id)."""
        frame = protocol.make_courier_request(
            badge=badge,
            pin=pin,
            action=protocol.CourierAction(action),
            tracking_number=tracking_number,
            at=self._clock(),
        )
        self._queue_event(frame, ttl_s=self.config.interactive_ttl)
        return frame["id"]

    def telemetry(self) -> dict[str, Any]:
        reading = self.sensors.read()
        return protocol.make_telemetry(
            temperature_c=reading.get("temperature_c"),
            power=reading.get("power", protocol.Power.MAINS),
            battery_pct=reading.get("battery_pct"),
            firmware_version=self.firmware_version,
            config_version=self.config_version,
            doors={label: self.lock.door_state(label) for label in self.config.compartments},
        )

    @property
    def firmware_version(self) -> str:
        return self.outbox.get_state("firmware_version", self.config.firmware_version)

    @property
    def config_version(self) -> int:
        return self.outbox.get_state("config_version", 0)

    # --- connection management ------------------------------------------------------------

    async def _connect_loop(self) -> None:
        cfg = self.config
        failures = 0
        # Cabinets that boot together (a power cut, a fleet update) should not connect together.
        delay = self._rng.uniform(0.0, cfg.reconnect_spread)
        log.info("cabinet %s: connecting to %s in %.1f s", cfg.serial, cfg.server_url, delay)
        while True:
            if delay > 0 and await self._sleep_or_stop(delay):
                return
            if self._stop.is_set():
                return
            outcome = await self._connect_once()
            if outcome is Outcome.STOPPED:
                return
            if outcome is Outcome.ENDED:
                # The whole fleet loses the server at once (restart, daphne's 24 h close), so
                # even a first reconnect is spread instead of immediate.
                failures = 0
                delay = self._rng.uniform(0.0, cfg.reconnect_spread)
            elif outcome is Outcome.SWITCHED:
                failures, delay = 0, 0.0
            elif outcome is Outcome.THROTTLED:
                # Not a failure: the server is busy and said when to come back.
                assert self.retry_after is not None
                delay = protocol.admission_delay(self.retry_after, rng=self._rng)
            elif outcome is Outcome.REFUSED:
                failures += 1
                delay = self._rng.uniform(cfg.backoff_cap / 2, cfg.backoff_cap)
            else:
                delay = protocol.backoff_delay(
                    failures, base=cfg.backoff_base, cap=cfg.backoff_cap, rng=self._rng
                )
                failures += 1
            log.info("reconnecting in %.1f s (%s, %d failures)", delay, outcome.value, failures)

    async def _connect_once(self) -> Outcome:
        headers = {
            "Authorization": protocol.authorization_header(self.config.credential),
            protocol.PROTOCOL_HEADER: str(protocol.PROTOCOL_VERSION),
        }

        async def open_connection() -> ClientConnection:
            return await connect(
                self.config.server_url,
                additional_headers=headers,
                user_agent_header=f"cabinet-agent/{__version__}",
                # Compression roughly doubles the server's memory per socket (CHANNELS-NOTES).
                compression=None,
                open_timeout=self.config.hello_timeout,
                max_size=protocol.MAX_FRAME_BYTES,
                close_timeout=5,
            )

        try:
            ws = await self._until_stopped(open_connection())
        except _Stopped:
            return Outcome.STOPPED
        except InvalidStatus as exc:
            status = exc.response.status_code
            hint = protocol.parse_retry_after(exc.response.headers.get(protocol.RETRY_AFTER_HEADER))
            if status == protocol.ADMISSION_HTTP_STATUS and hint is not None:
                return self._throttled(hint)
            if status in REFUSING_HTTP_STATUSES and self._fall_back_to_previous_credential():
                return Outcome.SWITCHED
            if status in REFUSING_HTTP_STATUSES:
                log.error(
                    "server refused the handshake with HTTP %d (credential or protocol)", status
                )
                return Outcome.REFUSED
            log.warning("server answered the handshake with HTTP %d", status)
            return Outcome.FAILED
        except (OSError, TimeoutError, WebSocketException) as exc:
            log.info("cannot connect: %s", exc)
            return Outcome.FAILED
        try:
            return await self._session(ws)
        finally:
            await ws.close()

    async def _session(self, ws: ClientConnection) -> Outcome:
        try:
            raw = await self._until_stopped(asyncio.wait_for(ws.recv(), self.config.hello_timeout))
            hello = protocol.validate_server_frame(protocol.decode_frame(raw))
            if hello["type"] != protocol.HELLO:
                raise protocol.ProtocolError(
                    protocol.ErrorCode.INVALID_FRAME, "expected hello first"
                )
        except _Stopped:
            await ws.close(protocol.CloseCode.GOING_AWAY, "agent stopping")
            return Outcome.STOPPED
        except ConnectionClosed as exc:
            return self._closed(
                exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else None
            )
        except (TimeoutError, protocol.ProtocolError) as exc:
            log.warning("no valid hello: %s", exc)
            await ws.close(protocol.CloseCode.PROTOCOL_VIOLATION, "expected hello")
            return Outcome.FAILED
        if hello["protocol"] != protocol.PROTOCOL_VERSION:
            log.error(
                "server speaks protocol %s, this agent %s",
                hello["protocol"],
                protocol.PROTOCOL_VERSION,
            )
            await ws.close(protocol.CloseCode.UNSUPPORTED_PROTOCOL, "unsupported protocol")
            return Outcome.REFUSED
        if hello["cabinet"] != self.config.serial:
            log.error("server greeted cabinet %r, this is %r", hello["cabinet"], self.config.serial)
            await ws.close(protocol.CloseCode.PROTOCOL_VIOLATION, "wrong cabinet")
            return Outcome.REFUSED
        self.max_clock_skew_ms = hello.get("max_clock_skew_ms", self.config.max_clock_skew_ms)
        skew = hello["server_time"] - self._clock()
        if abs(skew) > self.max_clock_skew_ms / 2:
            # Commands are checked against this cabinet's own clock: a large skew makes them
            # look expired or not yet valid. The server's clock is not adopted on purpose, so a
            # forged hello cannot revive an old command.
            log.warning("clock differs from the server's by %d ms; check NTP", skew)

        self.hello = hello
        if self.outbox.get_state(PREVIOUS_CREDENTIAL_STATE) is not None:
            # The server accepted the delivered credential and revoked the previous one.
            self.outbox.set_state(PREVIOUS_CREDENTIAL_STATE, None)
        self.heartbeat_interval = hello["heartbeat_interval"]
        self.sessions += 1
        self.disconnected.clear()
        self.connected.set()
        log.info("connected to %s as %s", self.config.server_url, self.config.serial)
        tasks = {
            asyncio.create_task(self._receiver(ws), name="cabinet-receiver"),
            asyncio.create_task(self._sender(ws), name="cabinet-sender"),
            asyncio.create_task(self._heartbeats(ws), name="cabinet-heartbeats"),
        }
        stopper = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                await ws.close(protocol.CloseCode.GOING_AWAY, "agent stopping")
                return Outcome.STOPPED
            for task in done:
                error = task.exception()
                if error is not None and not isinstance(error, ConnectionClosed):
                    log.error("connection task failed", exc_info=error)
                    await ws.close(1011, "agent error")
        finally:
            self.connected.clear()
            self.disconnected.set()
            for task in (*tasks, stopper):
                task.cancel()
            await asyncio.gather(*tasks, stopper, return_exceptions=True)
        await ws.wait_closed()
        return self._closed(ws.close_code, ws.close_reason)

    def _throttled(self, retry_after: float) -> Outcome:
        self.throttled += 1
        self.retry_after = retry_after
        log.info("server busy: retrying after about %.0f s", retry_after)
        return Outcome.THROTTLED

    def _closed(self, code: int | None, reason: str | None) -> Outcome:
        self.last_close = (code, reason)
        stored = self.outbox.get_state(CREDENTIAL_STATE)
        if (
            code == protocol.CloseCode.BAD_CREDENTIAL
            and stored is not None
            and stored["credential"] != self.config.credential
        ):
            # Rotated (1.2): the new credential is stored; reconnect with it at once.
            log.info("credential rotated: reconnecting with the new one")
            self.config = _with_credential(self.config, stored)
            return Outcome.SWITCHED
        if code == protocol.CloseCode.TRY_AGAIN_LATER:
            hint = protocol.parse_retry_after(reason)
            return self._throttled(hint if hint is not None else self.config.backoff_cap / 2)
        if code in REFUSING_CLOSE_CODES:
            log.error("server closed the link with %s (%s)", code, reason)
            return Outcome.REFUSED
        log.info("link closed with %s (%s)", code, reason)
        return Outcome.ENDED

    async def _receiver(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                self._handle_frame(raw)
        except ConnectionClosed:
            pass

    async def _sender(self, ws: ClientConnection) -> None:
        """Send queued events in order; resend those still unacknowledged after ack_timeout."""
        loop = asyncio.get_running_loop()
        sent_at = self._sent_at
        sent_at.clear()
        while True:
            self._wakeup.clear()
            self.outbox.purge_expired(self._clock())
            pending = self.outbox.pending()
            live = {event.id for event in pending}
            for event_id in [event_id for event_id in sent_at if event_id not in live]:
                del sent_at[event_id]
            for event in pending:
                last = sent_at.get(event.id)
                if last is not None and loop.time() - last < self.config.ack_timeout:
                    continue
                text = self.outbox.frame_text(event.id)
                if text is None:
                    continue
                await ws.send(text)
                sent_at[event.id] = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wakeup.wait(), min(self.config.ack_timeout, SENDER_POLL_S)
                )

    async def _heartbeats(self, ws: ClientConnection) -> None:
        while True:
            frame = protocol.make_heartbeat(sent_at=self._clock(), telemetry=self.telemetry())
            await ws.send(protocol.encode_frame(frame))
            self.heartbeats_sent += 1
            self.last_heartbeat = frame
            self._purge_commands()
            await asyncio.sleep(self.heartbeat_interval)

    def _handle_frame(self, raw: str | bytes) -> None:
        try:
            frame = protocol.validate_server_frame(protocol.decode_frame(raw))
        except protocol.ProtocolError as exc:
            log.warning("ignoring a frame from the server: %s", exc.message)
            return
        kind = frame["type"]
        if kind == protocol.ACK:
            # Forget the send time too: an event re-queued with the same id (a result resent
            # for a duplicate command) must go out at once, not after ack_timeout.
            self._sent_at.pop(frame["ref"], None)
            if self.outbox.ack(frame["ref"]):
                self.acked.append(frame["ref"])
        elif kind == protocol.COMMAND:
            self._commands.put_nowait(frame)
        elif kind == protocol.ERROR:
            self.server_errors.append(frame)
            log.warning(
                "server error %s: %s (ref %s)", frame["code"], frame["message"], frame["ref"]
            )
            # Any other error (retry_later above all) leaves the event queued: the sender
            # resends it after ack_timeout, and the server deduplicates by id.
            if frame["code"] in UNACCEPTABLE_ERRORS and frame["ref"] is not None:
                self._discard_event(frame["ref"], frame["code"])
        elif kind == protocol.FACE_RESULT:
            self.face_results.append(frame)
            self._on_face_result(frame)
        elif kind == protocol.FACE_CHALLENGE:
            self.face_challenges.append(frame)
            if self._starts.pop(frame["start_id"], None) is None or self.burst_camera is None:
                log.warning("ignoring a face_challenge this cabinet did not ask for")
            else:
                log.info("challenge: %s", frame["message"])
                self._spawn(self._answer_challenge(frame))
        elif kind == protocol.CODE_RESULT:
            self.code_results.append(frame)
            if self.on_code_result is not None:
                self.on_code_result(frame)
        elif kind == protocol.COURIER_RESULT:
            self.courier_results.append(frame)
        elif kind == protocol.CABINET_STATE:
            if frame["state"] not in protocol.LIFECYCLE_STATES:
                log.warning("the server announced an unknown cabinet state %r", frame["state"])
            elif frame["state"] != self.cabinet_state:
                log.info("the server put this cabinet in state %s", frame["state"])
            self.cabinet_state = frame["state"]
        else:
            log.warning("ignoring an unexpected %s", kind)

    def _discard_event(self, event_id: str, code: str) -> None:
        kind = self.outbox.discard(event_id)
        if kind is None:
            return  # not a queued event (a heartbeat, or already acknowledged)
        self._sent_at.pop(event_id, None)
        self.discarded_events.append(event_id)
        # Type and id only: the payload may be a face image or a code.
        log.warning("dropped queued %s %s: the server refused it (%s)", kind, event_id, code)

    def _on_face_result(self, frame: dict[str, Any]) -> None:
        scan = self._scans.pop(frame["scan_id"], None)
        if self.on_face_result is not None:
            self.on_face_result(frame)
        if frame["outcome"] == protocol.FaceOutcome.CONFIRM and "confirm_id" in frame:
            digits = self.on_confirm(frame) if self.on_confirm is not None else None
            if digits is not None:
                self.confirm_face(frame["confirm_id"], digits)
        if (
            frame["outcome"] == protocol.FaceOutcome.RETAKE_LIGHT_ON
            and scan is not None
            and not scan[1]
        ):
            self._spawn(self.scan_face(scan[0], light_on=True))

    # --- commands -------------------------------------------------------------------------

    async def _command_worker(self) -> None:
        # One command at a time: a duplicate delivered while the first copy runs waits, then
        # finds the claim and does not run.
        while True:
            frame = await self._commands.get()
            self._idle.clear()
            try:
                await self._handle_command(frame["command"], frame["signature"])
            except Exception:
                log.exception("command handling failed")
            finally:
                self._idle.set()

    async def _handle_command(self, command: dict[str, Any], signature: str) -> None:
        now = self._clock()
        verdict = protocol.verify_command(
            self.config.signing_key,
            command,
            signature,
            cabinet=self.config.serial,
            now_ms=now,
            max_clock_skew_ms=self.max_clock_skew_ms,
        )
        raw_id = command.get("id")
        command_id = raw_id if isinstance(raw_id, str) and len(raw_id) <= 64 else None
        if (
            verdict.ok
            and command["action"] == Action.UNLOCK
            and command["compartment"] not in self.config.compartments
        ):
            verdict = protocol.VerifyResult(False, RejectReason.UNKNOWN_COMPARTMENT)
        if not verdict.ok:
            assert verdict.reason is not None
            log.warning("rejected command %s: %s", command_id, verdict.reason)
            self.rejected_commands.append((command_id, verdict.reason))
            self._queue_event(
                protocol.make_command_rejected(command_id=command_id, reason=verdict.reason, at=now)
            )
            return
        assert command_id is not None

        earlier = self.outbox.claim_command(
            command_id, expires_ms=command["expires_at"], now_ms=now
        )
        if (
            earlier is not None
            and earlier.result is None
            and command["action"] == Action.CREDENTIAL_ROTATE
        ):
            # Storing a credential twice does no harm: an interrupted delivery runs again.
            earlier = None
        if earlier is not None:
            self.duplicate_commands.append(command_id)
            if earlier.result is not None:
                log.info("duplicate command %s: resending its result", command_id)
                # Same event id: the server deduplicates it if it already stored the result.
                self._queue_event(earlier.result)
            else:
                # Claimed by an earlier run that stopped before recording a result. The door
                # may or may not have opened; it must not open a second time.
                log.warning("command %s was interrupted earlier; not running it again", command_id)
                self._complete(
                    command, ResultStatus.FAILED, "interrupted: the agent stopped while running it"
                )
            return

        self._queue_event(protocol.make_command_receipt(command_id=command_id, at=now))
        log.info("running %s %s %s", command["action"], command_id, command["compartment"] or "")
        try:
            status, detail = await self._run_action(command)
        except Exception as exc:
            log.exception("command %s failed", command_id)
            status, detail = ResultStatus.FAILED, f"agent error: {type(exc).__name__}"
        door = self._complete(command, status, detail)
        self.executed_commands.append(command_id)
        if (
            command["action"] == Action.UNLOCK
            and status == ResultStatus.SUCCEEDED
            and door == DoorState.OPEN
        ):
            self._on_door_event(command["compartment"], DoorEvent.OPENED)

    async def _run_action(self, command: dict[str, Any]) -> tuple[ResultStatus, str]:
        action, payload = command["action"], command["payload"]
        if action == Action.UNLOCK:
            if await self.lock.unlock(command["compartment"]):
                return ResultStatus.SUCCEEDED, "unlocked"
            return ResultStatus.FAILED, "the lock did not release"
        if action == Action.SET_CONFIG:
            version = payload.get("config_version")
            if type(version) is not int or version < 0:
                return ResultStatus.FAILED, "payload.config_version must be a non-negative integer"
            self.outbox.set_state("config", payload)
            self.outbox.set_state("config_version", version)
            return ResultStatus.SUCCEEDED, f"config version {version} applied"
        if action == Action.CREDENTIAL_ROTATE:
            return self._store_credential(payload)
        if action == Action.SET_FIRMWARE:
            version = payload.get("version")
            if not isinstance(version, str) or not 0 < len(version) <= 64:
                return ResultStatus.FAILED, "payload.version must be a short string"
            # The reference agent has no firmware to flash: it records the version it was told.
            self.outbox.set_state("firmware_version", version)
            return (
                ResultStatus.SUCCEEDED,
                f"simulated: firmware {version} recorded, nothing installed",
            )
        return ResultStatus.FAILED, f"unsupported action {action}"

    def _store_credential(self, payload: dict[str, Any]) -> tuple[ResultStatus, str]:
        """Keep the delivered credential durably before acknowledging it; the link in use stays
        on the old one until the server closes it (4401). The old one is kept too, for a
        rotation withdrawn before this cabinet used the new one (protocol §17)."""
        credential, signing_key = payload.get("credential"), payload.get("signing_key")
        if (
            not isinstance(credential, str)
            or protocol.parse_credential(protocol.authorization_header(credential)) is None
            or not isinstance(signing_key, str)
        ):
            return ResultStatus.FAILED, "payload must carry a credential and a signing key"
        try:
            protocol.parse_signing_key(signing_key)
        except ValueError:
            return ResultStatus.FAILED, "payload.signing_key is not a signing key"
        if credential != self.config.credential:
            current = {
                "credential": self.config.credential,
                "signing_key": self.config.signing_key.hex(),
            }
            self.outbox.set_state(PREVIOUS_CREDENTIAL_STATE, current)
        self.outbox.set_state(
            CREDENTIAL_STATE, {"credential": credential, "signing_key": signing_key}
        )
        return ResultStatus.SUCCEEDED, f"credential {payload.get('key_id')} stored"

    def _fall_back_to_previous_credential(self) -> bool:
        """The delivered credential is refused (withdrawn by a second rotation before this
        cabinet used it): the one it replaced may still be valid. Tried once."""
        previous = self.outbox.get_state(PREVIOUS_CREDENTIAL_STATE)
        if previous is None or previous["credential"] == self.config.credential:
            return False
        log.warning("the delivered credential is refused: falling back to the previous one")
        self.outbox.set_state(CREDENTIAL_STATE, previous)
        self.outbox.set_state(PREVIOUS_CREDENTIAL_STATE, None)
        self.config = _with_credential(self.config, previous)
        return True

    def _complete(self, command: dict[str, Any], status: ResultStatus, detail: str) -> str | None:
        label = command["compartment"]
        door = self.lock.door_state(label) if label else None
        result = protocol.make_command_result(
            command_id=command["id"], status=status, door=door, detail=detail, at=self._clock()
        )
        self.outbox.complete_command(command["id"], result, now_ms=self._clock())
        self._wakeup.set()
        return door

    def _purge_commands(self) -> None:
        # Kept for the largest skew any hello may announce, not the current one: an id
        # forgotten under a small skew would run again once a later hello allows a larger one.
        retention = max(self.config.max_clock_skew_ms, protocol.MAX_ANNOUNCED_CLOCK_SKEW_MS)
        self.outbox.purge_commands(before_ms=self._clock() - retention)

    # --- helpers --------------------------------------------------------------------------

    def _on_door_event(self, label: str, event: DoorEvent) -> None:
        self._queue_event(
            protocol.make_door_event(compartment=label, event=event, at=self._clock())
        )

    def _queue_event(self, frame: dict[str, Any], *, ttl_s: float | None = None) -> None:
        now = self._clock()
        expires = None if ttl_s is None else now + int(ttl_s * 1000)
        self.outbox.enqueue(frame, created_ms=now, expires_ms=expires)
        self._wakeup.set()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _sleep_or_stop(self, delay: float) -> bool:
        try:
            await asyncio.wait_for(self._stop.wait(), delay)
        except TimeoutError:
            return False
        return True

    async def _until_stopped(self, awaitable: Awaitable[T]) -> T:
        task = asyncio.ensure_future(awaitable)
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise _Stopped
