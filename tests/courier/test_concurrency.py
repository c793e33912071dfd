"""Races that only a database with row locks can referee: run on PostgreSQL (CI)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from cabinet_agent import protocol
from cabinets.models import CabinetCommand, Compartment
from cabinets.services.commands import command_rejected_record
from cabinets.services.credentials import cabinet_credential_issue
from cabinets.services.lifecycle import compartments_create
from cabinets.services.messages import cabinet_message_handle
from core.actors import Actor
from core.errors import ApplicationError
from courier.models import Parcel, ParcelEvent, ParcelStatus
from courier.selectors import compartment_use
from courier.services.deposits import Opening, parcel_deposit_start
from courier.services.parcels import parcel_transition
from courier.services.releases import parcels_release
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

    won = [o.parcel for o in outcomes if isinstance(o, Opening)]
    lost = [o for o in outcomes if isinstance(o, ApplicationError)]
    assert len(won) == 40 and len(lost) == 10, outcomes
    assert {e.code for e in lost} == {"no_compartment"}
    labels = [p.compartment.label for p in won]
    assert len(set(labels)) == 40
    compartments = Compartment.objects.filter(cabinet=cabinet)
    assert {compartment_use(compartment_id=c.pk) for c in compartments} == {"reserved"}
    assert CabinetCommand.objects.filter(cabinet=cabinet).count() == 40
    reserved = Parcel.objects.filter(compartment__isnull=False).values_list(
        "compartment_id", flat=True
    )
    assert len(reserved) == len(set(reserved)) == 40


def test_two_simultaneous_pickups_of_one_parcel_give_exactly_one_pickup() -> None:
    cabinet = CabinetFactory()
    [compartment] = compartments_create(cabinet=cabinet, layout=[("A01", "S")])
    cabinet_credential_issue(cabinet=cabinet, actor=ACTOR)
    parcel = _ready_parcel(cabinet, compartment)
    # a face and a code at the same instant: one door opening
    releases = _race(2, lambda i: parcels_release(parcels=[parcel], actor=ACTOR, reason="pickup"))
    assert sorted(len(r.parcels) for r in releases) == [0, 1], releases
    assert CabinetCommand.objects.filter(compartment=compartment).count() == 1

    # the door's close reported twice at once (two event ids: a cabinet bug): one pickup
    closes = _race(2, lambda i: cabinet_message_handle(cabinet_id=cabinet.pk, frame=_closed()))
    assert all(not isinstance(c, Exception) for c in closes), closes
    assert ParcelEvent.objects.filter(parcel=parcel, to_status=ParcelStatus.PICKED_UP).count() == 1
    assert Parcel.objects.get(pk=parcel.pk).status == ParcelStatus.PICKED_UP


def _closed() -> dict[str, Any]:
    return protocol.validate_cabinet_frame(
        {
            "type": "door_event",
            "id": str(uuid.uuid4()),
            "compartment": "A01",
            "event": "closed",
            "at": protocol.now_ms(),
        }
    )


def _ready_parcel(cabinet: Any, compartment: Compartment) -> Parcel:
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
    return parcel


def test_a_face_pickup_a_door_event_and_a_rejected_unlock_on_one_compartment_never_deadlock() -> (
    None
):
    """Every path locks the compartment before the parcel (courier.lock_objects): a release,
    a door event and a rejected unlock racing on one compartment queue, they never deadlock."""
    cabinet = CabinetFactory()
    [compartment] = compartments_create(cabinet=cabinet, layout=[("A01", "S")])
    cabinet_credential_issue(cabinet=cabinet, actor=ACTOR)
    for round_ in range(25):
        parcel = _ready_parcel(cabinet, compartment)
        [earlier] = parcels_release(parcels=[parcel], actor=ACTOR, reason="pickup").commands
        Parcel.objects.filter(pk=parcel.pk).update(
            release_authorized_at=timezone.now() - timezone.timedelta(minutes=5)
        )
        parcel.refresh_from_db()

        def work(i: int, parcel: Parcel = parcel, earlier: CabinetCommand = earlier) -> Any:
            if i == 0:
                return parcels_release(parcels=[parcel], actor=ACTOR, reason="pickup")
            if i == 1:
                return cabinet_message_handle(cabinet_id=cabinet.pk, frame=_closed())
            return command_rejected_record(
                cabinet_id=cabinet.pk, command_id=str(earlier.pk), reason="expired"
            )

        outcomes = _race(3, work)
        errors = [o for o in outcomes if isinstance(o, Exception)]
        assert not errors, f"round {round_}: {errors}"
        # Whatever the order, the parcel ends in one consistent state.
        status = Parcel.objects.get(pk=parcel.pk).status
        assert status in (ParcelStatus.READY, ParcelStatus.PICKED_UP)
        Parcel.objects.filter(pk=parcel.pk, status=ParcelStatus.READY).update(
            status=ParcelStatus.EXPIRED
        )
        if status == ParcelStatus.READY:
            parcel_transition(parcel_id=parcel.pk, to_status=ParcelStatus.RETURNED, actor=ACTOR)
