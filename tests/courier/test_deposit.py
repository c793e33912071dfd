"""Courier deposits at the cabinet screen, through the cabinet link's entry point."""

from __future__ import annotations

import pytest

from cabinets.models import Compartment, ServiceState
from core.actors import Actor
from courier.codes import pickup_code_matches
from courier.models import Parcel, ParcelStatus
from courier.selectors import compartment_use
from courier.services.parcels import parcel_announce
from tests.courier.conftest import courier_asks, door, results, unlock_done, unlocks
from tests.factories import IdentityFactory

pytestmark = pytest.mark.django_db


def _announce(carrier, cabinet, tracking="SF0001", size="S"):  # type: ignore[no-untyped-def]
    return parcel_announce(
        carrier=carrier,
        tracking_number=tracking,
        recipient=IdentityFactory(phone="+8613811112222"),
        size=size,
        cabinet=cabinet,
        actor=Actor.system("test"),
    )


def _use(cabinet, label):  # type: ignore[no-untyped-def]
    return compartment_use(compartment_id=Compartment.objects.get(cabinet=cabinet, label=label).pk)


def test_a_deposit_opens_the_smallest_free_compartment_that_fits(
    cabinet, carrier, courier, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    _announce(carrier, cabinet, "SF-M", size="M")
    with django_capture_on_commit_callbacks(execute=True):
        courier_asks(cabinet, "deposit", "SF-M")
    [answer] = results(pushes, "courier_result")
    assert answer["outcome"] == "unlocking" and answer["compartments"] == ["B01"]
    [command] = unlocks(pushes)
    assert command["compartment"] == "B01" and command["payload"]["parcel"] == "SF-M"
    assert _use(cabinet, "B01") == "reserved"
    parcel = Parcel.objects.get(tracking_number="SF-M")
    assert parcel.status == ParcelStatus.ANNOUNCED and parcel.compartment.label == "B01"


def test_a_bigger_compartment_is_used_when_the_right_size_is_taken(
    cabinet, carrier, courier, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    Compartment.objects.filter(cabinet=cabinet, label="B01").update(
        service_state=ServiceState.OUT_OF_SERVICE
    )
    _announce(carrier, cabinet, "SF-M", size="M")
    with django_capture_on_commit_callbacks(execute=True):
        courier_asks(cabinet, "deposit", "SF-M")
    assert results(pushes, "courier_result")[0]["compartments"] == ["C01"]


def test_closing_the_door_makes_the_parcel_ready_and_sends_the_code(
    cabinet, carrier, courier, pushes, sms, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    _announce(carrier, cabinet, "SF0001")
    with django_capture_on_commit_callbacks(execute=True):
        courier_asks(cabinet, "deposit", "SF0001")
        door(cabinet, "A01", "opened")
        door(cabinet, "A01", "closed")
    parcel = Parcel.objects.get(tracking_number="SF0001")
    assert parcel.status == ParcelStatus.READY
    assert parcel.deposited_at and parcel.pickup_deadline and parcel.reserved_at is None
    assert _use(cabinet, "A01") == "occupied"
    [message] = sms
    assert message.phone == "+8613811112222"
    code = message.text.split("Pickup code: ")[1][:6]
    assert pickup_code_matches(parcel_id=parcel.pk, code=code, code_hash=parcel.pickup_code_hash)
    assert "/parcels/extend/" in message.text
    assert "enroll" in message.text.lower()  # not enrolled: invited to


def test_scanning_the_same_parcel_again_reopens_its_compartment(
    cabinet, carrier, courier, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    _announce(carrier, cabinet, "SF0001")
    with django_capture_on_commit_callbacks(execute=True):
        courier_asks(cabinet, "deposit", "SF0001")
        courier_asks(cabinet, "deposit", "SF0001")
    assert [c["compartment"] for c in unlocks(pushes)] == ["A01", "A01"]
    assert _use(cabinet, "A02") == "free"


def test_a_parcel_that_does_not_fit_moves_to_a_larger_compartment(
    cabinet, carrier, courier, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    _announce(carrier, cabinet, "SF0001")
    with django_capture_on_commit_callbacks(execute=True):
        courier_asks(cabinet, "deposit", "SF0001")
        courier_asks(cabinet, "bigger", "SF0001")
    assert [c["compartment"] for c in unlocks(pushes)] == ["A01", "B01"]
    assert _use(cabinet, "A01") == "free"
    assert _use(cabinet, "B01") == "reserved"
    assert Parcel.objects.get(tracking_number="SF0001").size == "M"


def test_when_the_door_does_not_open_the_deposit_moves_to_another_compartment(
    cabinet, carrier, courier, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    _announce(carrier, cabinet, "SF0001")
    with django_capture_on_commit_callbacks(execute=True):
        courier_asks(cabinet, "deposit", "SF0001")
    with django_capture_on_commit_callbacks(execute=True):
        unlock_done(unlocks(pushes)[0]["id"], opened=False)
    assert [c["compartment"] for c in unlocks(pushes)] == ["A01", "A02"]
    assert Compartment.objects.get(cabinet=cabinet, label="A01").failed_open_count == 1
    assert Parcel.objects.get(tracking_number="SF0001").compartment.label == "A02"


def test_no_free_compartment_is_a_clear_answer(
    cabinet, carrier, courier, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    Compartment.objects.filter(cabinet=cabinet).update(service_state=ServiceState.OUT_OF_SERVICE)
    _announce(carrier, cabinet, "SF0001")
    with django_capture_on_commit_callbacks(execute=True):
        courier_asks(cabinet, "deposit", "SF0001")
    [answer] = results(pushes, "courier_result")
    assert answer["outcome"] == "no_compartment" and answer["compartments"] == []
    assert not unlocks(pushes)


@pytest.mark.parametrize(
    ("tracking", "pin", "outcome"),
    [("NOPE", "4821", "unknown_parcel"), ("SF0001", "0000", "not_authorized")],
)
def test_unknown_parcels_and_wrong_pins_are_refused(
    cabinet, carrier, courier, pushes, django_capture_on_commit_callbacks, tracking, pin, outcome
) -> None:  # type: ignore[no-untyped-def]
    _announce(carrier, cabinet, "SF0001")
    with django_capture_on_commit_callbacks(execute=True):
        courier_asks(cabinet, "deposit", tracking, pin=pin)
    assert results(pushes, "courier_result")[0]["outcome"] == outcome
    assert not unlocks(pushes)


def test_repeated_wrong_pins_lock_couriers_out_of_the_cabinet(
    cabinet, carrier, courier, pushes, settings, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    settings.COURIER_LOCKOUT_ATTEMPTS = 3
    _announce(carrier, cabinet, "SF0001")
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            courier_asks(cabinet, "deposit", "SF0001", pin="0000")
        courier_asks(cabinet, "deposit", "SF0001")
    assert [r["outcome"] for r in results(pushes, "courier_result")] == [
        "not_authorized",
        "not_authorized",
        "not_authorized",
        "locked_out",
    ]
