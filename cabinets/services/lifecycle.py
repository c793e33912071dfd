"""A cabinet's lifecycle state and a compartment's service state: the two facts an operator
changes, each through one locking transition service with an event row."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from cabinets.locks import compartment_lock
from cabinets.models import (
    CABINET_TRANSITIONS,
    SERVICE_TRANSITIONS,
    Cabinet,
    CabinetEvent,
    Compartment,
    CompartmentEvent,
    ServiceState,
)
from cabinets.push import push_after_commit
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
        # The cabinet's open socket is told at once (a retired one is closed): protocol §13.
        push_after_commit(cabinet.pk, {"type": "link.state", "state": to_state})
    return cabinet


def compartment_service_set(
    *, compartment_id: int, to_state: str, actor: Actor, reason: str = ""
) -> Compartment:
    """Take a compartment out of service or return it. Whatever is inside stays inside and can
    still be released: service decides only whether new parcels may go in."""
    with transaction.atomic():
        compartment = compartment_lock(compartment_id=compartment_id)
        from_state = compartment.service_state
        check_transition(
            SERVICE_TRANSITIONS, kind="compartment", current=from_state, target=to_state
        )
        compartment.service_state = to_state
        compartment.service_reason = "" if to_state == ServiceState.IN_SERVICE else reason[:255]
        compartment.service_changed_at = timezone.now()
        fields = ["service_state", "service_reason", "service_changed_at"]
        if to_state == ServiceState.IN_SERVICE:
            # Back in service after a repair: the failed opens before it no longer count.
            compartment.failed_open_count = 0
            fields.append("failed_open_count")
        compartment.save(update_fields=fields)
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
