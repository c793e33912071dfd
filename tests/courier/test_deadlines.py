"""Reminders, expiry, extension and returns, with frozen time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from cabinets.models import Compartment
from core.actors import Actor
from courier.models import Notification, Parcel, ParcelStatus
from courier.notifications import extension_token
from courier.selectors import collection_list, compartment_use
from courier.services.parcels import parcel_extend, parcel_transition
from courier.tasks import parcels_expire_task, parcels_remind_task
from tests.courier.conftest import courier_asks, door, results, unlocks
from tests.factories import IdentityFactory, ParcelFactory

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def ready(cabinet, carrier, settings):  # type: ignore[no-untyped-def]
    settings.PARCEL_PICKUP_DAYS = 3
    with time_machine.travel(T0, tick=False):
        compartment = Compartment.objects.get(cabinet=cabinet, label="A01")
        parcel = ParcelFactory(carrier=carrier, cabinet=cabinet, recipient=IdentityFactory())
        return parcel_transition(
            parcel_id=parcel.pk,
            to_status=ParcelStatus.READY,
            actor=Actor.system("test"),
            changes={
                "compartment": compartment,
                "deposited_at": T0,
                "pickup_deadline": T0 + timedelta(days=3),
            },
        )


def test_a_reminder_goes_out_once_the_day_before_the_deadline(ready, sms, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PARCEL_REMINDER_BEFORE_H = 24
    with time_machine.travel(T0 + timedelta(days=1), tick=False):
        assert parcels_remind_task() == 0
    with time_machine.travel(T0 + timedelta(days=2, hours=1), tick=False):
        assert parcels_remind_task() == 1
        assert parcels_remind_task() == 0  # idempotent
    assert len(sms) == 1 and "Reminder" in sms[0].text
    assert Notification.objects.get(parcel=ready).kind == "reminder"


def test_an_uncollected_parcel_expires_after_its_deadline(
    ready, sms, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(T0 + timedelta(days=2, hours=23), tick=False):
        assert parcels_expire_task() == 0
    with (
        time_machine.travel(T0 + timedelta(days=3, minutes=1), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert parcels_expire_task() == 1
        assert parcels_expire_task() == 0
    parcel = Parcel.objects.get(pk=ready.pk)
    assert parcel.status == ParcelStatus.EXPIRED
    assert any("not collected" in m.text for m in sms)


def test_a_recipient_can_extend_once_through_the_link(ready, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PARCEL_EXTENSION_DAYS = 2
    client = Client()
    url = f"/parcels/extend/{extension_token(ready)}/"
    with time_machine.travel(T0 + timedelta(days=1), tick=False):
        assert client.get(url).status_code == 200
        assert client.post(url).status_code == 200
        second = client.post(url)
    assert second.status_code == 409 and b"already been extended" in second.content
    parcel = Parcel.objects.get(pk=ready.pk)
    assert parcel.pickup_deadline == T0 + timedelta(days=5) and parcel.extension_count == 1
    with time_machine.travel(T0 + timedelta(days=4), tick=False):
        assert parcels_expire_task() == 0


def test_a_forged_extension_link_is_refused(ready) -> None:  # type: ignore[no-untyped-def]
    response = Client().post("/parcels/extend/not-a-token/")
    assert response.status_code == 404 and b"not valid" in response.content


def test_an_expired_parcel_cannot_be_extended(ready) -> None:  # type: ignore[no-untyped-def]
    from core.errors import Conflict

    parcel_transition(parcel_id=ready.pk, to_status=ParcelStatus.EXPIRED, actor=Actor.system("t"))
    with pytest.raises(Conflict):
        parcel_extend(parcel=ready, actor=Actor.system("t"))


def test_expired_parcels_are_on_the_carriers_collection_list_and_a_courier_returns_them(
    ready, carrier, courier, cabinet, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with time_machine.travel(T0 + timedelta(days=4), tick=False):
        parcels_expire_task()
    assert {c.serial: [p.pk for p in ps] for c, ps in collection_list(carrier=carrier).items()} == {
        cabinet.serial: [ready.pk]
    }
    with django_capture_on_commit_callbacks(execute=True):
        courier_asks(cabinet, "collect")
    assert results(pushes, "courier_result")[0]["compartments"] == ["A01"]
    assert [c["compartment"] for c in unlocks(pushes)] == ["A01"]
    with django_capture_on_commit_callbacks(execute=True):
        door(cabinet, "A01", "closed")
    assert Parcel.objects.get(pk=ready.pk).status == ParcelStatus.RETURNED
    assert (
        compartment_use(compartment_id=Compartment.objects.get(cabinet=cabinet, label="A01").pk)
        == "free"
    )
    assert collection_list(carrier=carrier) == {}


def test_a_courier_collects_a_dropped_off_parcel(
    cabinet, carrier, courier, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    from courier.models import ParcelDirection

    compartment = Compartment.objects.get(cabinet=cabinet, label="B01")
    parcel = ParcelFactory(
        carrier=carrier,
        cabinet=cabinet,
        direction=ParcelDirection.DROPOFF,
        sender=IdentityFactory(),
    )
    parcel_transition(
        parcel_id=parcel.pk,
        to_status=ParcelStatus.DROPPED_OFF,
        actor=Actor.system("test"),
        changes={"compartment": compartment, "deposited_at": T0},
    )
    with django_capture_on_commit_callbacks(execute=True):
        courier_asks(cabinet, "collect")
    assert [c["compartment"] for c in unlocks(pushes)] == ["B01"]
    with django_capture_on_commit_callbacks(execute=True):
        door(cabinet, "B01", "closed")
    assert Parcel.objects.get(pk=parcel.pk).status == ParcelStatus.COLLECTED
    assert compartment_use(compartment_id=compartment.pk) == "free"


def test_another_carriers_courier_collects_nothing(
    ready, cabinet, pushes, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    from django.contrib.auth.hashers import make_password

    from tests.factories import CourierFactory

    CourierFactory(badge_number="X-9", pin_hash=make_password("9999"))
    with time_machine.travel(T0 + timedelta(days=4), tick=False):
        parcels_expire_task()
    from cabinet_agent import protocol
    from tests.courier.conftest import cabinet_says

    with django_capture_on_commit_callbacks(execute=True):
        cabinet_says(
            cabinet,
            protocol.make_courier_request(
                badge="X-9",
                pin="9999",
                action="collect",
                tracking_number=None,
                at=protocol.now_ms(),
            ),
        )
    assert results(pushes, "courier_result")[0]["outcome"] == "nothing_to_collect"
    assert not unlocks(pushes)
