from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from cabinets.models import (
    CABINET_TRANSITIONS,
    SERVICE_TRANSITIONS,
    CabinetEvent,
    CabinetState,
    Compartment,
    CompartmentEvent,
    ServiceState,
)
from cabinets.services.lifecycle import (
    cabinet_transition,
    compartment_service_set,
    compartments_create,
)
from core.actors import Actor
from core.errors import InvalidTransition
from tests.factories import CabinetFactory, CompartmentFactory

pytestmark = pytest.mark.django_db
ACTOR = Actor.system("test")


def test_the_database_refuses_two_compartments_with_one_label_in_a_cabinet() -> None:
    compartment = CompartmentFactory(label="A01")
    with pytest.raises(IntegrityError), transaction.atomic():
        CompartmentFactory(cabinet=compartment.cabinet, label="A01")
    CompartmentFactory(label="A01")  # another cabinet may


def test_the_database_refuses_a_duplicate_serial() -> None:
    CabinetFactory(serial="SH-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        CabinetFactory(serial="SH-1")


def test_the_database_refuses_impossible_coordinates_and_states() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        CabinetFactory(latitude=Decimal("91"))
    cabinet = CabinetFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        type(cabinet).objects.filter(pk=cabinet.pk).update(state="exploded")
    compartment = CompartmentFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Compartment.objects.filter(pk=compartment.pk).update(size="X")
    with pytest.raises(IntegrityError), transaction.atomic():
        Compartment.objects.filter(pk=compartment.pk).update(width_mm=0)


def test_an_unknown_time_zone_is_refused_by_validation() -> None:
    cabinet = CabinetFactory.build(time_zone="Mars/Olympus_Mons")
    with pytest.raises(ValidationError) as excinfo:
        cabinet.full_clean()
    assert "time_zone" in excinfo.value.message_dict


def test_compartments_get_the_nominal_dimensions_of_their_size() -> None:
    cabinet = CabinetFactory()
    small, large = compartments_create(cabinet=cabinet, layout=[("A01", "S"), ("C01", "L")])
    assert (small.height_mm, small.max_weight_g) == (90, 5_000)
    assert (large.height_mm, large.max_weight_g) == (390, 30_000)


def test_every_state_has_a_row_in_the_transition_maps() -> None:
    assert set(CABINET_TRANSITIONS) == set(CabinetState.values)
    assert set(SERVICE_TRANSITIONS) == set(ServiceState.values)


def test_a_retired_cabinet_cannot_come_back() -> None:
    cabinet = CabinetFactory(state=CabinetState.ACTIVE)
    cabinet_transition(cabinet_id=cabinet.pk, to_state=CabinetState.RETIRED, actor=ACTOR)
    with pytest.raises(InvalidTransition):
        cabinet_transition(cabinet_id=cabinet.pk, to_state=CabinetState.ACTIVE, actor=ACTOR)
    assert list(CabinetEvent.objects.values_list("from_state", "to_state")) == [
        ("active", "retired")
    ]


def test_compartment_moves_follow_the_map_and_are_audited() -> None:
    compartment = CompartmentFactory()
    with pytest.raises(InvalidTransition):
        compartment_service_set(
            compartment_id=compartment.pk, to_state=ServiceState.IN_SERVICE, actor=ACTOR
        )
    compartment_service_set(
        compartment_id=compartment.pk,
        to_state=ServiceState.OUT_OF_SERVICE,
        actor=ACTOR,
        reason="door jammed",
    )
    with pytest.raises(InvalidTransition):
        compartment_service_set(
            compartment_id=compartment.pk, to_state=ServiceState.OUT_OF_SERVICE, actor=ACTOR
        )
    compartment.refresh_from_db()
    assert compartment.service_state == ServiceState.OUT_OF_SERVICE
    assert compartment.service_reason == "door jammed"
    assert list(
        CompartmentEvent.objects.filter(compartment=compartment).values_list(
            "from_state", "to_state", "reason"
        )
    ) == [("in_service", "out_of_service", "door jammed")]
