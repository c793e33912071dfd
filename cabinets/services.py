from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from cabinets.models import (
    CABINET_TRANSITIONS,
    COMPARTMENT_TRANSITIONS,
    Cabinet,
    CabinetEvent,
    Compartment,
    CompartmentEvent,
)
from core.actors import Actor
from core.transitions import check_transition


def cabinet_transition(
    *, cabinet_id: int, to_state: str, actor: Actor, reason: str = ""
) -> Cabinet:
    with transaction.atomic():
        # Locked so that two admins moving the same cabinet cannot both pass the map check.
        cabinet = Cabinet.objects.select_for_update().get(pk=cabinet_id)
        from_state = cabinet.state
        check_transition(CABINET_TRANSITIONS, kind="cabinet", current=from_state, target=to_state)
        cabinet.state = to_state
        cabinet.save(update_fields=["state", "updated_at"])
        CabinetEvent.objects.create(
            cabinet=cabinet,
            from_state=from_state,
            to_state=to_state,
            reason=reason[:255],
            **actor.event_fields(),
        )
    return cabinet


def compartment_transition(
    *, compartment_id: int, to_state: str, actor: Actor, reason: str = ""
) -> Compartment:
    with transaction.atomic():
        # Locked: deposits, pickups and door events race on the same compartment.
        compartment = Compartment.objects.select_for_update().get(pk=compartment_id)
        from_state = compartment.state
        check_transition(
            COMPARTMENT_TRANSITIONS, kind="compartment", current=from_state, target=to_state
        )
        compartment.state = to_state
        compartment.state_changed_at = timezone.now()
        compartment.save(update_fields=["state", "state_changed_at"])
        CompartmentEvent.objects.create(
            compartment=compartment,
            from_state=from_state,
            to_state=to_state,
            reason=reason[:255],
            **actor.event_fields(),
        )
    return compartment


def compartments_create(
    *, cabinet: Cabinet, layout: Iterable[tuple[str, str]]
) -> list[Compartment]:
    """Create compartments from (label, size) pairs, with the nominal size dimensions."""
    compartments = []
    for label, size in layout:
        compartment = Compartment(cabinet=cabinet, label=label, size=size)
        compartment.apply_size_spec()
        compartments.append(compartment)
    return Compartment.objects.bulk_create(compartments)
