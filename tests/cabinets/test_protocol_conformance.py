"""The server, the reference agent and docs/cabinet-protocol.md agree: one test per rule.

Driven in-process with WebsocketCommunicator against config.asgi's application (the real
channels_redis layer and database); rules that live in the transport (frame size limits, what
the ASGI server logs) run against a real uvicorn (tests/live/server.py)."""

from __future__ import annotations

import logging

import pytest
from asgiref.sync import async_to_sync

from cabinet_agent import protocol
from cabinets.services import cabinet_credential_issue
from core.actors import Actor
from tests.cabinets.link import communicator, receive, send
from tests.factories import CabinetFactory, CompartmentFactory

pytestmark = pytest.mark.django_db(transaction=True)
STAFF = Actor.system("test")


@pytest.fixture
def provisioned():  # type: ignore[no-untyped-def]
    cabinet = CabinetFactory(serial="SH-CONFORM-1")
    compartment = CompartmentFactory(cabinet=cabinet, label="A01")
    issued = cabinet_credential_issue(cabinet=cabinet, actor=STAFF)
    return cabinet, compartment, issued


async def _connect(credential: str):  # type: ignore[no-untyped-def]
    comm = communicator(credential)
    connected, _ = await comm.connect(timeout=5)
    assert connected
    hello = await receive(comm)
    assert hello["type"] == "hello"
    return comm, hello


async def _still_open(comm) -> None:  # type: ignore[no-untyped-def]
    """A good event is acknowledged: the link survived whatever came before."""
    event = protocol.make_door_event(compartment="A01", event="closed", at=protocol.now_ms())
    await send(comm, event)
    assert await receive(comm) == {"type": "ack", "ref": event["id"]}


# --- §2 Frames -----------------------------------------------------------------------------


def test_a_2000_deep_json_object_gets_an_error_frame_and_the_socket_stays_open(
    provisioned, caplog
) -> None:  # type: ignore[no-untyped-def]
    _, _, issued = provisioned
    deep = '{"a":' * 2000 + "1" + "}" * 2000
    frame = '{"type": "door_event", "id": "%s", "x": %s}' % (protocol.new_id(), deep)
    assert 11 * 1024 <= len(frame) < 12 * 1024

    async def scenario() -> None:
        comm, _ = await _connect(issued.credential)
        await comm.send_to(text_data=frame)
        error = await receive(comm)
        assert (error["type"], error["code"]) == ("error", "invalid_frame")
        assert str(protocol.MAX_NESTING_DEPTH) in error["message"]
        await _still_open(comm)
        await comm.disconnect()

    with caplog.at_level(logging.INFO):
        async_to_sync(scenario)()
    assert not [record for record in caplog.records if record.exc_info]


@pytest.mark.parametrize("depth", [protocol.MAX_NESTING_DEPTH - 1, protocol.MAX_NESTING_DEPTH])
def test_nesting_up_to_the_documented_depth_is_accepted_and_one_more_level_is_not(
    depth: int,
) -> None:
    # The frame itself is the first level.
    frame = '{"type": "heartbeat", "x": %s}' % ("[" * depth + "]" * depth)
    if depth < protocol.MAX_NESTING_DEPTH:
        assert protocol.decode_frame(frame)["type"] == "heartbeat"
    else:
        with pytest.raises(protocol.ProtocolError) as refused:
            protocol.decode_frame(frame)
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
        comm, _ = await _connect(issued.credential)
        await comm.send_to(text_data=body % event_id)
        error = await receive(comm)
        assert (error["type"], error["code"], error["ref"]) == ("error", "invalid_frame", event_id)
        await comm.send_to(text_data='{"id": 12}')  # not a string: nothing to refer to
        assert (await receive(comm))["ref"] is None
        await comm.disconnect()

    async_to_sync(scenario)()
