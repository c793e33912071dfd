from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from cabinet_agent import protocol
from cabinet_agent.protocol import RejectReason

DOC = Path(__file__).resolve().parents[2] / "docs" / "cabinet-protocol.md"
KEY = bytes(range(32))
NOW = 1_767_225_600_000


def command(**changes):
    base = protocol.make_command(
        cabinet="CAB-0001",
        action="unlock",
        compartment="A01",
        payload={"parcel": "P-1"},
        issued_at=NOW,
        ttl_ms=60_000,
        command_id="0b9b4a52-5f55-4a43-9d0c-7f3a3c1e2d10",
    )
    return {**base, **changes}


def verify(cmd, signature, *, now_ms=NOW + 1_000, cabinet="CAB-0001"):
    return protocol.verify_command(
        KEY, cmd, signature, cabinet=cabinet, now_ms=now_ms, max_clock_skew_ms=30_000
    )


def test_a_signed_command_verifies():
    cmd = command()
    result = verify(cmd, protocol.sign_command(KEY, cmd))
    assert result.ok and result.reason is None


@pytest.mark.parametrize(
    "change",
    [
        {"compartment": "A02"},
        {"expires_at": NOW + 3_600_000},
        {"issued_at": NOW - 1},
        {"id": "0b9b4a52-5f55-4a43-9d0c-7f3a3c1e2d11"},
        {"payload": {"parcel": "P-2"}},
        {"action": "set_config", "compartment": None},
    ],
)
def test_changing_any_signed_field_breaks_the_signature(change):
    signature = protocol.sign_command(KEY, command())
    assert verify(command(**change), signature).reason == RejectReason.BAD_SIGNATURE


def test_a_signature_made_with_another_key_is_refused():
    cmd = command()
    forged = protocol.sign_command(b"k" * 32, cmd)
    assert verify(cmd, forged).reason == RejectReason.BAD_SIGNATURE
    assert verify(cmd, "not-hex").reason == RejectReason.BAD_SIGNATURE


def test_an_expired_command_is_refused_after_the_skew_allowance():
    cmd = command()
    signature = protocol.sign_command(KEY, cmd)
    assert verify(cmd, signature, now_ms=cmd["expires_at"] + 30_000).ok
    assert verify(cmd, signature, now_ms=cmd["expires_at"] + 30_001).reason == RejectReason.EXPIRED


def test_a_command_from_the_future_is_not_yet_valid():
    cmd = command()
    signature = protocol.sign_command(KEY, cmd)
    assert verify(cmd, signature, now_ms=NOW - 30_000).ok
    assert verify(cmd, signature, now_ms=NOW - 30_001).reason == RejectReason.NOT_YET_VALID


def test_a_command_for_another_cabinet_is_refused():
    cmd = command(cabinet="CAB-0002")
    signature = protocol.sign_command(KEY, cmd)
    assert verify(cmd, signature).reason == RejectReason.WRONG_CABINET


@pytest.mark.parametrize(
    "change",
    [
        {"id": "not-a-uuid"},
        {"compartment": None},
        {"compartment": "A\n01"},
        {"issued_at": True},
        {"expires_at": NOW},
        {"action": "explode"},
        {"payload": [1]},
    ],
)
def test_a_malformed_command_is_invalid_rather_than_signed(change):
    cmd = command(**change)
    assert verify(cmd, "0" * 64).reason == RejectReason.INVALID_COMMAND
    with pytest.raises(protocol.ProtocolError):
        protocol.sign_command(KEY, cmd)


def test_the_canonical_form_is_eight_lines_with_sorted_compact_payload():
    cmd = command(payload={"b": 1, "a": "é"})
    assert protocol.canonical_command(cmd) == (
        b"cabinet-command-v1\n0b9b4a52-5f55-4a43-9d0c-7f3a3c1e2d10\nCAB-0001\nunlock\nA01\n"
        b'{"a":"\\u00e9","b":1}\n1767225600000\n1767225660000'
    )
    no_compartment = command(action="set_config", compartment=None)
    assert b"\nset_config\n\n{" in protocol.canonical_command(no_compartment)


def test_the_worked_example_in_the_document_matches_the_code():
    doc = DOC.read_text()
    section = doc[doc.index("### Worked example") :]
    key_hex = re.search(r"Key \(hex\): `([0-9a-f]+)`", section).group(1)
    command_json = re.search(r"```json\n(.*?)```", section, re.S).group(1)
    canonical = re.search(r"```text\n(.*?)\n```", section, re.S).group(1)
    signature = re.search(r"Signature: `([0-9a-f]{64})`", section).group(1)

    frame = json.loads(command_json)
    assert key_hex == protocol.EXAMPLE_SIGNING_KEY_HEX
    assert frame["command"] == protocol.EXAMPLE_COMMAND
    assert protocol.canonical_command(frame["command"]).decode() == canonical
    assert protocol.sign_command(bytes.fromhex(key_hex), frame["command"]) == signature
    assert frame["signature"] == signature
    # Independent of the module: plain HMAC over the text shown in the document.
    expected = hmac.new(bytes.fromhex(key_hex), canonical.encode(), hashlib.sha256).hexdigest()
    assert expected == signature


def test_every_message_example_in_the_document_is_valid():
    doc = DOC.read_text()
    examples = re.findall(r"```json\n(.*?)```", doc[: doc.index("### Worked example")], re.S)
    seen = set()
    for text in examples:
        frame = json.loads(text)
        if frame["type"] in protocol.SERVER_MESSAGE_TYPES:
            protocol.validate_server_frame(frame)
        else:
            protocol.validate_cabinet_frame(frame)
        seen.add(frame["type"])
    assert seen == protocol.SERVER_MESSAGE_TYPES | protocol.CABINET_MESSAGE_TYPES


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "Cabinet k3y1d0001.c2VjcmV0LXNlY3JldC1zZWNyZXQ",
            ("k3y1d0001", "c2VjcmV0LXNlY3JldC1zZWNyZXQ"),
        ),
        (
            "cabinet  k3y1d0001.c2VjcmV0LXNlY3JldC1zZWNyZXQ ",
            ("k3y1d0001", "c2VjcmV0LXNlY3JldC1zZWNyZXQ"),
        ),
        ("Bearer k3y1d0001.c2VjcmV0LXNlY3JldC1zZWNyZXQ", None),
        ("Cabinet k3y1d0001", None),
        ("Cabinet k3y1d0001.short", None),
        ("Cabinet k3y.c2VjcmV0LXNlY3JldC1zZWNyZXQ", None),
        ("Cabinet k3y1d0001.c2VjcmV0LXNlY3J/dC1zZWNyZXQ", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_credential(header, expected):
    assert protocol.parse_credential(header) == expected


def test_a_new_credential_parses_and_only_its_hash_is_needed_to_check_it():
    credential, key_id, secret_hash = protocol.new_credential()
    parsed = protocol.parse_credential(protocol.authorization_header(credential))
    assert parsed is not None and parsed[0] == key_id
    assert protocol.secret_matches(parsed[1], secret_hash)
    assert not protocol.secret_matches(parsed[1] + "x", secret_hash)


@pytest.mark.parametrize("attempt", [0, 1, 3, 6, 10, 200])
def test_backoff_stays_within_the_full_jitter_window(attempt):
    rng = random.Random(attempt)
    ceiling = min(60.0, 1.0 * 2**attempt)
    delays = [protocol.backoff_delay(attempt, base=1.0, cap=60.0, rng=rng) for _ in range(200)]
    assert all(0.0 <= delay <= ceiling for delay in delays)
    assert len(set(delays)) > 150


def test_backoff_spreads_a_fleet_over_the_whole_window():
    rng = random.Random(7)
    delays = [protocol.backoff_delay(8, base=1.0, cap=60.0, rng=rng) for _ in range(1_000)]
    assert min(delays) < 6.0 and max(delays) > 54.0


def test_frames_are_validated():
    heartbeat = protocol.make_heartbeat(
        sent_at=NOW,
        telemetry=protocol.make_telemetry(
            temperature_c=4.5,
            power="battery",
            battery_pct=80,
            firmware_version="1.0",
            config_version=3,
            doors={"A01": "closed"},
        ),
    )
    assert protocol.validate_cabinet_frame(heartbeat) is heartbeat
    with pytest.raises(protocol.ProtocolError) as unknown:
        protocol.validate_cabinet_frame({"type": "teleport", "id": "x"})
    assert unknown.value.code == protocol.ErrorCode.UNKNOWN_TYPE
    with pytest.raises(protocol.ProtocolError) as invalid:
        protocol.validate_cabinet_frame({**heartbeat, "telemetry": {"power": "nuclear"}})
    assert invalid.value.code == protocol.ErrorCode.INVALID_FRAME
    with pytest.raises(protocol.ProtocolError) as malformed:
        protocol.decode_frame("{not json")
    assert malformed.value.code == protocol.ErrorCode.MALFORMED_JSON
    scan = protocol.make_face_scan(
        purpose="pickup", image=b"\xff\xd8\xffdata", light_on=False, taken_at=NOW
    )
    protocol.validate_cabinet_frame(scan)
    with pytest.raises(protocol.ProtocolError):
        protocol.validate_cabinet_frame({**scan, "image": "bm90IGEganBlZw=="})


_JPEG_B64 = "/9j/4AAQSkZJRgABAQAAAQABAAD/2Q=="


def _burst_frame(**changes: Any) -> dict[str, Any]:
    frame = {
        "type": "face_burst",
        "id": protocol.new_id(),
        "challenge_id": protocol.new_id(),
        "nonce": "q3Vh0yJ8kM2xL5pN7rT9wZ1aB4cD6eF8",
        "frames": [{"t_ms": i * 100, "jpeg": _JPEG_B64} for i in range(6)],
        "light_on": False,
        "taken_at": 1767225590000,
    }
    frame.update(changes)
    return frame


@pytest.mark.parametrize(
    ("changes", "bad"),
    [
        ({"frames": [{"t_ms": i * 100, "jpeg": _JPEG_B64} for i in range(5)]}, "frames"),
        ({"frames": [{"t_ms": i * 100, "jpeg": _JPEG_B64} for i in range(21)]}, "frames"),
        ({"frames": [{"t_ms": i, "jpeg": "aGVsbG8="} for i in range(6)]}, "frames"),  # not JPEG
        ({"frames": [{"t_ms": -1, "jpeg": _JPEG_B64}] * 6}, "frames"),
        (
            {
                "frames": [
                    {
                        "t_ms": 0,
                        "jpeg": base64.b64encode(b"\xff\xd8\xff" + bytes(97 * 1024)).decode(),
                    }
                ]
                * 6
            },
            "frames",
        ),
        ({"nonce": "short"}, "nonce"),
        ({"challenge_id": "not-a-uuid"}, "challenge_id"),
    ],
)
def test_a_malformed_face_burst_is_an_invalid_frame(changes: dict[str, Any], bad: str) -> None:
    with pytest.raises(protocol.ProtocolError) as raised:
        protocol.validate_cabinet_frame(_burst_frame(**changes))
    assert raised.value.code == protocol.ErrorCode.INVALID_FRAME and bad in raised.value.message


@pytest.mark.parametrize("digits", ["123", "12345", "12a4", 1234])
def test_face_confirm_carries_exactly_four_digits(digits: Any) -> None:
    frame = protocol.make_face_confirm(confirm_id=protocol.new_id(), digits="0000", at=1)
    with pytest.raises(protocol.ProtocolError):
        protocol.validate_cabinet_frame({**frame, "digits": digits})


@pytest.mark.parametrize(
    "actions", [[], ["blink", "blink"], ["jump"], ["blink", "turn_left", "turn_right"]]
)
def test_a_face_challenge_has_one_or_two_known_actions(actions: list[str]) -> None:
    frame = protocol.make_face_challenge(
        start_id=protocol.new_id(),
        challenge_id=protocol.new_id(),
        nonce="q3Vh0yJ8kM2xL5pN7rT9wZ1aB4cD6eF8",
        actions=["blink"],
        expires_at=1,
        message="Please blink.",
    )
    protocol.validate_server_frame(frame)
    with pytest.raises(protocol.ProtocolError):
        protocol.validate_server_frame({**frame, "actions": actions})


def test_the_largest_burst_fits_one_protocol_frame() -> None:
    jpeg = b"\xff\xd8\xff" + bytes(protocol.BURST_MAX_TOTAL_BYTES // protocol.BURST_MAX_FRAMES - 3)
    frame = protocol.make_face_burst(
        challenge_id=protocol.new_id(),
        nonce="q3Vh0yJ8kM2xL5pN7rT9wZ1aB4cD6eF8",
        frames=[(i * 100, jpeg) for i in range(protocol.BURST_MAX_FRAMES)],
        light_on=False,
        taken_at=1,
    )
    text = protocol.encode_frame(frame)
    assert len(text.encode()) < protocol.MAX_FRAME_BYTES
    protocol.validate_cabinet_frame(protocol.decode_frame(text))
