from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.utils import timezone

from cabinet_agent import protocol
from cabinets import push
from cabinets.models import Cabinet, CabinetCommand, CabinetState, CommandStatus, Compartment
from cabinets.services.commands import command_result_record
from cabinets.services.credentials import cabinet_credential_issue
from cabinets.services.lifecycle import compartments_create
from cabinets.services.messages import cabinet_message_handle
from core.actors import Actor
from courier.codes import pickup_code_hash
from courier.models import Carrier, Courier, ParcelStatus
from courier.services.parcels import parcel_transition
from tests.factories import (
    CabinetFactory,
    CarrierFactory,
    CourierFactory,
    IdentityFactory,
    ParcelFactory,
)

COURIER_PIN = "4821"


@pytest.fixture
def pushes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, dict[str, Any]]]:
    """Everything pushed to cabinets (after commit), instead of the channel layer."""
    sent: list[tuple[int, dict[str, Any]]] = []
    monkeypatch.setattr(
        push, "push_now", lambda cabinet_id, message: sent.append((cabinet_id, message))
    )
    return sent


@pytest.fixture
def sms(settings) -> Iterator[list[Any]]:  # type: ignore[no-untyped-def]
    from identity import notify

    settings.SMS_BACKEND = "identity.notify.LocmemSmsBackend"
    notify.outbox.clear()
    yield notify.outbox
    notify.outbox.clear()


@pytest.fixture
def cabinet() -> Cabinet:
    cabinet = CabinetFactory(serial="SH-FLOW-1", state=CabinetState.ACTIVE)
    compartments_create(
        cabinet=cabinet,
        layout=[("A01", "S"), ("A02", "S"), ("B01", "M"), ("C01", "L")],
    )
    # commands are signed and pushed only for a provisioned cabinet
    cabinet_credential_issue(cabinet=cabinet, actor=Actor.system("test"))
    return cabinet


@pytest.fixture
def carrier() -> Carrier:
    return CarrierFactory(code="demo", name="Demo Express")


@pytest.fixture
def courier(carrier: Carrier) -> Courier:
    return CourierFactory(
        carrier=carrier, badge_number="C-0001", pin_hash=make_password(COURIER_PIN)
    )


def results(pushes: list[tuple[int, dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    return [
        m["frame"] for _, m in pushes if m["type"] == "link.send" and m["frame"]["type"] == kind
    ]


def unlocks(pushes: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [m["frame"]["command"] for _, m in pushes if m["type"] == "command.deliver"]


def cabinet_says(cabinet: Cabinet, frame: dict[str, Any]) -> None:
    """Feed a cabinet event through the same entry point the websocket consumer uses."""
    cabinet_message_handle(cabinet_id=cabinet.pk, frame=protocol.validate_cabinet_frame(frame))


def door(cabinet: Cabinet, label: str, event: str) -> None:
    cabinet_says(
        cabinet, protocol.make_door_event(compartment=label, event=event, at=protocol.now_ms())
    )


def courier_asks(
    cabinet: Cabinet, action: str, tracking_number: str | None = None, pin: str = COURIER_PIN
) -> None:
    cabinet_says(
        cabinet,
        protocol.make_courier_request(
            badge="C-0001",
            pin=pin,
            action=action,
            tracking_number=tracking_number,
            at=protocol.now_ms(),
        ),
    )


def unlock_done(command_id: str, *, opened: bool = True) -> None:
    command = CabinetCommand.objects.get(pk=command_id)
    CabinetCommand.objects.filter(pk=command.pk).update(status=CommandStatus.SENT)
    command_result_record(
        cabinet_id=command.cabinet_id,
        command_id=command_id,
        status="succeeded" if opened else "failed",
        door="open" if opened else "closed",
        detail="" if opened else "lock jammed",
    )


@pytest.fixture
def ready_parcel(cabinet, carrier):  # type: ignore[no-untyped-def]
    """A parcel in A01 of `cabinet`, pickup code 123456."""
    compartment = Compartment.objects.get(cabinet=cabinet, label="A01")
    parcel = ParcelFactory(carrier=carrier, cabinet=cabinet, recipient=IdentityFactory())
    parcel_transition(
        parcel_id=parcel.pk,
        to_status=ParcelStatus.READY,
        actor=Actor.system("test"),
        changes={
            "compartment": compartment,
            "deposited_at": timezone.now(),
            "pickup_deadline": timezone.now() + timezone.timedelta(days=3),
            "pickup_code_hash": pickup_code_hash(parcel_id=parcel.pk, code="123456"),
        },
    )
    return parcel
