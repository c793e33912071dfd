"""Credential rotation with overlap (protocol §17): the new credential is delivered over the
link as a signed `credential_rotate` command, both are valid until the cabinet connects with
the new one, and an operator can still revoke at once."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from cabinet_agent import protocol
from cabinets.models import CabinetCommand, CabinetCredential, CommandAction, CommandStatus
from cabinets.presence import presence_snapshot
from cabinets.selectors import cabinet_authenticate, command_frame, valid_key_ids
from cabinets.services.commands import compartment_unlock
from cabinets.services.credentials import (
    cabinet_credential_issue,
    cabinet_credential_revoke,
    cabinet_credential_rotation_complete,
    cabinet_credentials_overlap_expire,
    cabinet_credentials_rotate,
)
from core.actors import Actor
from tests.cabinets.link import communicator, receive, send
from tests.factories import CabinetFactory, CompartmentFactory

STAFF = Actor.system("test")


@pytest.fixture
def provisioned():  # type: ignore[no-untyped-def]
    cabinet = CabinetFactory(serial="SH-ROT-1")
    CompartmentFactory(cabinet=cabinet, label="A01")
    return cabinet, cabinet_credential_issue(cabinet=cabinet, actor=STAFF)


def _rotate_command(cabinet_id: int, key_id: str) -> CabinetCommand:
    return CabinetCommand.objects.get(
        cabinet_id=cabinet_id, action=CommandAction.CREDENTIAL_ROTATE, payload__key_id=key_id
    )


def _delivered(cabinet, key_id: str, *, signed_with: str) -> dict:  # type: ignore[no-untyped-def]
    frame = command_frame(
        _rotate_command(cabinet.pk, key_id), serial=cabinet.serial, key_id=signed_with
    )
    return frame["command"]["payload"]


# --- the service ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_rotation_keeps_the_old_credential_valid_and_seals_the_new_secret(provisioned) -> None:  # type: ignore[no-untyped-def]
    cabinet, old = provisioned
    before = timezone.now()
    [started] = cabinet_credentials_rotate(cabinets=[cabinet], actor=STAFF)

    old_key = protocol.parse_credential(protocol.authorization_header(old.credential))[0]  # type: ignore[index]
    assert set(valid_key_ids(cabinet.pk)) == {old_key, started.key_id}
    assert valid_key_ids(cabinet.pk)[0] == started.key_id
    assert cabinet_authenticate(protocol.authorization_header(old.credential)).reason == "ok"
    overlap = timedelta(seconds=settings.CABINET_CREDENTIAL_OVERLAP_S)
    assert started.old_valid_until is not None
    assert before + overlap <= started.old_valid_until <= timezone.now() + overlap

    command = _rotate_command(cabinet.pk, started.key_id)
    assert command.expires_at <= started.old_valid_until
    payload = _delivered(cabinet, started.key_id, signed_with=old_key)
    new_secret = payload["credential"]
    assert new_secret.startswith(f"{started.key_id}.")
    # At rest the command row holds neither the secret nor the signing key.
    stored = json.dumps(command.payload)
    assert new_secret.split(".", 1)[1] not in stored
    assert payload["signing_key"] not in stored
    auth = cabinet_authenticate(protocol.authorization_header(new_secret))
    assert auth.reason == "ok"
    assert auth.session is not None and auth.session.retiring_key_id == old_key


@pytest.mark.django_db
def test_connecting_with_the_new_credential_revokes_the_old_one(provisioned) -> None:  # type: ignore[no-untyped-def]
    cabinet, old = provisioned
    [started] = cabinet_credentials_rotate(cabinets=[cabinet], actor=STAFF)

    assert cabinet_credential_rotation_complete(cabinet_id=cabinet.pk, key_id=started.key_id)
    assert not cabinet_credential_rotation_complete(cabinet_id=cabinet.pk, key_id=started.key_id)

    assert cabinet_authenticate(protocol.authorization_header(old.credential)).reason == "revoked"
    assert valid_key_ids(cabinet.pk) == [started.key_id]
    assert _rotate_command(cabinet.pk, started.key_id).status == CommandStatus.SUCCEEDED


@pytest.mark.django_db
def test_the_old_credential_is_refused_once_the_overlap_is_over(provisioned) -> None:  # type: ignore[no-untyped-def]
    cabinet, old = provisioned
    cabinet_credentials_rotate(cabinets=[cabinet], actor=STAFF)
    CabinetCredential.objects.filter(cabinet=cabinet, expires_at__isnull=False).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert cabinet_authenticate(protocol.authorization_header(old.credential)).reason == "expired"


@pytest.mark.django_db
def test_a_second_rotation_in_the_overlap_withdraws_the_unused_credential(provisioned) -> None:  # type: ignore[no-untyped-def]
    cabinet, old = provisioned
    [first] = cabinet_credentials_rotate(cabinets=[cabinet], actor=STAFF)
    unused = _delivered(cabinet, first.key_id, signed_with=first.key_id)["credential"]
    [second] = cabinet_credentials_rotate(cabinets=[cabinet], actor=STAFF)

    # The cabinet still holds the first credential: it stays valid, its deadline unchanged.
    assert second.old_valid_until == first.old_valid_until
    assert cabinet_authenticate(protocol.authorization_header(old.credential)).reason == "ok"
    assert cabinet_authenticate(protocol.authorization_header(unused)).reason == "revoked"
    assert _rotate_command(cabinet.pk, first.key_id).status == CommandStatus.EXPIRED
    assert _rotate_command(cabinet.pk, second.key_id).status == CommandStatus.PENDING
    assert len(valid_key_ids(cabinet.pk)) == 2


@pytest.mark.django_db
def test_revoke_now_ends_both_credentials_of_an_overlap(provisioned) -> None:  # type: ignore[no-untyped-def]
    cabinet, old = provisioned
    cabinet_credentials_rotate(cabinets=[cabinet], actor=STAFF)

    assert cabinet_credential_revoke(cabinet=cabinet, actor=STAFF, reason="stolen") == 2
    assert valid_key_ids(cabinet.pk) == []
    assert cabinet_authenticate(protocol.authorization_header(old.credential)).reason == "revoked"


@pytest.mark.django_db
def test_a_cabinet_without_a_credential_gets_one_but_nothing_to_deliver() -> None:
    cabinet = CabinetFactory(serial="SH-ROT-NEW")
    [started] = cabinet_credentials_rotate(cabinets=[cabinet], actor=STAFF)

    assert started.old_valid_until is None
    assert not CabinetCommand.objects.filter(cabinet=cabinet).exists()


# --- over the link --------------------------------------------------------------------------


async def _connect(credential: str):  # type: ignore[no-untyped-def]
    comm = communicator(credential)
    connected, _ = await comm.connect(timeout=5)
    assert connected
    assert (await receive(comm))["type"] == "hello"
    return comm


async def _next_command(comm, action: str | None) -> dict:  # type: ignore[no-untyped-def]
    """The next command frame (of `action`, if given), skipping anything else."""
    while True:
        frame = await receive(comm)
        if frame["type"] == "command" and action in (None, frame["command"]["action"]):
            return frame


async def _report_stored(comm, frame: dict) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """Answer a delivered `credential_rotate` as the cabinet does once it stored the credential."""
    result = protocol.make_command_result(
        command_id=frame["command"]["id"],
        status="succeeded",
        door=None,
        detail="stored",
        at=protocol.now_ms(),
    )
    await send(comm, result)
    return result


@pytest.mark.django_db(transaction=True)
def test_the_link_delivers_the_credential_and_switches_to_it(provisioned) -> None:  # type: ignore[no-untyped-def]
    cabinet, old = provisioned
    compartment = cabinet.compartments.get()

    async def scenario() -> None:
        comm = await _connect(old.credential)
        await database_sync_to_async(cabinet_credentials_rotate)(cabinets=[cabinet], actor=STAFF)
        frame = await _next_command(comm, CommandAction.CREDENTIAL_ROTATE)
        # Signed with the key the cabinet holds now, so that it can verify it.
        verdict = protocol.verify_command(
            bytes.fromhex(old.signing_key_hex),
            frame["command"],
            frame["signature"],
            cabinet=cabinet.serial,
            now_ms=protocol.now_ms(),
        )
        assert verdict.ok
        payload = frame["command"]["payload"]
        result = await _report_stored(comm, frame)
        while (reply := await receive(comm))["type"] != "ack":
            pass
        assert reply["ref"] == result["id"]
        # Stored: the link using the old credential is closed with 4401 to switch.
        # (a resend of a frame may still come first; a busy machine is slow to close)
        while (out := await comm.receive_output(timeout=15))["type"] == "websocket.send":
            pass
        assert out == {"type": "websocket.close", "code": protocol.CloseCode.BAD_CREDENTIAL}

        comm = await _connect(payload["credential"])
        refused = communicator(old.credential)
        assert not (await refused.connect(timeout=5))[0]
        # Commands on the new link are signed with the new key.
        await database_sync_to_async(compartment_unlock)(
            compartment=compartment, actor=STAFF, reason="test"
        )
        unlock = await _next_command(comm, CommandAction.UNLOCK)
        assert protocol.verify_command(
            bytes.fromhex(payload["signing_key"]),
            unlock["command"],
            unlock["signature"],
            cabinet=cabinet.serial,
            now_ms=protocol.now_ms(),
        ).ok
        await comm.disconnect()

    async_to_sync(scenario)()
    assert valid_key_ids(cabinet.pk) == [payload_key_id(cabinet.pk)]


async def _closed_with(comm) -> int:  # type: ignore[no-untyped-def]
    """The code the server closes the link with (frames before it skipped), once the consumer
    has cleaned up after it."""
    while (out := await comm.receive_output(timeout=15))["type"] == "websocket.send":
        pass
    assert out["type"] == "websocket.close"
    await comm.disconnect()
    return int(out["code"])


@pytest.mark.django_db(transaction=True)
def test_the_close_that_switches_a_cabinet_to_its_new_credential_leaves_it_online(
    provisioned,
) -> None:  # type: ignore[no-untyped-def]
    """The cabinet stored its new credential and comes straight back with it: the 4401 that
    sends it there keeps its presence, so no liveness tick in between marks it offline. A
    4401 after a credential issued by hand (which the cabinet does not hold) is a drop."""
    cabinet, old = provisioned

    async def switched() -> int:
        comm = await _connect(old.credential)
        await database_sync_to_async(cabinet_credentials_rotate)(cabinets=[cabinet], actor=STAFF)
        await _report_stored(comm, await _next_command(comm, CommandAction.CREDENTIAL_ROTATE))
        return await _closed_with(comm)

    assert async_to_sync(switched)() == protocol.CloseCode.BAD_CREDENTIAL
    assert cabinet.pk in presence_snapshot()

    async def reissued() -> int:
        comm = await _connect(old.credential)
        await database_sync_to_async(cabinet_credential_issue)(cabinet=cabinet, actor=STAFF)
        return await _closed_with(comm)

    assert async_to_sync(reissued)() == protocol.CloseCode.BAD_CREDENTIAL
    assert cabinet.pk not in presence_snapshot()


def payload_key_id(cabinet_id: int) -> str:
    return CabinetCommand.objects.get(
        cabinet_id=cabinet_id, action=CommandAction.CREDENTIAL_ROTATE
    ).payload["key_id"]


@pytest.mark.django_db(transaction=True)
def test_an_offline_cabinet_gets_its_credential_on_the_next_connect(provisioned) -> None:  # type: ignore[no-untyped-def]
    cabinet, old = provisioned
    compartment = cabinet.compartments.get()
    [started] = cabinet_credentials_rotate(cabinets=[cabinet], actor=STAFF)

    async def scenario() -> dict:  # type: ignore[type-arg]
        comm = await _connect(old.credential)
        frame = await _next_command(comm, CommandAction.CREDENTIAL_ROTATE)
        await comm.disconnect()
        return frame["command"]["payload"]

    payload = async_to_sync(scenario)()
    assert payload["key_id"] == started.key_id

    async def with_the_new_one() -> None:
        # Connecting with the new credential completes the rotation even without the result
        # (an agent that crashed between storing and acknowledging): nothing is re-sent.
        comm = await _connect(payload["credential"])
        await database_sync_to_async(compartment_unlock)(
            compartment=compartment, actor=STAFF, reason="test"
        )
        first = await _next_command(comm, None)
        assert first["command"]["action"] == CommandAction.UNLOCK
        await comm.disconnect()

    async_to_sync(with_the_new_one)()
    assert valid_key_ids(cabinet.pk) == [started.key_id]
    assert _rotate_command(cabinet.pk, started.key_id).status == CommandStatus.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_a_link_still_on_the_old_credential_is_closed_when_the_overlap_ends(provisioned) -> None:  # type: ignore[no-untyped-def]
    cabinet, old = provisioned
    [started] = cabinet_credentials_rotate(cabinets=[cabinet], actor=STAFF)

    async def scenario() -> None:
        comm = await _connect(old.credential)
        await _next_command(comm, CommandAction.CREDENTIAL_ROTATE)  # never acknowledged
        expired = await database_sync_to_async(cabinet_credentials_overlap_expire)(
            now=started.old_valid_until
        )
        assert expired == 1
        while (output := await comm.receive_output(timeout=5))["type"] != "websocket.close":
            pass
        assert output["code"] == protocol.CloseCode.BAD_CREDENTIAL

    async_to_sync(scenario)()
    assert cabinet_authenticate(protocol.authorization_header(old.credential)).reason == "revoked"
    assert valid_key_ids(cabinet.pk) == [started.key_id]
    assert cabinet_credentials_overlap_expire() == 0
