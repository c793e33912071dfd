from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.actors import Actor
from core.errors import InvalidTransition
from courier.models import PARCEL_TRANSITIONS, Parcel, ParcelEvent, ParcelStatus
from courier.services.parcels import parcel_announce, parcel_transition
from tests.factories import (
    CabinetFactory,
    CarrierFactory,
    CompartmentFactory,
    IdentityFactory,
    ParcelFactory,
)

pytestmark = pytest.mark.django_db

STAFF = Actor.system("test")


def _ready_fields(compartment):  # type: ignore[no-untyped-def]
    now = timezone.now()
    return {
        "compartment": compartment,
        "deposited_at": now,
        "pickup_deadline": now + timedelta(days=3),
    }


def test_the_database_refuses_a_duplicate_tracking_number_for_one_carrier() -> None:
    parcel = ParcelFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        ParcelFactory(carrier=parcel.carrier, tracking_number=parcel.tracking_number)


def test_two_carriers_may_use_the_same_tracking_number() -> None:
    parcel = ParcelFactory()
    other = ParcelFactory(tracking_number=parcel.tracking_number, carrier=CarrierFactory())
    assert other.pk != parcel.pk


def test_the_database_refuses_two_parcels_in_one_compartment() -> None:
    compartment = CompartmentFactory()
    ParcelFactory(
        status=ParcelStatus.READY, cabinet=compartment.cabinet, **_ready_fields(compartment)
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        ParcelFactory(
            status=ParcelStatus.EXPIRED, cabinet=compartment.cabinet, **_ready_fields(compartment)
        )


def test_a_compartment_can_hold_a_new_parcel_once_the_old_one_is_picked_up() -> None:
    compartment = CompartmentFactory()
    ParcelFactory(
        status=ParcelStatus.PICKED_UP, picked_up_at=timezone.now(), **_ready_fields(compartment)
    )
    ParcelFactory(status=ParcelStatus.READY, **_ready_fields(compartment))
    assert Parcel.objects.filter(compartment=compartment).count() == 2


def test_the_database_refuses_a_ready_parcel_without_a_compartment() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        ParcelFactory(status=ParcelStatus.READY)


def test_the_database_refuses_an_unknown_status() -> None:
    parcel = ParcelFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Parcel.objects.filter(pk=parcel.pk).update(status="lost_in_space")


def test_the_database_refuses_a_picked_up_parcel_without_a_time() -> None:
    compartment = CompartmentFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        ParcelFactory(status=ParcelStatus.PICKED_UP, **_ready_fields(compartment))


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (ParcelStatus.ANNOUNCED, ParcelStatus.READY),
        (ParcelStatus.ANNOUNCED, ParcelStatus.CANCELLED),
        (ParcelStatus.READY, ParcelStatus.PICKED_UP),
        (ParcelStatus.READY, ParcelStatus.EXPIRED),
        (ParcelStatus.EXPIRED, ParcelStatus.RETURNED),
    ],
)
def test_the_transition_map_allows_the_lifecycle(start: str, target: str) -> None:
    assert target in PARCEL_TRANSITIONS[start]


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (ParcelStatus.ANNOUNCED, ParcelStatus.PICKED_UP),
        (ParcelStatus.READY, ParcelStatus.CANCELLED),
        (ParcelStatus.PICKED_UP, ParcelStatus.READY),
        (ParcelStatus.CANCELLED, ParcelStatus.READY),
        (ParcelStatus.RETURNED, ParcelStatus.READY),
        (ParcelStatus.EXPIRED, ParcelStatus.PICKED_UP),
    ],
)
def test_the_transition_map_refuses_impossible_moves(start: str, target: str) -> None:
    assert target not in PARCEL_TRANSITIONS[start]


def test_every_status_has_a_row_in_the_transition_map() -> None:
    assert set(PARCEL_TRANSITIONS) == set(ParcelStatus.values)


def test_a_transition_writes_an_audit_row_with_who_and_why() -> None:
    compartment = CompartmentFactory()
    parcel = parcel_announce(
        carrier=CarrierFactory(),
        tracking_number="SF123",
        recipient=IdentityFactory(),
        size="S",
        cabinet=compartment.cabinet,
        actor=STAFF,
    )
    parcel_transition(
        parcel_id=parcel.pk,
        to_status=ParcelStatus.READY,
        actor=Actor(kind="courier", label="C-0001"),
        reason="deposited",
        changes=_ready_fields(compartment),
    )
    events = list(
        ParcelEvent.objects.filter(parcel=parcel).values_list(
            "from_status", "to_status", "actor_kind", "actor_label", "reason"
        )
    )
    assert events == [
        ("", ParcelStatus.ANNOUNCED, "system", "test", ""),
        (ParcelStatus.ANNOUNCED, ParcelStatus.READY, "courier", "C-0001", "deposited"),
    ]
    parcel.refresh_from_db()
    assert parcel.status == ParcelStatus.READY and parcel.compartment == compartment


def test_a_refused_transition_changes_nothing_and_writes_no_row() -> None:
    parcel = ParcelFactory()
    with pytest.raises(InvalidTransition) as excinfo:
        parcel_transition(parcel_id=parcel.pk, to_status=ParcelStatus.PICKED_UP, actor=STAFF)
    assert excinfo.value.details == {"from": "announced", "to": "picked_up"}
    parcel.refresh_from_db()
    assert parcel.status == ParcelStatus.ANNOUNCED
    assert not ParcelEvent.objects.filter(parcel=parcel).exists()


def test_announcing_a_known_tracking_number_is_a_clear_error() -> None:
    parcel = ParcelFactory()
    from core.errors import ApplicationError

    with pytest.raises(ApplicationError) as excinfo:
        parcel_announce(
            carrier=parcel.carrier,
            tracking_number=parcel.tracking_number,
            recipient=IdentityFactory(),
            size="S",
            cabinet=CabinetFactory(),
            actor=STAFF,
        )
    assert excinfo.value.code == "duplicate_tracking_number"
