"""The server, the reference agent and docs/cabinet-protocol.md agree: one test per rule.

Driven in-process with WebsocketCommunicator against config.asgi's application (the real
channels_redis layer and database); rules that live in the transport (frame size limits, what
the ASGI server logs) run against a real uvicorn (tests/live/server.py)."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from cabinet_agent import protocol
from cabinet_agent.agent import REFUSING_CLOSE_CODES, CabinetAgent
from cabinet_agent.config import AgentConfig
from cabinet_agent.outbox import Outbox
from cabinets.models import Cabinet, CabinetCommand, CommandStatus, DoorState
from cabinets.presence import presence_snapshot, presence_touch
from cabinets.services import credentials
from cabinets.services.commands import compartment_unlock
from cabinets.services.credentials import (
    IssuedCredential,
    cabinet_credential_issue,
    cabinet_credential_revoke,
    cabinet_credentials_issue_bulk,
)
from core.actors import Actor
from tests.cabinets.link import (
    closed_with,
    open_link,
    push,
    receive,
    send,
    still_open,
    telemetry,
)
from tests.factories import CabinetFactory, CompartmentFactory
from tests.live.server import ROOT, LiveServer, live_env

pytestmark = pytest.mark.django_db(transaction=True)
STAFF = Actor.system("test")
DOC = ROOT / "docs" / "cabinet-protocol.md"


# --- §2 Frames -----------------------------------------------------------------------------


def test_a_2000_deep_json_object_gets_an_error_frame_and_the_socket_stays_open(
    provisioned, caplog
) -> None:  # type: ignore[no-untyped-def]
    _, _, issued = provisioned
    deep = '{"a":' * 2000 + "1" + "}" * 2000
    frame = '{"type": "door_event", "id": "%s", "x": %s}' % (protocol.new_id(), deep)
    assert 11 * 1024 <= len(frame) < 12 * 1024

    async def scenario() -> None:
        comm, _ = await open_link(issued.credential)
        await comm.send_to(text_data=frame)
        error = await receive(comm)
        assert (error["type"], error["code"]) == ("error", "invalid_frame")
        assert str(protocol.MAX_NESTING_DEPTH) in error["message"]
        await still_open(comm)
        await comm.disconnect()

    with caplog.at_level(logging.INFO):
        async_to_sync(scenario)()
    assert not [record for record in caplog.records if record.exc_info]


def test_nesting_up_to_the_documented_depth_is_accepted_and_one_more_level_is_not() -> None:
    def nested(depth: int) -> str:
        # The frame itself is the first level.
        inner = depth - 1
        return '{"type": "heartbeat", "x": %s}' % ("[" * inner + "]" * inner)

    assert protocol.decode_frame(nested(protocol.MAX_NESTING_DEPTH))["type"] == "heartbeat"
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.decode_frame(nested(protocol.MAX_NESTING_DEPTH + 1))
    assert refused.value.code == protocol.ErrorCode.INVALID_FRAME
    # Brackets inside strings do not count.
    inside = '{"type": "heartbeat", "x": "%s"}' % ("[{" * 100)
    assert protocol.decode_frame(inside)["x"] == "[{" * 100


@pytest.mark.parametrize(
    "body",
    ['{"id": "%s"}', '{"id": "%s", "type": 7}', '{"id": "%s", "type": null, "at": 1}'],
)
def test_an_error_for_a_frame_with_an_id_and_no_type_carries_that_id_as_ref(
    provisioned, body: str
) -> None:  # type: ignore[no-untyped-def]
    _, _, issued = provisioned
    event_id = protocol.new_id()

    async def scenario() -> None:
        comm, _ = await open_link(issued.credential)
        await comm.send_to(text_data=body % event_id)
        error = await receive(comm)
        assert (error["type"], error["code"], error["ref"]) == ("error", "invalid_frame", event_id)
        await comm.send_to(text_data='{"id": 12}')  # not a string: nothing to refer to
        assert (await receive(comm))["ref"] is None
        await comm.disconnect()

    async_to_sync(scenario)()


# --- §4 Heartbeats -------------------------------------------------------------------------


async def _poll(condition, *, within_s: float = 10.0):  # type: ignore[no-untyped-def]
    """Wait for `condition()` (sync, run on a thread) to be truthy, with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        value = await sync_to_async(condition, thread_sensitive=False)()
        if value:
            return value
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_a_minimal_heartbeat_is_accepted_and_updates_liveness(provisioned) -> None:  # type: ignore[no-untyped-def]
    cabinet, _, issued = provisioned
    long_ago = 1_000.0

    async def scenario() -> None:
        comm, _ = await open_link(issued.credential)
        await presence_touch(cabinet.pk, at=long_ago)
        minimal = {"type": "heartbeat", "sent_at": protocol.now_ms(), "telemetry": {}}
        await send(comm, minimal)
        await still_open(comm)  # the next frame is that ack: no error for the heartbeat
        await _poll(lambda: presence_snapshot().get(cabinet.pk, 0) > long_ago)
        await comm.disconnect()

    async_to_sync(scenario)()


def test_a_heartbeat_updates_the_telemetry_it_carries_and_keeps_the_rest(provisioned) -> None:  # type: ignore[no-untyped-def]
    cabinet, compartment, issued = provisioned
    Cabinet.objects.filter(pk=cabinet.pk).update(
        telemetry=telemetry(), firmware_version="1.2.0", config_version="7"
    )

    async def scenario() -> None:
        comm, _ = await open_link(issued.credential)
        partial = {"type": "heartbeat", "sent_at": 1, "telemetry": {"doors": {"A01": "open"}}}
        await send(comm, partial)
        await still_open(comm)
        await comm.send_to(
            text_data='{"type": "heartbeat", "sent_at": 1, "telemetry": {"power": "nuclear"}}'
        )
        invalid = await receive(comm)  # a key that is present is still checked
        assert (invalid["code"], invalid["ref"]) == ("invalid_frame", None)
        await comm.disconnect()

    async_to_sync(scenario)()
    cabinet.refresh_from_db()
    compartment.refresh_from_db()
    assert compartment.door_state == DoorState.OPEN
    assert (cabinet.firmware_version, cabinet.config_version) == ("1.2.0", "7")
    assert cabinet.telemetry["power"] == "mains"


# --- §3 hello --------------------------------------------------------------------------------


def test_hello_announces_the_allowed_clock_skew_from_the_setting(provisioned, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CABINET_MAX_CLOCK_SKEW_MS = 12_345
    _, _, issued = provisioned

    async def scenario() -> dict[str, Any]:
        comm, hello = await open_link(issued.credential)
        await comm.disconnect()
        return hello  # type: ignore[no-any-return]

    hello = async_to_sync(scenario)()
    assert hello["max_clock_skew_ms"] == 12_345
    assert protocol.validate_server_frame(hello) is hello
    # Optional: a hello of a 1.0 server is still valid; a value out of range is not.
    del hello["max_clock_skew_ms"]
    protocol.validate_server_frame(hello)
    for wrong in (-1, protocol.MAX_ANNOUNCED_CLOCK_SKEW_MS + 1, "30000", True):
        with pytest.raises(protocol.ProtocolError):
            protocol.validate_server_frame({**hello, "max_clock_skew_ms": wrong})


# --- §1 Close codes sent by the server -------------------------------------------------------


def test_a_rotated_credential_closes_the_open_link_with_4401_and_a_revoked_one_with_4403(
    provisioned,
) -> None:  # type: ignore[no-untyped-def]
    cabinet, _, issued = provisioned
    closes = {
        "rotated": {"type": "link.revoke", "reason": "rotated"},
        "revoked": {"type": "link.revoke", "reason": "revoked"},
        "no reason": {"type": "link.revoke"},
    }

    async def scenario() -> dict[str, int]:
        codes = {}
        for name, message in closes.items():
            comm, _ = await open_link(issued.credential)
            await push(cabinet.pk, message)
            codes[name] = await closed_with(comm)
        return codes

    assert async_to_sync(scenario)() == {"rotated": 4401, "revoked": 4403, "no reason": 4403}
    assert (protocol.CloseCode.BAD_CREDENTIAL, protocol.CloseCode.REVOKED) == (4401, 4403)


def _key_id(issued: IssuedCredential) -> str:
    parsed = protocol.parse_credential(protocol.authorization_header(issued.credential))
    assert parsed is not None
    return parsed[0]


def test_a_rotation_closes_the_link_of_the_old_credential_and_not_the_new_ones(
    provisioned, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    # The rotation race: the cabinet gets its new credential and reconnects before the close
    # for the old one reaches every server. That close must not drop the new link.
    cabinet, _, old = provisioned
    held: list[tuple[int, dict[str, Any]]] = []
    monkeypatch.setattr(
        credentials,
        "push_after_commit",
        lambda cabinet_id, message: held.append((cabinet_id, message)),
    )

    async def scenario() -> None:
        old_link, _ = await open_link(old.credential)
        new = await sync_to_async(cabinet_credential_issue)(cabinet=cabinet, actor=STAFF)
        [(cabinet_id, rotation)] = held
        assert cabinet_id == cabinet.pk
        assert rotation["key_id"] == _key_id(old)
        await push(cabinet.pk, rotation)
        assert await closed_with(old_link) == protocol.CloseCode.BAD_CREDENTIAL
        new_link, _ = await open_link(new.credential)
        await push(cabinet.pk, rotation)  # arriving late
        await still_open(new_link)
        # A close naming the new credential does close it.
        await sync_to_async(cabinet_credential_revoke)(cabinet=cabinet, actor=STAFF, reason="lost")
        await push(*held[-1])
        assert await closed_with(new_link) == protocol.CloseCode.REVOKED

    async_to_sync(scenario)()


def test_a_bulk_rotation_names_each_cabinets_old_credential(provisioned, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cabinet, _, old = provisioned
    other = CabinetFactory(serial="SH-LINK-2")
    other_old = cabinet_credential_issue(cabinet=other, actor=STAFF)
    held: list[dict[int, dict[str, Any]]] = []
    monkeypatch.setattr(credentials, "push_many_after_commit", held.append)
    cabinet_credentials_issue_bulk(cabinets=[cabinet, other], actor=STAFF)
    assert held == [
        {
            c.pk: {
                "type": "link.revoke",
                "reason": "rotated",
                "key_id": _key_id(i),
            }
            for c, i in ((cabinet, old), (other, other_old))
        }
    ]


def test_a_cabinet_that_connects_in_maintenance_gets_cabinet_state_right_after_hello(
    provisioned,
) -> None:  # type: ignore[no-untyped-def]
    cabinet, _, issued = provisioned

    async def scenario(*, expect_state: bool) -> None:
        comm, _ = await open_link(issued.credential)
        if expect_state:
            assert await receive(comm) == protocol.make_cabinet_state(state="maintenance")
        await still_open(comm)  # and, for an active one, nothing came before the ack
        await comm.disconnect()

    async_to_sync(scenario)(expect_state=False)
    Cabinet.objects.filter(pk=cabinet.pk).update(state="maintenance")
    async_to_sync(scenario)(expect_state=True)


def test_retiring_the_cabinet_sends_cabinet_state_then_closes_the_link_with_4403(
    provisioned,
) -> None:  # type: ignore[no-untyped-def]
    cabinet, _, issued = provisioned

    async def scenario() -> None:
        comm, _ = await open_link(issued.credential)
        await push(cabinet.pk, {"type": "link.state", "state": "retired"})
        announced = await receive(comm)
        assert announced == {"type": "cabinet_state", "state": "retired"}
        assert protocol.validate_server_frame(announced) is announced
        assert await closed_with(comm) == protocol.CloseCode.REVOKED

    async_to_sync(scenario)()


def test_maintenance_and_active_are_announced_with_cabinet_state_and_the_link_stays_up(
    provisioned,
) -> None:  # type: ignore[no-untyped-def]
    cabinet, _, issued = provisioned

    async def scenario() -> None:
        comm, _ = await open_link(issued.credential)
        for state in ("maintenance", "active"):
            await push(cabinet.pk, {"type": "link.state", "state": state})
            assert await receive(comm) == protocol.make_cabinet_state(state=state)
            await still_open(comm)
        await comm.disconnect()

    async_to_sync(scenario)()


# --- Against a real uvicorn: the transport ----------------------------------------------------


def _close_code_table() -> dict[int, tuple[str, str, str]]:
    """docs/cabinet-protocol.md §1 "Close codes": code -> (sent by, meaning, reaction)."""
    text = DOC.read_text()
    section = text[text.index("### Close codes") :]
    section = section[: section.index("\n## ")]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].isdigit():
            rows[int(cells[0])] = (cells[1], cells[2], cells[3])
    return rows


def _headers(credential: str) -> dict[str, str]:
    return {
        "Authorization": protocol.authorization_header(credential),
        protocol.PROTOCOL_HEADER: str(protocol.PROTOCOL_VERSION),
    }


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), 10))  # type: ignore[no-any-return]


async def _close_code(ws: ClientConnection) -> int | None:
    """Read until the server closes; the code of its close frame (None: no close frame)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 15)
    return closed.value.rcvd.code if closed.value.rcvd else None


@pytest.mark.slow
def test_a_frame_over_1_mib_gets_frame_too_large_and_one_over_2_mib_closes_with_1009(
    provisioned, asgi_server_process: LiveServer
) -> None:  # type: ignore[no-untyped-def]
    _, _, issued = provisioned
    assert protocol.MAX_FRAME_BYTES < protocol.TRANSPORT_MAX_FRAME_BYTES == 2 * 1024 * 1024

    def padded(size: int) -> str:
        head = '{"type": "door_event", "pad": "'
        return head + "x" * (size - len(head) - 2) + '"}'

    async def scenario() -> int | None:
        async with connect(
            asgi_server_process.ws_url,
            additional_headers=_headers(issued.credential),
            compression=None,
            max_size=None,
        ) as ws:
            assert (await _recv(ws))["type"] == "hello"
            await ws.send(padded(protocol.MAX_FRAME_BYTES + 1))
            error = await _recv(ws)
            assert (error["type"], error["code"]) == ("error", "frame_too_large")
            await ws.send(padded(protocol.TRANSPORT_MAX_FRAME_BYTES))  # at the limit: still up
            assert (await _recv(ws))["code"] == "frame_too_large"
            event = protocol.make_door_event(compartment="Z99", event="closed", at=1)
            await ws.send(protocol.encode_frame(event))
            assert await _recv(ws) == {"type": "ack", "ref": event["id"]}
            await ws.send(padded(protocol.TRANSPORT_MAX_FRAME_BYTES + 1))
            return await _close_code(ws)

    assert asyncio.run(scenario()) == protocol.CloseCode.MESSAGE_TOO_BIG == 1009
    sent_by, _, reaction = _close_code_table()[1009]
    assert "server" in sent_by or "either" in sent_by
    assert reaction.startswith("reconnect")


@pytest.mark.slow
def test_a_graceful_server_restart_closes_with_1012_which_the_document_lists(
    provisioned, asgi_server_process: LiveServer
) -> None:  # type: ignore[no-untyped-def]
    _, _, issued = provisioned

    async def scenario() -> int | None:
        async with connect(
            asgi_server_process.ws_url, additional_headers=_headers(issued.credential)
        ) as ws:
            assert (await _recv(ws))["type"] == "hello"
            await asyncio.to_thread(asgi_server_process.stop)
            return await _close_code(ws)

    assert asyncio.run(scenario()) == protocol.CloseCode.SERVICE_RESTART == 1012
    sent_by, _, reaction = _close_code_table()[1012]
    assert sent_by == "server" and reaction.startswith("reconnect")


def test_the_server_refuses_compression_a_client_offers(
    provisioned, asgi_server_process: LiveServer
) -> None:  # type: ignore[no-untyped-def]
    """A socket with permessage-deflate costs about twice the server memory; cabinet frames are
    small JSON. A client that offers it gets a plain link, which still works."""
    _, _, issued = provisioned

    async def scenario() -> list[Any]:
        async with connect(
            asgi_server_process.ws_url,
            additional_headers=_headers(issued.credential),
            compression="deflate",
        ) as ws:
            assert (await _recv(ws))["type"] == "hello"
            event = protocol.make_door_event(compartment="Z99", event="closed", at=1)
            await ws.send(protocol.encode_frame(event))
            assert await _recv(ws) == {"type": "ack", "ref": event["id"]}
            return list(ws.protocol.extensions)

    assert asyncio.run(scenario()) == []


@pytest.mark.parametrize(
    "command",
    [
        ROOT / "Procfile",
        ROOT / "docker-compose.reference.yml",
        ROOT / "scripts" / "run.py",
        ROOT / "tests" / "live" / "server.py",
    ],
    ids=lambda path: path.name,
)
def test_every_place_that_starts_uvicorn_sets_the_documented_websocket_limits(
    command: Path,
) -> None:
    text = command.read_text()
    # uvicorn's default (16 MiB) would let a 15 MiB frame through to decode_frame.
    limit = str(protocol.TRANSPORT_MAX_FRAME_BYTES)
    assert re.search(
        r"--ws-max-size[\s\"',]+(" + limit + r"|str\(protocol\.TRANSPORT_MAX_FRAME_BYTES\))", text
    )
    assert "2 MiB" in DOC.read_text()
    # And none negotiates compression (memory per socket: docs/benchmarks.md).
    assert re.search(r"--ws-per-message-deflate[\s\"',]+false", text)


# --- §10 The reference agent against the real server -------------------------------------------


def _agent(server: LiveServer, issued: IssuedCredential, state_dir: Path) -> CabinetAgent:
    config = AgentConfig(
        server_url=server.ws_url,
        serial=issued.serial,
        credential=issued.credential,
        signing_key=bytes.fromhex(issued.signing_key_hex),
        compartments=("A01",),
        state_dir=state_dir,
        hello_timeout=10.0,
        backoff_base=0.05,
        backoff_cap=0.5,
        reconnect_spread=0.0,
    )
    return CabinetAgent(config)


async def _until(condition, *, within_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.mark.slow
def test_an_event_the_server_refuses_as_invalid_leaves_the_agents_queue_and_is_not_replayed(
    provisioned, asgi_server_process: LiveServer, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    _, _, issued = provisioned
    # Queued by a buggy build: a label the protocol does not allow. The server will never
    # accept it, whatever the number of replays.
    invalid = protocol.make_door_event(compartment="not a label!", event="closed", at=1)
    outbox = Outbox(tmp_path / "agent.sqlite3")
    outbox.enqueue(invalid, created_ms=1)
    outbox.close()

    async def scenario() -> None:
        first = _agent(asgi_server_process, issued, tmp_path)
        task = asyncio.create_task(first.run())
        await _until(lambda: first.discarded_events == [invalid["id"]])
        refusal = next(e for e in first.server_errors if e["ref"] == invalid["id"])
        assert refusal["code"] == "invalid_frame"
        first.stop()
        await task

        # After a restart (a reconnect with the same queue) nothing of it is sent again: a good
        # event queued behind it is the first thing the server answers.
        marker = protocol.make_door_event(compartment="A01", event="closed", at=2)
        outbox = Outbox(tmp_path / "agent.sqlite3")
        assert outbox.pending() == []
        outbox.enqueue(marker, created_ms=2)
        outbox.close()
        second = _agent(asgi_server_process, issued, tmp_path)
        task = asyncio.create_task(second.run())
        await _until(lambda: marker["id"] in second.acked)
        assert second.server_errors == []
        second.stop()
        await task

    asyncio.run(scenario())


# --- §4, §12 unknown_command -------------------------------------------------------------------


def _reports_about(command_id: str) -> list[dict[str, Any]]:
    now = protocol.now_ms()
    return [
        protocol.make_command_result(
            command_id=command_id, status="succeeded", door="open", detail="", at=now
        ),
        protocol.make_command_receipt(command_id=command_id, at=now),
        protocol.make_command_rejected(command_id=command_id, reason="expired", at=now),
    ]


def test_a_report_about_a_command_the_server_does_not_know_gets_unknown_command_and_an_ack(
    provisioned,
) -> None:  # type: ignore[no-untyped-def]
    _, compartment, issued = provisioned
    # Finished already: a late receipt for it changes nothing, but names a known command.
    mine = compartment_unlock(compartment=compartment, actor=STAFF, reason="mine")
    CabinetCommand.objects.filter(pk=mine.pk).update(status=CommandStatus.SUCCEEDED)

    async def scenario() -> None:
        comm, _ = await open_link(issued.credential)
        for report in _reports_about(protocol.new_id()):
            await send(comm, report)
            error = await receive(comm)
            assert (error["type"], error["code"], error["ref"]) == (
                "error",
                "unknown_command",
                report["id"],
            )
            assert await receive(comm) == {"type": "ack", "ref": report["id"]}
        # A rejection without a usable command id names no command: acked, no error.
        anonymous = protocol.make_command_rejected(command_id=None, reason="invalid_command", at=1)
        await send(comm, anonymous)
        assert await receive(comm) == {"type": "ack", "ref": anonymous["id"]}
        late = protocol.make_command_receipt(command_id=str(mine.pk), at=1)
        await send(comm, late)
        assert await receive(comm) == {"type": "ack", "ref": late["id"]}
        await comm.disconnect()

    async_to_sync(scenario)()


def test_a_report_about_another_cabinets_command_gets_unknown_command_and_changes_nothing(
    provisioned,
) -> None:  # type: ignore[no-untyped-def]
    _, _, issued = provisioned
    other = CompartmentFactory(cabinet=CabinetFactory(serial="SH-CONFORM-2"), label="A01")
    theirs = compartment_unlock(compartment=other, actor=STAFF, reason="theirs")

    async def scenario() -> None:
        comm, _ = await open_link(issued.credential)
        for report in _reports_about(str(theirs.pk)):
            await send(comm, report)
            error = await receive(comm)
            assert (error["code"], error["ref"]) == ("unknown_command", report["id"])
            assert "SH-CONFORM-2" not in error["message"]
            assert await receive(comm) == {"type": "ack", "ref": report["id"]}
        await comm.disconnect()

    async_to_sync(scenario)()
    theirs.refresh_from_db()
    assert theirs.status == CommandStatus.PENDING
    assert theirs.received_at is None and theirs.completed_at is None


# --- §1 Nothing in the URL ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_credential_in_the_url_is_refused_before_accept_and_never_written_to_the_log(
    provisioned, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    _, _, issued = provisioned
    secret = issued.credential.split(".", 1)[1]
    # Everything the server can log: uvicorn's access log and its debug output (which
    # includes request lines and headers), Django's request log.
    server = LiveServer(
        tmp_path / "uvicorn.log", env=live_env(), access_log=True, log_level="debug"
    )
    server.start()
    base = f"ws://127.0.0.1:{server.port}"
    wrong_urls = [
        f"{base}/ws/cabinet/{issued.credential}",
        f"{base}/ws/cabinet/{issued.credential}/",
        f"{base}/{issued.credential}",
        f"{base}/ws/cabinet/?credential={issued.credential}",
    ]

    async def scenario() -> list[int]:
        statuses = []
        for url in wrong_urls:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url, additional_headers=_headers(issued.credential)):
                    pass
            statuses.append(refused.value.response.status_code)
        # The right URL still works, with the credential where it belongs.
        async with connect(server.ws_url, additional_headers=_headers(issued.credential)) as ws:
            assert (await _recv(ws))["type"] == "hello"
        return statuses

    try:
        statuses = asyncio.run(scenario())
        # A plain HTTP request to such a URL is not a websocket, but is logged all the same.
        with pytest.raises(urllib.error.HTTPError) as not_found:
            urllib.request.urlopen(f"{server.url}/ws/cabinet/{issued.credential}", timeout=10)
        assert not_found.value.code == 404
    finally:
        server.stop()
    assert all(status in (403, 404) for status in statuses), statuses
    log = server.log_path.read_text(errors="replace")
    # The log was on and still says what happened, without the URL.
    assert '"WebSocket /ws/cabinet/" [accepted]' in log
    assert log.count('"WebSocket [redacted]" 403') == len(wrong_urls)
    assert secret not in log
    assert "Traceback" not in log


# --- §1 The close-code table as a whole ---------------------------------------------------------

# Every code the server sends, and the test in which it does.
SERVER_CLOSE_CODE_TESTS = {
    1009: "test_protocol_conformance:test_a_frame_over_1_mib_gets_frame_too_large_and_one_over_2_mib_closes_with_1009",
    1012: "test_protocol_conformance:test_a_graceful_server_restart_closes_with_1012_which_the_document_lists",
    4400: "test_consumer:test_bad_frames_close_the_link_only_when_more_than_ten_arrive_within_a_minute",
    4401: "test_protocol_conformance:test_a_rotated_credential_closes_the_open_link_with_4401_and_a_revoked_one_with_4403",
    4403: "test_protocol_conformance:test_retiring_the_cabinet_sends_cabinet_state_then_closes_the_link_with_4403",
    4408: "test_consumer:test_a_silent_cabinet_is_closed_with_4408_after_three_heartbeat_intervals",
    4409: "test_consumer:test_a_second_connection_replaces_the_first",
    4429: "test_admission:test_a_busy_process_refuses_a_handshake_at_once_with_4429_and_a_retry_hint",
}


def test_every_close_code_the_document_says_the_server_sends_is_one_it_sends_in_a_test() -> None:
    table = _close_code_table()
    sent_by_server = {
        code for code, (sent_by, _, _) in table.items() if sent_by in ("server", "either")
    }
    assert sent_by_server == set(SERVER_CLOSE_CODE_TESTS)
    for where in SERVER_CLOSE_CODE_TESTS.values():
        module, name = where.split(":")
        assert callable(getattr(importlib.import_module(f"tests.cabinets.{module}"), name))
    assert all(
        sent_by in ("server", "either", "cabinet", "(none)") for sent_by, _, _ in table.values()
    )
    # Every code the code base names is in the table, and the reference agent reacts to each
    # as the table says: "refused" waits uniform(cap/2, cap), the rest reconnect soon.
    assert set(protocol.CloseCode) <= set(table)
    refusing = {code for code, (_, _, reaction) in table.items() if reaction.startswith("refused")}
    assert refusing == set(REFUSING_CLOSE_CODES)
