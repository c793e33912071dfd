"""The cabinet websocket consumer, driven in-process with WebsocketCommunicator over the real
channels_redis layer and the real database."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import redis
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.db import OperationalError, connection
from django.utils import timezone

from cabinet_agent import protocol
from cabinets import consumers, presence, selectors
from cabinets.models import (
    Cabinet,
    CabinetCommand,
    CabinetMessage,
    CommandStatus,
    Compartment,
    ConnectionState,
    DoorState,
    ServiceState,
)
from cabinets.presence import presence_snapshot
from cabinets.services.commands import command_issue, commands_expire, compartment_unlock
from cabinets.services.credentials import cabinet_credential_issue, cabinet_credential_revoke
from cabinets.services.liveness import cabinets_liveness_sync
from core.actors import Actor
from tests.cabinets.link import (
    closed_with,
    communicator,
    open_link,
    receive,
    send,
    still_open,
    telemetry,
)

pytestmark = pytest.mark.django_db(transaction=True)
STAFF = Actor.system("test")


@pytest.mark.parametrize("credential", [None, "garbage", "abcd1234.this-is-not-the-secret-at-all"])
def test_it_refuses_a_cabinet_without_a_valid_credential(provisioned, credential) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        comm = communicator(credential)
        connected, _ = await comm.connect(timeout=5)
        assert not connected

    async_to_sync(scenario)()


def test_it_refuses_a_revoked_credential_and_accepts_the_rotated_one(provisioned) -> None:  # type: ignore[no-untyped-def]
    cabinet, _, old = provisioned
    new = cabinet_credential_issue(cabinet=cabinet, actor=STAFF)

    async def scenario() -> None:
        refused = communicator(old.credential)
        assert not (await refused.connect(timeout=5))[0]
        comm, hello = await open_link(new.credential)
        assert hello["cabinet"] == cabinet.serial
        await comm.disconnect()

    async_to_sync(scenario)()
    cabinet_credential_revoke(cabinet=cabinet, actor=STAFF, reason="stolen")

    async def after_revoke() -> None:
        assert not (await communicator(new.credential).connect(timeout=5))[0]

    async_to_sync(after_revoke)()


def test_a_heartbeat_marks_the_cabinet_online_and_stores_telemetry(provisioned) -> None:  # type: ignore[no-untyped-def]
    cabinet, compartment, issued = provisioned

    async def scenario() -> None:
        comm, hello = await open_link(issued.credential)
        assert hello["heartbeat_interval"] > 0
        await send(
            comm,
            protocol.make_heartbeat(
                sent_at=protocol.now_ms(), telemetry=telemetry(doors={"A01": "open"})
            ),
        )
        # a heartbeat is not acknowledged; a following bad frame proves it was processed
        await comm.send_to(text_data="{")
        assert (await receive(comm))["code"] == "malformed_json"
        await comm.disconnect()

    async_to_sync(scenario)()
    cabinet.refresh_from_db()
    compartment.refresh_from_db()
    assert cabinet.telemetry["temperature_c"] == 21.5
    assert cabinet.firmware_version == "1.2.0"
    assert cabinet.config_version == "7"
    assert compartment.door_state == DoorState.OPEN
    # the heartbeat's telemetry write marked it online; gone from presence, the next liveness
    # tick marks it offline
    assert cabinet.connection_state == ConnectionState.ONLINE
    cabinets_liveness_sync()
    cabinet.refresh_from_db()
    assert cabinet.connection_state == ConnectionState.OFFLINE


def test_while_connected_the_cabinet_is_online_and_present(provisioned) -> None:  # type: ignore[no-untyped-def]
    cabinet, _, issued = provisioned

    async def scenario() -> None:
        comm, _ = await open_link(issued.credential)
        # connecting writes nothing to the database; the liveness tick records it
        await database_sync_to_async(cabinets_liveness_sync)()
        state = await database_sync_to_async(
            lambda: Cabinet.objects.get(pk=cabinet.pk).connection_state
        )()
        assert state == ConnectionState.ONLINE
        assert cabinet.pk in await database_sync_to_async(presence_snapshot)()
        await comm.disconnect()

    async_to_sync(scenario)()
    assert cabinet.pk not in presence_snapshot()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "malformed_json"),
        ("[1, 2]", "invalid_frame"),
        ('{"type": "teleport", "id": "x"}', "unknown_type"),
        ('{"type": "door_event", "id": "not-a-uuid"}', "invalid_frame"),
        (
            '{"type": "heartbeat", "id": "%s", "sent_at": -5, "telemetry": {}}' % protocol.new_id(),
            "invalid_frame",
        ),
    ],
)
def test_malformed_or_unknown_frames_get_an_error_frame_and_the_link_stays_up(
    provisioned, raw: str, code: str
) -> None:  # type: ignore[no-untyped-def]
    _, _, issued = provisioned

    async def scenario() -> None:
        comm, _ = await open_link(issued.credential)
        await comm.send_to(text_data=raw)
        error = await receive(comm)
        assert error["type"] == "error" and error["code"] == code
        # still usable
        event = protocol.make_door_event(compartment="A01", event="closed", at=protocol.now_ms())
        await send(comm, event)
        assert await receive(comm) == {"type": "ack", "ref": event["id"]}
        await comm.disconnect()

    async_to_sync(scenario)()


def test_an_unlock_is_pushed_signed_after_commit_and_its_receipt_and_result_are_recorded(
    provisioned,
) -> None:  # type: ignore[no-untyped-def]
    cabinet, compartment, issued = provisioned
    key = bytes.fromhex(issued.signing_key_hex)

    async def scenario() -> str:
        comm, _ = await open_link(issued.credential)
        command = await database_sync_to_async(compartment_unlock)(
            compartment=compartment, actor=STAFF, reason="support case 17"
        )
        frame = await receive(comm)
        assert frame["type"] == "command"
        body = frame["command"]
        assert body["id"] == str(command.id)
        assert (body["cabinet"], body["compartment"], body["action"]) == (
            cabinet.serial,
            "A01",
            "unlock",
        )
        assert protocol.verify_command(
            key, body, frame["signature"], cabinet=cabinet.serial, now_ms=protocol.now_ms()
        )
        receipt = protocol.make_command_receipt(command_id=body["id"], at=protocol.now_ms())
        await send(comm, receipt)
        reply = await receive(comm)
        assert reply == {"type": "ack", "ref": receipt["id"]}
        received = await database_sync_to_async(
            lambda: CabinetCommand.objects.get(pk=command.pk).status
        )()
        assert received == CommandStatus.RECEIVED
        result = protocol.make_command_result(
            command_id=body["id"], status="succeeded", door="open", detail="", at=protocol.now_ms()
        )
        await send(comm, result)
        assert (await receive(comm))["ref"] == result["id"]
        await comm.disconnect()
        return body["id"]

    command_id = async_to_sync(scenario)()
    command = CabinetCommand.objects.get(pk=command_id)
    assert command.status == CommandStatus.SUCCEEDED
    assert command.sent_at and command.received_at and command.completed_at
    assert command.send_count == 1
    compartment.refresh_from_db()
    assert compartment.door_state == DoorState.OPEN


def test_a_replayed_event_is_acknowledged_but_applied_once(provisioned) -> None:  # type: ignore[no-untyped-def]
    _, compartment, issued = provisioned

    async def scenario() -> None:
        comm, _ = await open_link(issued.credential)
        event = protocol.make_door_event(compartment="A01", event="opened", at=protocol.now_ms())
        for _ in range(2):
            await send(comm, event)
            assert await receive(comm) == {"type": "ack", "ref": event["id"]}
        await comm.disconnect()

    async_to_sync(scenario)()
    assert CabinetMessage.objects.filter(type="door_event").count() == 1


def test_unacknowledged_commands_are_resent_on_reconnect_but_expired_ones_are_not(
    provisioned,
) -> None:  # type: ignore[no-untyped-def]
    cabinet, compartment, issued = provisioned
    # issued while the cabinet is offline
    live = compartment_unlock(compartment=compartment, actor=STAFF, reason="live")
    stale = compartment_unlock(compartment=compartment, actor=STAFF, reason="stale")
    past = timezone.now() - timedelta(minutes=3)
    CabinetCommand.objects.filter(pk=stale.pk).update(
        issued_at=past, expires_at=past + timedelta(seconds=30)
    )
    assert commands_expire() == 1  # two and a half minutes past expiry: beyond any clock skew

    async def scenario() -> list[str]:
        comm, _ = await open_link(issued.credential)
        first = await receive(comm)
        assert await comm.receive_nothing(timeout=0.3)
        await comm.disconnect()
        # reconnect without acknowledging: the same command again
        comm, _ = await open_link(issued.credential)
        second = await receive(comm)
        await comm.disconnect()
        return [first["command"]["id"], second["command"]["id"]]

    assert async_to_sync(scenario)() == [str(live.pk), str(live.pk)]
    live.refresh_from_db()
    assert live.send_count == 2
    stale.refresh_from_db()
    assert stale.status == CommandStatus.EXPIRED


def test_a_command_committed_while_the_cabinet_connects_is_delivered_on_that_link(
    provisioned, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    # The race of a reconnect storm: an unlock committed (and pushed) just after the
    # connecting link read the cabinet's pending commands. The link must be in the cabinet's
    # group by then, or neither the read nor the push reaches it and the command waits for
    # the next reconnect.
    cabinet, compartment, issued = provisioned
    during: list[str] = []

    read_backlog = consumers.link_backlog_on_loop

    def issue() -> None:
        during.append(str(compartment_unlock(compartment=compartment, actor=STAFF, reason="r").pk))

    async def read_then_issue(session):  # type: ignore[no-untyped-def]
        backlog = await read_backlog(session)
        if not during:
            await database_sync_to_async(issue, thread_sensitive=False)()
        return backlog

    monkeypatch.setattr(consumers, "link_backlog_on_loop", read_then_issue)

    async def scenario() -> dict:  # type: ignore[type-arg]
        comm, _ = await open_link(issued.credential)
        frame = await receive(comm)
        await comm.disconnect()
        return frame

    frame = async_to_sync(scenario)()
    assert (frame["type"], frame["command"]["id"]) == ("command", during[0])


def test_a_heartbeat_whose_presence_write_fails_keeps_the_link_up(provisioned, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Redis refusing (here: the pool exhausted, as in a reconnect storm) must not drop the
    # link: dropped links reconnect and make the storm worse.
    _, _, issued = provisioned

    class Exhausted:
        async def zadd(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise redis.exceptions.ConnectionError("No connection available.")

    async def scenario() -> None:
        comm, _ = await open_link(issued.credential)
        with monkeypatch.context() as patched:
            patched.setattr(presence, "_async_client", Exhausted)
            heartbeat = protocol.make_heartbeat(sent_at=protocol.now_ms(), telemetry=telemetry())
            await send(comm, heartbeat)
            await still_open(comm)
        await comm.disconnect()

    async_to_sync(scenario)()


def test_a_cabinet_retired_while_its_link_opens_is_told_so_and_closed(
    provisioned, monkeypatch, caplog
) -> None:  # type: ignore[no-untyped-def]
    # Retired after the credential check and before the link joined its group: no push
    # reaches it, so the state read after joining (after the hello) must tell it and close
    # it, as a link open at the retirement is (protocol §3: cabinet_state, then 4403).
    cabinet, _, issued = provisioned

    authenticate = consumers.cabinet_authenticate_on_loop

    async def authenticate_then_retire(authorization):  # type: ignore[no-untyped-def]
        auth = await authenticate(authorization)
        await database_sync_to_async(
            Cabinet.objects.filter(pk=cabinet.pk).update, thread_sensitive=False
        )(state="retired")
        return auth

    monkeypatch.setattr(consumers, "cabinet_authenticate_on_loop", authenticate_then_retire)

    async def scenario() -> tuple[dict, int]:  # type: ignore[type-arg]
        comm, _ = await open_link(issued.credential)
        state = await receive(comm)
        return state, await closed_with(comm)

    state, code = async_to_sync(scenario)()
    assert state == {"type": "cabinet_state", "state": "retired"}
    assert code == protocol.CloseCode.REVOKED
    assert f"cabinet {cabinet.serial}: retired while its link opened" in caplog.text
    # And the next handshake is refused before it is accepted.
    monkeypatch.undo()

    async def again() -> bool:
        connected, _ = await communicator(issued.credential).connect(timeout=5)
        return bool(connected)

    assert async_to_sync(again)() is False


def test_a_second_connection_replaces_the_first(provisioned) -> None:  # type: ignore[no-untyped-def]
    _, _, issued = provisioned

    async def scenario() -> None:
        first, _ = await open_link(issued.credential)
        second, _ = await open_link(issued.credential)
        assert await closed_with(first) == protocol.CloseCode.REPLACED
        # the replacement is the live one
        event = protocol.make_door_event(compartment="A01", event="closed", at=protocol.now_ms())
        await send(second, event)
        assert (await receive(second))["ref"] == event["id"]
        await second.disconnect()

    async_to_sync(scenario)()


def test_repeated_failed_opens_take_the_compartment_out_of_service(provisioned, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CABINET_MAX_FAILED_OPENS = 3
    _, compartment, issued = provisioned

    async def scenario() -> None:
        comm, _ = await open_link(issued.credential)
        for _ in range(3):
            await database_sync_to_async(compartment_unlock)(
                compartment=compartment, actor=STAFF, reason="try"
            )
            frame = await receive(comm)
            result = protocol.make_command_result(
                command_id=frame["command"]["id"],
                status="failed",
                door="closed",
                detail="lock jammed",
                at=protocol.now_ms(),
            )
            await send(comm, result)
            assert (await receive(comm))["type"] == "ack"
        await comm.disconnect()

    async_to_sync(scenario)()
    compartment = Compartment.objects.get(pk=compartment.pk)
    assert compartment.service_state == ServiceState.OUT_OF_SERVICE
    assert compartment.failed_open_count == 3
    assert compartment.events.get().reason == "3 failed opens in a row"


@pytest.mark.parametrize(("version", "accepted"), [("1", True), ("2, 1", True), ("2", False)])
def test_it_refuses_a_cabinet_offering_only_an_unsupported_protocol_version(
    provisioned, version: str, accepted: bool
) -> None:  # type: ignore[no-untyped-def]
    _, _, issued = provisioned

    async def scenario() -> None:
        comm = communicator(issued.credential, version=version)
        connected, _ = await comm.connect(timeout=5)
        assert connected is accepted
        if connected:
            assert (await receive(comm))["type"] == "hello"
            await comm.disconnect()

    async_to_sync(scenario)()


def test_a_command_without_receipt_is_sent_again_on_the_same_connection_until_received(
    provisioned, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.CABINET_RECEIPT_TIMEOUT_S = 0.2
    _, compartment, issued = provisioned

    async def scenario() -> str:
        comm, _ = await open_link(issued.credential)
        await database_sync_to_async(compartment_unlock)(
            compartment=compartment, actor=STAFF, reason="pickup"
        )
        first = await receive(comm)
        # no receipt: the very same frame (id and signature) comes again, more than once
        assert await receive(comm) == first
        assert await receive(comm) == first
        receipt = protocol.make_command_receipt(command_id=first["command"]["id"], at=1)
        await send(comm, receipt)
        reply = await receive(comm)
        while reply["type"] == "command":  # a resend may cross the receipt
            reply = await receive(comm)
        assert reply == {"type": "ack", "ref": receipt["id"]}
        assert await comm.receive_nothing(timeout=1.0)
        await comm.disconnect()
        return first["command"]["id"]

    command = CabinetCommand.objects.get(pk=async_to_sync(scenario)())
    assert command.status == CommandStatus.RECEIVED
    # The socket saw three sends; a send's count is written after the frame goes out, so on a
    # busy machine the last one may land after the receipt closed the command (not counted).
    assert command.send_count >= 2


def test_resending_stops_when_the_command_expires(provisioned, settings) -> None:  # type: ignore[no-untyped-def]
    settings.CABINET_RECEIPT_TIMEOUT_S = 0.2
    cabinet, compartment, issued = provisioned

    async def scenario() -> None:
        comm, _ = await open_link(issued.credential)
        command = await database_sync_to_async(command_issue)(
            cabinet=cabinet, compartment=compartment, action="unlock", actor=STAFF, ttl_s=2
        )
        frames = [await receive(comm)]
        expires_at = frames[0]["command"]["expires_at"]
        # resent every 0.2 s while valid; once expired, nothing more comes. A quiet spell
        # before the expiry is only a busy machine: keep listening until it has passed.
        while True:
            if not await comm.receive_nothing(timeout=0.8):
                frames.append(await receive(comm))
            elif protocol.now_ms() >= expires_at + 800:
                break
        assert len(frames) >= 3
        assert {f["command"]["id"] for f in frames} == {str(command.id)}
        assert protocol.now_ms() >= frames[0]["command"]["expires_at"]
        await comm.disconnect()

    async_to_sync(scenario)()


def test_a_silent_cabinet_is_closed_with_4408_after_three_heartbeat_intervals(
    provisioned, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.CABINET_HEARTBEAT_INTERVAL_S = 1
    cabinet, _, issued = provisioned

    async def scenario() -> None:
        comm, hello = await open_link(issued.credential)
        assert hello["heartbeat_interval"] == 1
        # heartbeats every interval keep the link up past three intervals
        for _ in range(5):
            await send(
                comm, protocol.make_heartbeat(sent_at=protocol.now_ms(), telemetry=telemetry())
            )
            assert await comm.receive_nothing(timeout=0.8)
        # then silence
        assert await closed_with(comm, timeout=10) == protocol.CloseCode.HEARTBEAT_TIMEOUT
        # the server answers its own close with websocket.disconnect, as uvicorn does
        await comm.disconnect(code=protocol.CloseCode.HEARTBEAT_TIMEOUT)

    async_to_sync(scenario)()
    cabinets_liveness_sync()
    cabinet.refresh_from_db()
    assert cabinet.connection_state == ConnectionState.OFFLINE


def test_bad_frames_close_the_link_only_when_more_than_ten_arrive_within_a_minute(
    provisioned,
) -> None:  # type: ignore[no-untyped-def]
    _, _, issued = provisioned

    async def scenario() -> None:
        comm, _ = await open_link(issued.credential)
        for count in range(1, 11):
            await comm.send_to(text_data="not json")
            assert (await receive(comm))["code"] == "malformed_json"
            if count == 5:
                # a good frame in between does not wipe the count
                event = protocol.make_door_event(compartment="A01", event="closed", at=1)
                await send(comm, event)
                assert (await receive(comm))["ref"] == event["id"]
        # ten bad frames: still open
        event = protocol.make_door_event(compartment="A01", event="closed", at=1)
        await send(comm, event)
        assert (await receive(comm))["ref"] == event["id"]
        # the eleventh within the minute closes it
        await comm.send_to(text_data="not json")
        assert (await receive(comm))["code"] == "malformed_json"
        assert await closed_with(comm) == protocol.CloseCode.PROTOCOL_VIOLATION

    async_to_sync(scenario)()


def test_a_reconnecting_cabinet_whose_telemetry_did_not_change_writes_nothing(provisioned) -> None:  # type: ignore[no-untyped-def]
    """At fleet scale every handshake and first heartbeat costs the database: a reconnect that
    changes nothing must not write (the stored row keeps its timestamps)."""
    cabinet, _, issued = provisioned
    stored_at = timezone.now() - timedelta(minutes=5)
    Cabinet.objects.filter(pk=cabinet.pk).update(
        telemetry=telemetry(),
        telemetry_at=stored_at,
        last_seen_at=stored_at,
        connection_state=ConnectionState.OFFLINE,
    )

    async def scenario() -> None:
        comm, _ = await open_link(issued.credential)
        await send(comm, protocol.make_heartbeat(sent_at=protocol.now_ms(), telemetry=telemetry()))
        await comm.send_to(text_data="{")  # processed in order: the heartbeat is done
        assert (await receive(comm))["code"] == "malformed_json"
        unchanged = await database_sync_to_async(lambda: Cabinet.objects.get(pk=cabinet.pk))()
        assert unchanged.telemetry_at == stored_at
        assert unchanged.connection_state == ConnectionState.OFFLINE  # no write on connect
        await send(
            comm,
            protocol.make_heartbeat(
                sent_at=protocol.now_ms(), telemetry=telemetry(doors={"A01": "open"})
            ),
        )
        await comm.send_to(text_data="{")
        assert (await receive(comm))["code"] == "malformed_json"
        await comm.disconnect()

    async_to_sync(scenario)()
    cabinet.refresh_from_db()
    # the unchanged first heartbeat wrote nothing; the changed one did
    assert cabinet.telemetry["doors"] == {"A01": "open"}
    assert cabinet.telemetry_at > stored_at
    assert CabinetCommand.objects.count() == 0


@pytest.mark.parametrize("read", ["_credential_read", "_backlog_read"])
def test_a_database_that_is_away_refuses_the_handshake_as_busy_and_leaves_no_presence(
    provisioned, monkeypatch, read
) -> None:  # type: ignore[no-untyped-def]
    # A database restarting (or failing over) mid-storm: the cabinet is told to come back
    # later (protocol §11), not given a 500 or a dropped socket.
    cabinet, _, issued = provisioned

    async def away(**values):  # type: ignore[no-untyped-def]
        raise OperationalError("the database system is starting up")

    monkeypatch.setattr(getattr(selectors, read), "arows", away)

    async def scenario() -> tuple[list[str], int, float | None]:
        comm = communicator(issued.credential)
        connected, _ = await comm.connect(timeout=10)
        assert connected  # accepted only to say why
        frames = []
        while (output := await comm.receive_output(timeout=10))["type"] != "websocket.close":
            frames.append(json.loads(output["text"])["type"])
        await comm.disconnect()
        return frames, output["code"], protocol.parse_retry_after(output["reason"])

    frames, code, hint = async_to_sync(scenario)()
    assert code == protocol.CloseCode.TRY_AGAIN_LATER and hint is not None and hint >= 1
    # The credential is read before the hello, the state and the commands after it (and
    # nothing else is sent before the close).
    assert frames == ([] if read == "_credential_read" else ["hello"])
    assert cabinet.pk not in presence_snapshot()
    monkeypatch.undo()

    async def later() -> None:
        comm, hello = await open_link(issued.credential)
        assert hello["cabinet"] == cabinet.serial
        await comm.disconnect()

    async_to_sync(later)()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the event-loop path is PostgreSQL's")
def test_on_postgresql_the_handshake_reads_on_the_event_loop_not_through_the_orm(
    provisioned, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    # core/loop_reads.py: the two reads of a handshake take no thread hop. The first
    # handshake compiles them; the second must not touch the ORM for them at all.
    cabinet, _, issued = provisioned

    async def handshake() -> str:
        comm, hello = await open_link(issued.credential)
        await comm.disconnect()
        return str(hello["cabinet"])

    assert async_to_sync(handshake)() == cabinet.serial

    def no_orm(**values):  # type: ignore[no-untyped-def]
        raise AssertionError("read through the ORM")

    for read in (selectors._credential_read, selectors._backlog_read):
        monkeypatch.setattr(read, "rows", no_orm)
        monkeypatch.setattr(read, "_compile", no_orm)
    assert async_to_sync(handshake)() == cabinet.serial
