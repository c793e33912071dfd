"""The cabinet link protocol, version 1: shared by the platform and the cabinet agent.

Standard library only, so the Django consumer and the cabinet import the same definitions.
docs/cabinet-protocol.md is the normative description; this module is its executable form.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import random
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

PROTOCOL_VERSION = 1
# The minor revision (1.2) this module speaks, announced in hello.revision. 1.2 adds liveness
# by challenge: face_start -> face_challenge -> face_burst -> face_result (-> face_confirm).
PROTOCOL_REVISION = 2
WEBSOCKET_PATH = "/ws/cabinet/"
AUTH_SCHEME = "Cabinet"
PROTOCOL_HEADER = "Cabinet-Protocol"
SIGNATURE_DOMAIN = "cabinet-command-v1"

MAX_FRAME_BYTES = 1024 * 1024
# What the ASGI server accepts (uvicorn --ws-max-size): a little above MAX_FRAME_BYTES, so that
# a frame slightly too large is answered with frame_too_large on a link that stays up, and only
# a larger one costs the connection (close 1009). Memory per frame stays bounded either way.
TRANSPORT_MAX_FRAME_BYTES = 2 * 1024 * 1024
# Objects and arrays nested deeper than this are refused before parsing: json.loads recurses,
# and a 2,000-deep frame of 11 KiB would raise RecursionError instead of a ProtocolError.
MAX_NESTING_DEPTH = 32
MAX_IMAGE_BYTES = 512 * 1024
MAX_COMMAND_LIFETIME_MS = 24 * 60 * 60 * 1000
DEFAULT_HEARTBEAT_INTERVAL_S = 30
DEFAULT_MAX_CLOCK_SKEW_MS = 30_000
# The most a server may announce in hello (1.1). Bounded, because a cabinet adopts it and keeps
# executed command ids until expires_at plus this much (§7): an unbounded value announced by a
# forged hello would make old commands valid again.
MAX_ANNOUNCED_CLOCK_SKEW_MS = 300_000

# Message types, server -> cabinet.
HELLO = "hello"
COMMAND = "command"
ACK = "ack"
ERROR = "error"
FACE_RESULT = "face_result"
CODE_RESULT = "code_result"
COURIER_RESULT = "courier_result"
CABINET_STATE = "cabinet_state"  # 1.1
FACE_CHALLENGE = "face_challenge"  # 1.2

# Message types, cabinet -> server.
HEARTBEAT = "heartbeat"
COMMAND_RECEIPT = "command_receipt"
COMMAND_REJECTED = "command_rejected"
COMMAND_RESULT = "command_result"
DOOR_EVENT = "door_event"
FACE_SCAN = "face_scan"
CODE_ENTRY = "code_entry"
COURIER_REQUEST = "courier_request"
FACE_START = "face_start"  # 1.2
FACE_BURST = "face_burst"  # 1.2
FACE_CONFIRM = "face_confirm"  # 1.2

SERVER_MESSAGE_TYPES = frozenset(
    {
        HELLO,
        COMMAND,
        ACK,
        ERROR,
        FACE_RESULT,
        CODE_RESULT,
        COURIER_RESULT,
        CABINET_STATE,
        FACE_CHALLENGE,
    }
)
CABINET_MESSAGE_TYPES = frozenset(
    {
        HEARTBEAT,
        COMMAND_RECEIPT,
        COMMAND_REJECTED,
        COMMAND_RESULT,
        DOOR_EVENT,
        FACE_SCAN,
        CODE_ENTRY,
        COURIER_REQUEST,
        FACE_START,
        FACE_BURST,
        FACE_CONFIRM,
    }
)
# Cabinet events are queued durably by the cabinet, acknowledged by the server and deduplicated
# by their "id". Heartbeats are not events: a lost heartbeat is superseded by the next one.
CABINET_EVENT_TYPES = CABINET_MESSAGE_TYPES - {HEARTBEAT}
# A face or a code stands for a person in front of the cabinet now; replaying one minutes later
# could open a door for whoever happens to be there, so these expire instead of waiting forever.
INTERACTIVE_EVENT_TYPES = frozenset(
    {FACE_SCAN, CODE_ENTRY, COURIER_REQUEST, FACE_START, FACE_BURST, FACE_CONFIRM}
)

# Liveness by challenge (1.2): what a face_burst may carry. The whole burst stays inside
# MAX_FRAME_BYTES (base64 adds a third), so no frame needs the transport's 2 MiB allowance.
BURST_MIN_FRAMES = 6
BURST_MAX_FRAMES = 20
BURST_MAX_FRAME_BYTES = 96 * 1024
BURST_MAX_TOTAL_BYTES = 700 * 1024
BURST_MIN_SPAN_MS = 1000
BURST_MAX_SPAN_MS = 3000
CHALLENGE_ACTIONS = ("blink", "turn_left", "turn_right")
CONFIRM_DIGITS_RE = re.compile(r"[0-9]{4}")
NONCE_RE = re.compile(r"[A-Za-z0-9_-]{22,64}")


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009  # sent by the ASGI server: a frame over TRANSPORT_MAX_FRAME_BYTES
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012  # uvicorn's close when it stops gracefully
    PROTOCOL_VIOLATION = 4400
    BAD_CREDENTIAL = 4401  # the credential was rotated while connected
    REVOKED = 4403  # the credential was revoked, or the cabinet retired
    HEARTBEAT_TIMEOUT = 4408
    REPLACED = 4409
    UNSUPPORTED_PROTOCOL = 4426
    TRY_AGAIN_LATER = 4429  # admission control, when the server cannot answer HTTP 503 (§11)


class ErrorCode(StrEnum):
    MALFORMED_JSON = "malformed_json"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_FRAME = "invalid_frame"
    FRAME_TOO_LARGE = "frame_too_large"
    UNKNOWN_COMMAND = "unknown_command"
    RETRY_LATER = "retry_later"


class CabinetLifecycle(StrEnum):
    """What a cabinet_state frame announces (1.1): the cabinet's state in the platform."""

    ACTIVE = "active"
    MAINTENANCE = "maintenance"  # still connected; the platform sends it no pickups
    RETIRED = "retired"  # followed by close 4403; its handshakes are refused from then on


LIFECYCLE_STATES = frozenset(state.value for state in CabinetLifecycle)


class Action(StrEnum):
    UNLOCK = "unlock"
    SET_CONFIG = "set_config"
    SET_FIRMWARE = "set_firmware"
    CREDENTIAL_ROTATE = "credential_rotate"  # 1.2


class RejectReason(StrEnum):
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_CABINET = "wrong_cabinet"
    INVALID_COMMAND = "invalid_command"
    UNKNOWN_COMPARTMENT = "unknown_compartment"


class DoorState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    FAULT = "fault"


class DoorEvent(StrEnum):
    OPENED = "opened"
    CLOSED = "closed"
    FORCED = "forced"
    FAULT = "fault"


class ResultStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Power(StrEnum):
    MAINS = "mains"
    BATTERY = "battery"


class ScanPurpose(StrEnum):
    PICKUP = "pickup"
    DROPOFF = "dropoff"


class FaceOutcome(StrEnum):
    """Known outcomes; cabinets show `message` and treat an unknown outcome like `no_match`."""

    UNLOCKING = "unlocking"
    NO_MATCH = "no_match"
    RETAKE = "retake"
    RETAKE_LIGHT_ON = "retake_light_on"
    USE_CODE = "use_code"
    LOCKED_OUT = "locked_out"
    UNAVAILABLE = "unavailable"
    CONFIRM = "confirm"  # 1.2: ask the person for the last four digits of their phone


class CourierAction(StrEnum):
    """What a courier logged in at the cabinet asks for."""

    DEPOSIT = "deposit"  # open a compartment for the scanned tracking number
    BIGGER = "bigger"  # the parcel did not fit: open a larger compartment instead
    COLLECT = "collect"  # open every compartment holding this carrier's returns and drop-offs


class CourierOutcome(StrEnum):
    UNLOCKING = "unlocking"
    NOT_AUTHORIZED = "not_authorized"
    UNKNOWN_PARCEL = "unknown_parcel"
    NO_COMPARTMENT = "no_compartment"
    NOTHING_TO_COLLECT = "nothing_to_collect"
    REFUSED = "refused"
    LOCKED_OUT = "locked_out"


class CodeOutcome(StrEnum):
    UNLOCKING = "unlocking"
    NO_MATCH = "no_match"
    LOCKED_OUT = "locked_out"
    UNAVAILABLE = "unavailable"


class ProtocolError(ValueError):
    """A frame that does not follow the protocol; `code` is an ErrorCode for the error frame."""

    def __init__(self, code: ErrorCode, message: str, *, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id() -> str:
    return str(uuid.uuid4())


# --- Credentials ---------------------------------------------------------------------------

KEY_ID_RE = re.compile(r"[A-Za-z0-9_-]{4,64}")
SECRET_RE = re.compile(r"[A-Za-z0-9_-]{22,256}")


def parse_credential(header_value: str | None) -> tuple[str, str] | None:
    """Split an `Authorization: Cabinet <key_id>.<secret>` value; None if it is not one."""
    if not header_value:
        return None
    parts = header_value.strip().split(None, 1)
    if len(parts) != 2 or parts[0].lower() != AUTH_SCHEME.lower():
        return None
    key_id, dot, secret = parts[1].strip().partition(".")
    if not dot or not KEY_ID_RE.fullmatch(key_id) or not SECRET_RE.fullmatch(secret):
        return None
    return key_id, secret


def authorization_header(credential: str) -> str:
    return f"{AUTH_SCHEME} {credential}"


def hash_secret(secret: str) -> str:
    # The secret is 256 random bits, not a password: a fast hash is enough and keeps the
    # handshake cheap during a reconnect storm.
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def new_credential() -> tuple[str, str, str]:
    """Return (credential, key_id, secret_hash); only the hash is stored by the platform."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return f"{key_id}.{secret}", key_id, hash_secret(secret)


def new_signing_key() -> bytes:
    return secrets.token_bytes(32)


def parse_signing_key(hex_key: str) -> bytes:
    try:
        key = bytes.fromhex(hex_key.strip())
    except ValueError as exc:
        raise ValueError("signing key must be hexadecimal") from exc
    if len(key) < 16:
        raise ValueError("signing key must be at least 16 bytes (32 hex digits)")
    return key


# --- Field checks --------------------------------------------------------------------------

SERIAL_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
LABEL_RE = re.compile(r"[A-Za-z0-9_-]{1,16}")
CODE_RE = re.compile(r"[0-9]{4,12}")
TOKEN_RE = re.compile(r"[a-z0-9_]{1,64}")
SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")
MAX_MS = 2**53 - 1

Check = Callable[[Any], bool]


def is_uuid(value: Any) -> bool:
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def is_ms(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_MS


def _int_between(low: int, high: int) -> Check:
    return lambda value: type(value) is int and low <= value <= high


def _matches(pattern: re.Pattern[str]) -> Check:
    return lambda value: isinstance(value, str) and pattern.fullmatch(value) is not None


def _text(max_length: int) -> Check:
    return lambda value: isinstance(value, str) and len(value) <= max_length


def _one_of(enum: type[StrEnum]) -> Check:
    values = frozenset(member.value for member in enum)
    return lambda value: isinstance(value, str) and value in values


def _optional(check: Check) -> Check:
    return lambda value: value is None or check(value)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _is_jpeg_base64(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > (MAX_IMAGE_BYTES * 4) // 3 + 4:
        return False
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return raw[:3] == b"\xff\xd8\xff"


def _is_burst_frames(value: Any) -> bool:
    if not isinstance(value, list) or not BURST_MIN_FRAMES <= len(value) <= BURST_MAX_FRAMES:
        return False
    limit = (BURST_MAX_FRAME_BYTES * 4) // 3 + 4
    for frame in value:
        if not isinstance(frame, dict) or not is_ms(frame.get("t_ms")):
            return False
        jpeg = frame.get("jpeg")
        if not isinstance(jpeg, str) or len(jpeg) > limit or not _is_jpeg_base64(jpeg):
            return False
    return True


def _is_actions(value: Any) -> bool:
    return (
        isinstance(value, list)
        and 1 <= len(value) <= 2
        and len(set(value)) == len(value)
        and all(isinstance(a, str) and a in CHALLENGE_ACTIONS for a in value)
    )


_is_serial = _matches(SERIAL_RE)
_is_label = _matches(LABEL_RE)
_door_state = _one_of(DoorState)

_TELEMETRY_FIELDS: dict[str, Check] = {
    "temperature_c": _optional(_is_number),
    "power": _one_of(Power),
    "battery_pct": _optional(_int_between(0, 100)),
    "firmware_version": _text(64),
    "config_version": _int_between(0, 2**31),
    "doors": lambda doors: (
        isinstance(doors, dict)
        and len(doors) <= 256
        and all(_is_label(label) and _door_state(state) for label, state in doors.items())
    ),
}


def _is_telemetry(value: Any) -> bool:
    # Every key is optional (1.1): a cabinet reports what it has; a key it sends is checked.
    return isinstance(value, dict) and all(
        name not in value or check(value[name]) for name, check in _TELEMETRY_FIELDS.items()
    )


SERVER_FRAME_FIELDS: dict[str, dict[str, Check]] = {
    HELLO: {
        "protocol": _int_between(1, 1000),
        "cabinet": _is_serial,
        "server_time": is_ms,
        "heartbeat_interval": _int_between(1, 3600),
    },
    # The command itself is checked by verify_command, so that a malformed command is answered
    # with command_rejected rather than dropped.
    COMMAND: {"command": _is_dict, "signature": _text(128)},
    ACK: {"ref": is_uuid},
    ERROR: {"code": _matches(TOKEN_RE), "message": _text(1000), "ref": _optional(_text(64))},
    FACE_RESULT: {"scan_id": is_uuid, "outcome": _matches(TOKEN_RE), "message": _text(500)},
    CODE_RESULT: {"entry_id": is_uuid, "outcome": _matches(TOKEN_RE), "message": _text(500)},
    COURIER_RESULT: {
        "request_id": is_uuid,
        "outcome": _matches(TOKEN_RE),
        "compartments": lambda labels: (
            isinstance(labels, list) and len(labels) <= 256 and all(map(_is_label, labels))
        ),
        "message": _text(500),
    },
    # A token rather than the three known states: a later state must not make the frame
    # invalid for an older cabinet, which logs what it does not know.
    CABINET_STATE: {"state": _matches(TOKEN_RE)},
    FACE_CHALLENGE: {
        "start_id": is_uuid,
        "challenge_id": is_uuid,
        "nonce": _matches(NONCE_RE),
        "actions": _is_actions,
        "expires_at": is_ms,
        "message": _text(500),
    },
}

CABINET_FRAME_FIELDS: dict[str, dict[str, Check]] = {
    HEARTBEAT: {"sent_at": is_ms, "telemetry": _is_telemetry},
    COMMAND_RECEIPT: {"id": is_uuid, "command_id": is_uuid, "at": is_ms},
    # A rejected command may be malformed, so its id is echoed only if it was a short string.
    COMMAND_REJECTED: {
        "id": is_uuid,
        "command_id": _optional(_text(64)),
        "reason": _one_of(RejectReason),
        "at": is_ms,
    },
    COMMAND_RESULT: {
        "id": is_uuid,
        "command_id": is_uuid,
        "status": _one_of(ResultStatus),
        "door": _optional(_door_state),
        "detail": _text(500),
        "at": is_ms,
    },
    DOOR_EVENT: {"id": is_uuid, "compartment": _is_label, "event": _one_of(DoorEvent), "at": is_ms},
    FACE_SCAN: {
        "id": is_uuid,
        "purpose": _one_of(ScanPurpose),
        "image": _is_jpeg_base64,
        "light_on": _is_bool,
        "taken_at": is_ms,
    },
    CODE_ENTRY: {"id": is_uuid, "code": _matches(CODE_RE), "entered_at": is_ms},
    COURIER_REQUEST: {
        "id": is_uuid,
        "badge": _text(32),
        "pin": _matches(CODE_RE),
        "action": _one_of(CourierAction),
        "tracking_number": _optional(_text(40)),
        "at": is_ms,
    },
    FACE_START: {"id": is_uuid, "purpose": _one_of(ScanPurpose), "at": is_ms},
    FACE_BURST: {
        "id": is_uuid,
        "challenge_id": is_uuid,
        "nonce": _matches(NONCE_RE),
        "frames": _is_burst_frames,
        "light_on": _is_bool,
        "taken_at": is_ms,
    },
    FACE_CONFIRM: {
        "id": is_uuid,
        "confirm_id": is_uuid,
        "digits": _matches(CONFIRM_DIGITS_RE),
        "at": is_ms,
    },
}


# One JSON string (escapes included) or one bracket. Strings are matched whole, so brackets in
# them do not count and a 700 KB base64 image costs one regex step, not 700,000 loop turns.
_STRUCTURE_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def nests_deeper_than(text: str, limit: int = MAX_NESTING_DEPTH) -> bool:
    """Whether `text` opens more than `limit` objects/arrays at once (brackets outside strings)."""
    if text.count("[") + text.count("{") <= limit:
        return False  # the common case, decided in C without looking at strings
    depth = 0
    for match in _STRUCTURE_RE.finditer(text):
        char = text[match.start()]
        if char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


# Fields a frame may leave out, checked when present (minor additions, and fields that a
# heartbeat never needed). The frame tables above list the required ones.
OPTIONAL_FRAME_FIELDS: dict[str, dict[str, Check]] = {
    HELLO: {
        "max_clock_skew_ms": _int_between(0, MAX_ANNOUNCED_CLOCK_SKEW_MS),
        "revision": _int_between(0, 1000),  # 1.2
    },
    FACE_RESULT: {"confirm_id": is_uuid},  # 1.2, with outcome "confirm"
    HEARTBEAT: {"id": is_uuid},
    # The courier's carrier (its code), chosen on the screen: badge numbers are unique per
    # carrier only. The platform needs it when two carriers use the same badge number.
    COURIER_REQUEST: {"carrier": _text(32)},
}


def _frame_bytes_over(text: str | bytes, limit: int) -> bool:
    if len(text) > limit:
        return True
    # A str counts characters and UTF-8 takes up to 4 bytes for one: encode only when that
    # could matter (a face scan, not a heartbeat).
    return (
        isinstance(text, str)
        and len(text) * 4 > limit
        and len(text.encode("utf-8", "surrogatepass")) > limit
    )


def decode_frame(text: str | bytes) -> dict[str, Any]:
    """Parse one websocket text frame into a dict with a string "type"."""
    if _frame_bytes_over(text, MAX_FRAME_BYTES):
        raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, "frame exceeds 1 MiB")
    if isinstance(text, bytes):
        raise ProtocolError(ErrorCode.MALFORMED_JSON, "binary frames are not used; send JSON text")
    if nests_deeper_than(text):
        raise ProtocolError(
            ErrorCode.INVALID_FRAME, f"frame nests deeper than {MAX_NESTING_DEPTH} levels"
        )
    try:
        frame = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.MALFORMED_JSON, "frame is not valid JSON") from exc
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise ProtocolError(
            ErrorCode.INVALID_FRAME,
            'frame must be an object with a "type"',
            ref=frame_ref(frame) if isinstance(frame, dict) else None,
        )
    return frame


def frame_ref(frame: Mapping[str, Any]) -> str | None:
    """The `ref` an error about this frame carries: its id when that is a string of at most
    64 characters (what an error's `ref` may hold), whatever else is wrong with the frame."""
    value = frame.get("id")
    return value if isinstance(value, str) and len(value) <= 64 else None


def encode_frame(frame: Mapping[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), allow_nan=False)


def _validate(frame: dict[str, Any], table: dict[str, dict[str, Check]]) -> dict[str, Any]:
    kind = frame.get("type")
    fields = table.get(kind) if isinstance(kind, str) else None
    ref = frame_ref(frame)
    if fields is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}", ref=ref)
    # Unknown extra fields are ignored so that either side can add optional fields later.
    bad = [name for name, check in fields.items() if name not in frame or not check(frame[name])]
    optional = OPTIONAL_FRAME_FIELDS.get(str(kind), {})
    bad += [name for name, check in optional.items() if name in frame and not check(frame[name])]
    if bad:
        raise ProtocolError(
            ErrorCode.INVALID_FRAME, f"{kind}: missing or invalid {', '.join(bad)}", ref=ref
        )
    return frame


def validate_server_frame(frame: dict[str, Any]) -> dict[str, Any]:
    """Check a frame the cabinet received; raises ProtocolError."""
    return _validate(frame, SERVER_FRAME_FIELDS)


def validate_cabinet_frame(frame: dict[str, Any]) -> dict[str, Any]:
    """Check a frame the server received; raises ProtocolError."""
    return _validate(frame, CABINET_FRAME_FIELDS)


# --- Frame builders: server -> cabinet -------------------------------------------------------


def make_hello(
    *,
    cabinet: str,
    server_time: int,
    heartbeat_interval: int,
    max_clock_skew_ms: int | None = None,
    revision: int | None = None,
) -> dict[str, Any]:
    hello: dict[str, Any] = {
        "type": HELLO,
        "protocol": PROTOCOL_VERSION,
        "cabinet": cabinet,
        "server_time": server_time,
        "heartbeat_interval": heartbeat_interval,
    }
    if max_clock_skew_ms is not None:
        hello["max_clock_skew_ms"] = max_clock_skew_ms
    if revision is not None:
        hello["revision"] = revision
    return hello


def make_command(
    *,
    cabinet: str,
    action: str,
    compartment: str | None = None,
    payload: Mapping[str, Any] | None = None,
    issued_at: int,
    ttl_ms: int,
    command_id: str | None = None,
) -> dict[str, Any]:
    """Build the unsigned command object (the "command" member of a command frame)."""
    return {
        "id": command_id or new_id(),
        "action": action,
        "cabinet": cabinet,
        "compartment": compartment,
        "payload": dict(payload or {}),
        "issued_at": issued_at,
        "expires_at": issued_at + ttl_ms,
    }


def make_command_frame(key: bytes, command: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": COMMAND, "command": dict(command), "signature": sign_command(key, command)}


def make_ack(ref: str) -> dict[str, Any]:
    return {"type": ACK, "ref": ref}


def make_error(code: str, message: str, *, ref: str | None = None) -> dict[str, Any]:
    return {"type": ERROR, "code": str(code), "message": message, "ref": ref}


def make_face_result(
    *, scan_id: str, outcome: str, message: str, confirm_id: str | None = None
) -> dict[str, Any]:
    result = {"type": FACE_RESULT, "scan_id": scan_id, "outcome": str(outcome), "message": message}
    if confirm_id is not None:
        result["confirm_id"] = confirm_id
    return result


def make_face_challenge(
    *,
    start_id: str,
    challenge_id: str,
    nonce: str,
    actions: list[str],
    expires_at: int,
    message: str,
) -> dict[str, Any]:
    return {
        "type": FACE_CHALLENGE,
        "start_id": start_id,
        "challenge_id": challenge_id,
        "nonce": nonce,
        "actions": list(actions),
        "expires_at": expires_at,
        "message": message,
    }


def make_code_result(*, entry_id: str, outcome: str, message: str) -> dict[str, Any]:
    return {"type": CODE_RESULT, "entry_id": entry_id, "outcome": str(outcome), "message": message}


def make_courier_result(
    *, request_id: str, outcome: str, compartments: list[str], message: str
) -> dict[str, Any]:
    return {
        "type": COURIER_RESULT,
        "request_id": request_id,
        "outcome": str(outcome),
        "compartments": list(compartments),
        "message": message,
    }


def make_cabinet_state(*, state: str) -> dict[str, Any]:
    return {"type": CABINET_STATE, "state": str(state)}


# --- Frame builders: cabinet -> server -------------------------------------------------------


def make_heartbeat(*, sent_at: int, telemetry: Mapping[str, Any]) -> dict[str, Any]:
    # The id and every telemetry key are optional since 1.1, but servers of 1.0 require them.
    return {"type": HEARTBEAT, "id": new_id(), "sent_at": sent_at, "telemetry": dict(telemetry)}


def make_telemetry(
    *,
    temperature_c: float | None,
    power: str,
    battery_pct: int | None,
    firmware_version: str,
    config_version: int,
    doors: Mapping[str, str],
) -> dict[str, Any]:
    return {
        "temperature_c": temperature_c,
        "power": str(power),
        "battery_pct": battery_pct,
        "firmware_version": firmware_version,
        "config_version": config_version,
        "doors": {label: str(state) for label, state in doors.items()},
    }


def make_command_receipt(*, command_id: str, at: int) -> dict[str, Any]:
    return {"type": COMMAND_RECEIPT, "id": new_id(), "command_id": command_id, "at": at}


def make_command_rejected(*, command_id: str | None, reason: str, at: int) -> dict[str, Any]:
    return {
        "type": COMMAND_REJECTED,
        "id": new_id(),
        "command_id": command_id,
        "reason": str(reason),
        "at": at,
    }


def make_command_result(
    *, command_id: str, status: str, door: str | None, detail: str, at: int
) -> dict[str, Any]:
    return {
        "type": COMMAND_RESULT,
        "id": new_id(),
        "command_id": command_id,
        "status": str(status),
        "door": None if door is None else str(door),
        "detail": detail[:500],
        "at": at,
    }


def make_door_event(*, compartment: str, event: str, at: int) -> dict[str, Any]:
    return {
        "type": DOOR_EVENT,
        "id": new_id(),
        "compartment": compartment,
        "event": str(event),
        "at": at,
    }


def make_face_scan(*, purpose: str, image: bytes, light_on: bool, taken_at: int) -> dict[str, Any]:
    return {
        "type": FACE_SCAN,
        "id": new_id(),
        "purpose": str(purpose),
        "image": base64.b64encode(image).decode("ascii"),
        "light_on": light_on,
        "taken_at": taken_at,
    }


def make_face_start(*, purpose: str, at: int) -> dict[str, Any]:
    return {"type": FACE_START, "id": new_id(), "purpose": str(purpose), "at": at}


def make_face_burst(
    *,
    challenge_id: str,
    nonce: str,
    frames: list[tuple[int, bytes]],
    light_on: bool,
    taken_at: int,
) -> dict[str, Any]:
    """`frames`: (t_ms, JPEG bytes); t_ms counts from the burst's first frame (0)."""
    return {
        "type": FACE_BURST,
        "id": new_id(),
        "challenge_id": challenge_id,
        "nonce": nonce,
        "frames": [
            {"t_ms": t_ms, "jpeg": base64.b64encode(jpeg).decode("ascii")} for t_ms, jpeg in frames
        ],
        "light_on": light_on,
        "taken_at": taken_at,
    }


def make_face_confirm(*, confirm_id: str, digits: str, at: int) -> dict[str, Any]:
    return {
        "type": FACE_CONFIRM,
        "id": new_id(),
        "confirm_id": confirm_id,
        "digits": digits,
        "at": at,
    }


def make_code_entry(*, code: str, entered_at: int) -> dict[str, Any]:
    return {"type": CODE_ENTRY, "id": new_id(), "code": code, "entered_at": entered_at}


def make_courier_request(
    *,
    badge: str,
    pin: str,
    action: str,
    tracking_number: str | None,
    at: int,
    carrier: str | None = None,
) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": COURIER_REQUEST,
        "id": new_id(),
        "badge": badge,
        "pin": pin,
        "action": str(action),
        "tracking_number": tracking_number,
        "at": at,
    }
    if carrier is not None:
        frame["carrier"] = carrier
    return frame


# --- Command signing -----------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def check_command(command: Any) -> None:
    """Raise ProtocolError(INVALID_FRAME) unless `command` has the exact signed shape."""
    problems: list[str] = []
    if not isinstance(command, Mapping):
        raise ProtocolError(ErrorCode.INVALID_FRAME, "command must be an object")
    if not is_uuid(command.get("id")):
        problems.append("id")
    if not _is_serial(command.get("cabinet")):
        problems.append("cabinet")
    action = command.get("action")
    if not _one_of(Action)(action):
        problems.append("action")
    compartment = command.get("compartment", "missing")
    if action == Action.UNLOCK and not _is_label(compartment):
        problems.append("compartment")
    if action != Action.UNLOCK and compartment is not None:
        problems.append("compartment")
    if not isinstance(command.get("payload"), dict):
        problems.append("payload")
    issued_at: Any = command.get("issued_at")
    expires_at: Any = command.get("expires_at")
    if not is_ms(issued_at):
        problems.append("issued_at")
    elif not is_ms(expires_at) or not 0 < expires_at - issued_at <= MAX_COMMAND_LIFETIME_MS:
        problems.append("expires_at")
    if problems:
        raise ProtocolError(ErrorCode.INVALID_FRAME, f"command: invalid {', '.join(problems)}")


def canonical_command(command: Mapping[str, Any]) -> bytes:
    """The exact bytes that are signed: eight lines joined by "\\n", UTF-8, no trailing newline.

    cabinet-command-v1 / id / cabinet / action / compartment or "" / canonical JSON payload /
    issued_at / expires_at (decimal integers, unix milliseconds).
    """
    check_command(command)
    try:
        payload = canonical_json(command["payload"])
    except ValueError as exc:
        raise ProtocolError(ErrorCode.INVALID_FRAME, "command: payload is not JSON") from exc
    lines = [
        SIGNATURE_DOMAIN,
        command["id"],
        command["cabinet"],
        command["action"],
        command["compartment"] or "",
        payload,
        str(command["issued_at"]),
        str(command["expires_at"]),
    ]
    return "\n".join(lines).encode("utf-8")


def sign_command(key: bytes, command: Mapping[str, Any]) -> str:
    return hmac.new(key, canonical_command(command), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    reason: RejectReason | None = None

    def __bool__(self) -> bool:
        return self.ok


VERIFIED = VerifyResult(ok=True)


def verify_command(
    key: bytes,
    command: Any,
    signature: Any,
    *,
    cabinet: str,
    now_ms: int,
    max_clock_skew_ms: int = DEFAULT_MAX_CLOCK_SKEW_MS,
) -> VerifyResult:
    """Check shape, then signature, then addressee, then the validity window.

    The signature is checked before anything that depends on the command's content, so an
    unauthenticated frame never learns more than "bad_signature" (or "invalid_command").
    """
    try:
        message = canonical_command(command)
    except ProtocolError:
        return VerifyResult(False, RejectReason.INVALID_COMMAND)
    if not isinstance(signature, str) or not SIGNATURE_RE.fullmatch(signature):
        return VerifyResult(False, RejectReason.BAD_SIGNATURE)
    expected = hmac.new(key, message, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return VerifyResult(False, RejectReason.BAD_SIGNATURE)
    if command["cabinet"] != cabinet:
        return VerifyResult(False, RejectReason.WRONG_CABINET)
    if now_ms > command["expires_at"] + max_clock_skew_ms:
        return VerifyResult(False, RejectReason.EXPIRED)
    if now_ms < command["issued_at"] - max_clock_skew_ms:
        return VerifyResult(False, RejectReason.NOT_YET_VALID)
    return VERIFIED


# --- Reconnect backoff ---------------------------------------------------------------------


# Admission control (§11): a saturated server refuses a handshake with HTTP 503 and a
# `Retry-After` header (whole seconds), or, where it cannot choose the status, accepts and at
# once closes with 4429 and the reason "retry-after=<seconds>".
ADMISSION_HTTP_STATUS = 503
RETRY_AFTER_HEADER = "Retry-After"
RETRY_AFTER_REASON_PREFIX = "retry-after="
# A hint beyond this is treated as this: a broken proxy must not park a cabinet for hours.
MAX_RETRY_AFTER_S = 300.0


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` value or a 4429 close reason; None when there is none."""
    if not value:
        return None
    text = value.strip()
    if text.startswith(RETRY_AFTER_REASON_PREFIX):
        text = text[len(RETRY_AFTER_REASON_PREFIX) :]
    try:
        seconds = float(text)
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return min(seconds, MAX_RETRY_AFTER_S)


def admission_delay(retry_after: float, *, rng: random.Random | None = None) -> float:
    """How long a refused cabinet waits: the server's hint (already jittered by the server)
    plus up to half of it again, so that cabinets refused in the same second come back
    spread over a window rather than together."""
    return (rng or random).uniform(retry_after, retry_after * 1.5)


def backoff_delay(
    attempt: int, *, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None
) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**attempt)).

    attempt 0 is the first retry. Full jitter spreads a fleet that lost its server at the same
    instant (restart, daphne's 24 h close) over the whole window instead of synchronised waves.
    """
    ceiling = min(cap, base * 2 ** min(max(attempt, 0), 62))
    return (rng or random).uniform(0.0, ceiling)


# --- Worked example (docs/cabinet-protocol.md shows these values; a test keeps them equal) -------

EXAMPLE_SIGNING_KEY_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
EXAMPLE_COMMAND: dict[str, Any] = {
    "id": "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b",
    "action": "unlock",
    "cabinet": "CAB-0001",
    "compartment": "A01",
    "payload": {"reason": "pickup", "parcel": "P-2026-000123"},
    "issued_at": 1767225600000,
    "expires_at": 1767225720000,
}
