"""Where the cabinet link meets the parcel flows (cabinets.reports): each test is a defect that
was found on the seam, performed through the same entry point the websocket consumer uses."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from cabinet_agent import protocol
from cabinets.models import (
    CabinetCommand,
    CabinetMessage,
    CabinetState,
    CommandStatus,
    Compartment,
    ServiceState,
)
from cabinets.services.commands import commands_expire
from cabinets.services.lifecycle import cabinet_transition, compartment_service_set
from cabinets.services.messages import cabinet_message_handle
from core.actors import Actor
from courier.codes import pickup_code_hash
from courier.models import Parcel, ParcelStatus
from courier.selectors import compartment_use
from courier.services.parcels import parcel_announce, parcel_cancel, parcel_transition
from tests.courier.conftest import cabinet_says, courier_asks, door, results, unlocks
from tests.factories import CabinetFactory, IdentityFactory, ParcelFactory

pytestmark = pytest.mark.django_db
OPS = Actor.system("ops")
SKEW = timedelta(milliseconds=settings.CABINET_MAX_CLOCK_SKEW_MS)


def _compartment(cabinet: Any, label: str) -> Compartment:
    return Compartment.objects.get(cabinet=cabinet, label=label)


def _announce(carrier: Any, cabinet: Any, tracking: str = "SF0001") -> Parcel:
    return parcel_announce(
        carrier=carrier,
        tracking_number=tracking,
        recipient=IdentityFactory(),
        size="S",
        cabinet=cabinet,
        actor=OPS,
    )


def _ready(cabinet: Any, carrier: Any, label: str = "A01", code: str = "123456") -> Parcel:
    parcel = ParcelFactory(carrier=carrier, cabinet=cabinet, recipient=IdentityFactory())
    return parcel_transition(
        parcel_id=parcel.pk,
        to_status=ParcelStatus.READY,
        actor=OPS,
        changes={
            "compartment": _compartment(cabinet, label),
            "deposited_at": timezone.now(),
            "pickup_deadline": timezone.now() + timedelta(days=3),
            "pickup_code_hash": pickup_code_hash(parcel_id=parcel.pk, code=code),
        },
    )


def _type_code(cabinet: Any, code: str, *, entered_at: int | None = None) -> None:
    cabinet_says(
        cabinet,
        protocol.make_code_entry(code=code, entered_at=entered_at or protocol.now_ms()),
    )


def _result(command_id: str, *, cabinet_id: int, opened: bool = True) -> dict[str, Any]:
    return protocol.validate_cabinet_frame(
        protocol.make_command_result(
            command_id=command_id,
            status="succeeded" if opened else "failed",
            door="open" if opened else "closed",
            detail="",
            at=protocol.now_ms(),
        )
    )


def test_a_reserved_compartment_taken_out_of_service_still_stores_the_parcel_when_it_closes(
    cabinet, carrier, courier, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    _announce(carrier, cabinet)
    with django_capture_on_commit_callbacks(execute=True):
        courier_asks(cabinet, "deposit", "SF0001")
    compartment_service_set(
        compartment_id=_compartment(cabinet, "A01").pk,
        to_state=ServiceState.OUT_OF_SERVICE,
        actor=OPS,
        reason="hinge squeaks",
    )
    frame = protocol.validate_cabinet_frame(
        protocol.make_door_event(compartment="A01", event="closed", at=protocol.now_ms())
    )
    with django_capture_on_commit_callbacks(execute=True):
        outcome = cabinet_message_handle(cabinet_id=cabinet.pk, frame=frame)
    assert outcome.applied and outcome.error is None
    parcel = Parcel.objects.get(tracking_number="SF0001")
    assert parcel.status == ParcelStatus.READY and parcel.compartment.label == "A01"
    a01 = _compartment(cabinet, "A01")
    assert a01.service_state == ServiceState.OUT_OF_SERVICE
    assert compartment_use(compartment_id=a01.pk) == "occupied"
    assert CabinetMessage.objects.get(pk=frame["id"]).refusal == ""


def test_returning_a_compartment_to_service_keeps_its_parcel_and_the_next_deposit_goes_elsewhere(
    cabinet, carrier, courier, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    ready = _ready(cabinet, carrier, "A01")
    a01 = _compartment(cabinet, "A01")
    compartment_service_set(compartment_id=a01.pk, to_state=ServiceState.OUT_OF_SERVICE, actor=OPS)
    compartment_service_set(compartment_id=a01.pk, to_state=ServiceState.IN_SERVICE, actor=OPS)
    assert compartment_use(compartment_id=a01.pk) == "occupied"
    _announce(carrier, cabinet, "SF0002")
    with django_capture_on_commit_callbacks(execute=True):
        courier_asks(cabinet, "deposit", "SF0002")
    [answer] = results(pushes, "courier_result")
    assert answer["outcome"] == "unlocking" and answer["compartments"] == ["A02"]
    assert Parcel.objects.get(pk=ready.pk).compartment_id == a01.pk


def test_a_pickup_from_an_out_of_service_compartment_leaves_it_out_of_service(
    cabinet, carrier, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    ready = _ready(cabinet, carrier, "A01", code="246810")
    a01 = _compartment(cabinet, "A01")
    compartment_service_set(
        compartment_id=a01.pk, to_state=ServiceState.OUT_OF_SERVICE, actor=OPS, reason="worn"
    )
    with django_capture_on_commit_callbacks(execute=True):
        _type_code(cabinet, "246810")
        door(cabinet, "A01", "opened")
        door(cabinet, "A01", "closed")
    assert Parcel.objects.get(pk=ready.pk).status == ParcelStatus.PICKED_UP
    a01.refresh_from_db()
    assert a01.service_state == ServiceState.OUT_OF_SERVICE and a01.service_reason == "worn"
    assert compartment_use(compartment_id=a01.pk) == "free"


def test_an_expired_deposit_unlock_releases_the_reservation_and_the_parcel_can_be_cancelled(
    cabinet, carrier, courier, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    parcel = _announce(carrier, cabinet)
    with django_capture_on_commit_callbacks(execute=True):
        courier_asks(cabinet, "deposit", "SF0001")
    [command] = unlocks(pushes)
    # The cabinet may still run it until expires_at plus the skew: not expired before that.
    expires_at = CabinetCommand.objects.get(pk=command["id"]).expires_at
    assert commands_expire(now=expires_at + SKEW - timedelta(seconds=1)) == 0
    assert Parcel.objects.get(pk=parcel.pk).compartment is not None
    with django_capture_on_commit_callbacks(execute=True):
        assert commands_expire(now=expires_at + SKEW + timedelta(seconds=1)) == 1
    assert CabinetCommand.objects.get(pk=command["id"]).status == CommandStatus.EXPIRED
    parcel.refresh_from_db()
    assert parcel.compartment is None and parcel.reserved_at is None
    assert compartment_use(compartment_id=_compartment(cabinet, "A01").pk) == "free"
    assert len(unlocks(pushes)) == 1  # no retry: an expired unlock means nobody is there
    cancelled = parcel_cancel(parcel=parcel, actor=OPS, reason="never arrived")
    assert cancelled.status == ParcelStatus.CANCELLED


def test_a_late_result_for_a_door_that_opened_is_recorded_and_its_close_completes_the_pickup(
    cabinet, carrier, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    ready = _ready(cabinet, carrier, "A01", code="135790")
    with django_capture_on_commit_callbacks(execute=True):
        _type_code(cabinet, "135790")
    [command] = unlocks(pushes)
    expires_at = CabinetCommand.objects.get(pk=command["id"]).expires_at
    commands_expire(now=expires_at + SKEW + timedelta(seconds=1))
    assert Parcel.objects.get(pk=ready.pk).release_authorized_at is None
    # ...but the cabinet had opened the door in time; its result arrives after the expiry.
    with django_capture_on_commit_callbacks(execute=True):
        outcome = cabinet_message_handle(
            cabinet_id=cabinet.pk, frame=_result(command["id"], cabinet_id=cabinet.pk)
        )
    assert outcome.applied
    stored = CabinetCommand.objects.get(pk=command["id"])
    assert stored.status == CommandStatus.SUCCEEDED and stored.result["late"] is True
    with django_capture_on_commit_callbacks(execute=True):
        door(cabinet, "A01", "closed")
    assert Parcel.objects.get(pk=ready.pk).status == ParcelStatus.PICKED_UP


def test_a_late_result_of_a_deposit_unlock_reserves_the_open_compartment_again(
    cabinet, carrier, courier, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    parcel = _announce(carrier, cabinet)
    with django_capture_on_commit_callbacks(execute=True):
        courier_asks(cabinet, "deposit", "SF0001")
    [command] = unlocks(pushes)
    expires_at = CabinetCommand.objects.get(pk=command["id"]).expires_at
    with django_capture_on_commit_callbacks(execute=True):
        commands_expire(now=expires_at + SKEW + timedelta(seconds=1))
        cabinet_message_handle(
            cabinet_id=cabinet.pk, frame=_result(command["id"], cabinet_id=cabinet.pk)
        )
        door(cabinet, "A01", "closed")
    parcel.refresh_from_db()
    assert parcel.status == ParcelStatus.READY and parcel.compartment.label == "A01"


@pytest.mark.parametrize("whose", ["missing", "another cabinet's"])
def test_a_result_naming_a_command_this_cabinet_does_not_have_is_refused_as_unknown_command(
    cabinet, whose, pushes
) -> None:  # type: ignore[no-untyped-def]
    if whose == "missing":
        command_id = str(uuid.uuid4())
    else:
        other = CabinetFactory(state=CabinetState.ACTIVE)
        command_id = str(
            CabinetCommand.objects.create(
                id=uuid.uuid4(),
                cabinet=other,
                action="set_config",
                payload={"config_version": 1},
                issued_at=timezone.now(),
                expires_at=timezone.now() + timedelta(minutes=5),
                actor_kind="system",
            ).pk
        )
    frame = _result(command_id, cabinet_id=cabinet.pk)
    outcome = cabinet_message_handle(cabinet_id=cabinet.pk, frame=frame)
    assert (outcome.duplicate, outcome.applied, outcome.error) == (False, False, "unknown_command")
    assert CabinetMessage.objects.get(pk=frame["id"]).refusal == "unknown_command"
    # Replayed (its ack was lost): recognised, acknowledged, not refused again.
    again = cabinet_message_handle(cabinet_id=cabinet.pk, frame=frame)
    assert again.duplicate and again.error is None
    assert not CabinetCommand.objects.filter(pk=command_id, status="succeeded").exists()


def test_a_door_event_for_an_unknown_compartment_is_recorded_as_refused_and_never_replayed(
    cabinet,
) -> None:  # type: ignore[no-untyped-def]
    frame = protocol.validate_cabinet_frame(
        protocol.make_door_event(compartment="Z99", event="closed", at=protocol.now_ms())
    )
    outcome = cabinet_message_handle(cabinet_id=cabinet.pk, frame=frame)
    assert not outcome.applied and not outcome.duplicate
    message = CabinetMessage.objects.get(pk=frame["id"])
    assert message.refusal == "unknown_compartment" and "Z99" in message.refusal_detail
    assert cabinet_message_handle(cabinet_id=cabinet.pk, frame=frame).duplicate


def test_the_code_result_reaches_the_cabinet_before_the_unlock_it_announces(
    cabinet, carrier, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    _ready(cabinet, carrier, "A01", code="112233")
    with django_capture_on_commit_callbacks(execute=True):
        _type_code(cabinet, "112233")
    kinds = [m["frame"]["type"] if m["type"] == "link.send" else m["type"] for _, m in pushes]
    assert kinds == ["code_result", "command.deliver"]


def test_a_code_typed_within_the_lifetime_plus_the_clock_skew_is_not_stale(
    cabinet, carrier, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    _ready(cabinet, carrier, "A01", code="445566")
    lifetime_ms = settings.ACCESS_REQUEST_MAX_AGE_S * 1000
    skew_ms = settings.CABINET_MAX_CLOCK_SKEW_MS
    with django_capture_on_commit_callbacks(execute=True):
        _type_code(cabinet, "445566", entered_at=protocol.now_ms() - lifetime_ms - skew_ms // 2)
    assert results(pushes, "code_result")[0]["outcome"] == "unlocking"
    _ready(cabinet, carrier, "A02", code="778899")
    with django_capture_on_commit_callbacks(execute=True):
        _type_code(cabinet, "778899", entered_at=protocol.now_ms() - lifetime_ms - skew_ms - 5000)
    late = results(pushes, "code_result")[1]
    assert late["outcome"] == "no_match" and "too long" in late["message"]


def test_a_failure_while_answering_a_person_answers_unavailable_and_keeps_the_event(
    cabinet, carrier, pushes, monkeypatch, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    from courier import cabinet_reports

    def broken(**kwargs: Any) -> str:
        raise RuntimeError("a bug")

    monkeypatch.setattr(cabinet_reports, "code_entry_answer", broken)
    frame = protocol.validate_cabinet_frame(
        protocol.make_code_entry(code="123456", entered_at=protocol.now_ms())
    )
    with django_capture_on_commit_callbacks(execute=True):
        outcome = cabinet_message_handle(cabinet_id=cabinet.pk, frame=frame)
    assert outcome.applied
    [answer] = results(pushes, "code_result")
    assert answer["outcome"] == "unavailable" and answer["entry_id"] == frame["id"]
    assert CabinetMessage.objects.filter(pk=frame["id"]).exists()


@pytest.mark.parametrize("to_state", [CabinetState.MAINTENANCE, CabinetState.RETIRED])
def test_a_cabinet_put_in_maintenance_or_retired_is_told_on_its_open_socket(
    cabinet, to_state, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        cabinet_transition(cabinet_id=cabinet.pk, to_state=to_state, actor=OPS)
    assert (cabinet.pk, {"type": "link.state", "state": to_state}) in pushes
