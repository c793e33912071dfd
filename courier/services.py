from __future__ import annotations

from typing import Any

from django.db import transaction

from cabinets.models import Cabinet, CompartmentSize
from core.actors import Actor
from core.errors import ApplicationError
from core.transitions import check_transition
from courier.models import PARCEL_TRANSITIONS, Carrier, Parcel, ParcelEvent, ParcelStatus
from identity.models import Identity


def parcel_transition(
    *,
    parcel_id: int,
    to_status: str,
    actor: Actor,
    reason: str = "",
    changes: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> Parcel:
    """The one way a parcel changes status: lock, check the map, save, audit."""
    changes = changes or {}
    with transaction.atomic():
        # The row lock serialises concurrent transitions of one parcel (two pickups, an
        # expiry racing a pickup): the second sees the first's status and is refused.
        parcel = Parcel.objects.select_for_update().get(pk=parcel_id)
        from_status = parcel.status
        check_transition(PARCEL_TRANSITIONS, kind="parcel", current=from_status, target=to_status)
        parcel.status = to_status
        for field, value in changes.items():
            setattr(parcel, field, value)
        parcel.save(update_fields=["status", "updated_at", *changes])
        ParcelEvent.objects.create(
            parcel=parcel,
            from_status=from_status,
            to_status=to_status,
            reason=reason[:255],
            data=data or {},
            **actor.event_fields(),
        )
    return parcel


def parcel_announce(
    *,
    carrier: Carrier,
    tracking_number: str,
    recipient: Identity,
    size: str,
    cabinet: Cabinet,
    actor: Actor,
    sender: Identity | None = None,
) -> Parcel:
    if size not in CompartmentSize.values:
        raise ApplicationError(f"Unknown parcel size {size!r}.", code="invalid_size")
    with transaction.atomic():
        if Parcel.objects.filter(carrier=carrier, tracking_number=tracking_number).exists():
            raise ApplicationError(
                f"Tracking number {tracking_number!r} is already announced.",
                code="duplicate_tracking_number",
            )
        parcel = Parcel.objects.create(
            carrier=carrier,
            tracking_number=tracking_number,
            recipient=recipient,
            sender=sender,
            size=size,
            cabinet=cabinet,
            status=ParcelStatus.ANNOUNCED,
        )
        ParcelEvent.objects.create(
            parcel=parcel, from_status="", to_status=ParcelStatus.ANNOUNCED, **actor.event_fields()
        )
    return parcel
