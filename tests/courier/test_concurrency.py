"""Races that only a database with row locks can referee: run on PostgreSQL (CI)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from cabinets.models import CabinetCommand, Compartment, CompartmentState
from cabinets.services import cabinet_credential_issue, compartments_create
from core.actors import Actor
from core.errors import ApplicationError
from courier.models import Parcel, ParcelEvent, ParcelStatus
from courier.services import (
    compartment_door_closed,
    parcel_deposit_start,
    parcel_transition,
    parcels_release,
)
from tests.factories import CabinetFactory, CarrierFactory, IdentityFactory, ParcelFactory

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="row-lock races need PostgreSQL (CI runs them)"
    ),
]
ACTOR = Actor.system("race")


def _race(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run work(i) in n threads released at the same instant; collect results or errors."""
    barrier = threading.Barrier(n)
    outcomes: list[Any] = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait()
            outcomes[i] = work(i)
        except Exception as exc:
            outcomes[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_fifty_concurrent_deposits_into_one_cabinet_never_share_a_compartment() -> None:
    cabinet = CabinetFactory()
    compartments_create(cabinet=cabinet, layout=[(f"A{i:02d}", "S") for i in range(40)])
    cabinet_credential_issue(cabinet=cabinet, actor=ACTOR)
    carrier = CarrierFactory()
    parcels = [
        ParcelFactory(
            carrier=carrier,
            cabinet=cabinet,
            tracking_number=f"RACE{i:03d}",
            recipient=IdentityFactory(),
        )
        for i in range(50)
    ]

    outcomes = _race(
        50,
        lambda i: parcel_deposit_start(
            cabinet=cabinet,
            carrier=carrier,
            tracking_number=parcels[i].tracking_number,
            actor=ACTOR,
        ),
    )

    won = [o for o in outcomes if isinstance(o, Parcel)]
    lost = [o for o in outcomes if isinstance(o, ApplicationError)]
    assert len(won) == 40 and len(lost) == 10, outcomes
    assert {e.code for e in lost} == {"no_compartment"}
    labels = [p.compartment.label for p in won]
    assert len(set(labels)) == 40
    assert (
        Compartment.objects.filter(cabinet=cabinet, state=CompartmentState.RESERVED).count() == 40
    )
    assert CabinetCommand.objects.filter(cabinet=cabinet).count() == 40
    reserved = Parcel.objects.filter(compartment__isnull=False).values_list(
        "compartment_id", flat=True
    )
    assert len(reserved) == len(set(reserved)) == 40


def test_two_simultaneous_pickups_of_one_parcel_give_exactly_one_pickup() -> None:
    cabinet = CabinetFactory()
    [compartment] = compartments_create(cabinet=cabinet, layout=[("A01", "S")])
    cabinet_credential_issue(cabinet=cabinet, actor=ACTOR)
    Compartment.objects.filter(pk=compartment.pk).update(state=CompartmentState.OCCUPIED)
    parcel = ParcelFactory(cabinet=cabinet)
    parcel_transition(
        parcel_id=parcel.pk,
        to_status=ParcelStatus.READY,
        actor=ACTOR,
        changes={
            "compartment": compartment,
            "deposited_at": timezone.now(),
            "pickup_deadline": timezone.now() + timezone.timedelta(days=1),
        },
    )
    parcel.refresh_from_db()

    # a face and a code at the same instant: one door opening
    releases = _race(2, lambda i: parcels_release(parcels=[parcel], actor=ACTOR, reason="pickup"))
    assert sorted(len(r) for r in releases) == [0, 1], releases
    assert CabinetCommand.objects.filter(compartment=compartment).count() == 1

    # the door's close reported twice at once (a replay racing the original): one pickup
    def close(i: int) -> Any:
        from django.db import transaction

        with transaction.atomic():
            locked = Compartment.objects.select_for_update().get(pk=compartment.pk)
            return compartment_door_closed(compartment=locked)

    closes = _race(2, close)
    assert sum(isinstance(c, Parcel) for c in closes) == 1, closes
    assert ParcelEvent.objects.filter(parcel=parcel, to_status=ParcelStatus.PICKED_UP).count() == 1
    assert Parcel.objects.get(pk=parcel.pk).status == ParcelStatus.PICKED_UP
