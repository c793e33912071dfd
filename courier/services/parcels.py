"""A parcel's lifecycle: announced by a carrier, moved only by `parcel_transition`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from cabinets.models import Cabinet, CompartmentSize
from core.actors import Actor
from core.errors import ApplicationError, Conflict
from core.transitions import check_transition
from courier.lock_objects import parcel_lock
from courier.models import (
    PARCEL_EXTENDABLE,
    PARCEL_TRANSITIONS,
    Carrier,
    Parcel,
    ParcelDirection,
    ParcelEvent,
    ParcelStatus,
)
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
        parcel = parcel_lock(parcel_id=parcel_id)
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


@dataclass(frozen=True)
class Contact:
    """Who a carrier says a parcel is for (or from): stored on that parcel only."""

    phone: str
    name: str = ""
    email: str = ""


class DuplicateTrackingNumber(Conflict):
    """The carrier already announced this tracking number; `parcel` is that parcel."""

    code = "duplicate_tracking_number"

    def __init__(self, *, parcel: Parcel) -> None:
        super().__init__(
            _("Tracking number %(number)s is already announced.")
            % {"number": parcel.tracking_number}
        )
        self.parcel = parcel


def parcel_announce(
    *,
    carrier: Carrier,
    tracking_number: str,
    recipient: Identity,
    size: str,
    cabinet: Cabinet,
    actor: Actor,
    sender: Identity | None = None,
    direction: str = ParcelDirection.DELIVERY,
    recipient_contact: Contact | None = None,
    sender_contact: Contact | None = None,
) -> Parcel:
    """`recipient` / `sender` are the people keyed by the contact phones; the contacts (by
    default just those phones and the people's own names) go on the parcel."""
    to = recipient_contact or Contact(phone=recipient.phone, name=recipient.name)
    if to.phone != recipient.phone:
        raise ApplicationError(_("The recipient and their contact phone differ."), code="invalid")
    by = sender_contact or (Contact(phone=sender.phone, name=sender.name) if sender else None)
    if size not in CompartmentSize.values:
        raise ApplicationError(
            _("Unknown parcel size %(size)r.") % {"size": size}, code="invalid_size"
        )
    if direction == ParcelDirection.DROPOFF and sender is None:
        raise ApplicationError(_("A drop-off needs its sender."), code="sender_required")
    existing = Parcel.objects.filter(carrier=carrier, tracking_number=tracking_number).first()
    if existing is not None:
        raise DuplicateTrackingNumber(parcel=existing)
    try:
        with transaction.atomic():
            parcel = Parcel.objects.create(
                carrier=carrier,
                tracking_number=tracking_number,
                recipient=recipient,
                recipient_phone=to.phone,
                recipient_name=to.name,
                recipient_email=to.email,
                sender=sender,
                sender_phone=by.phone if by else "",
                sender_name=by.name if by else "",
                size=size,
                cabinet=cabinet,
                direction=direction,
                status=ParcelStatus.ANNOUNCED,
            )
            ParcelEvent.objects.create(
                parcel=parcel,
                from_status="",
                to_status=ParcelStatus.ANNOUNCED,
                **actor.event_fields(),
            )
    except IntegrityError:
        # A concurrent announce of the same number committed between the check and the
        # insert (the unique constraint refused ours). Its transaction is over, so the
        # parcel is there to read; anything else stays an error.
        winner = Parcel.objects.filter(carrier=carrier, tracking_number=tracking_number).first()
        if winner is None:
            raise
        raise DuplicateTrackingNumber(parcel=winner) from None
    return parcel


def parcel_cancel(*, parcel: Parcel, actor: Actor, reason: str = "") -> Parcel:
    with transaction.atomic():
        locked = parcel_lock(parcel_id=parcel.pk)
        if locked.status == ParcelStatus.ANNOUNCED and locked.compartment_id is not None:
            raise Conflict(
                _("The parcel is being put into a compartment and can no longer be cancelled."),
                code="parcel_in_cabinet",
            )
        return parcel_transition(
            parcel_id=parcel.pk, to_status=ParcelStatus.CANCELLED, actor=actor, reason=reason
        )


def parcel_extend(*, parcel: Parcel, actor: Actor) -> Parcel:
    """The recipient may push the deadline back once, while the parcel waits for them."""
    with transaction.atomic():
        locked = parcel_lock(parcel_id=parcel.pk)
        if locked.status not in PARCEL_EXTENDABLE:
            raise Conflict(
                _("Only a parcel waiting for pickup can be extended."), code="not_extendable"
            )
        if locked.extension_count >= 1:
            raise Conflict(
                _("The pickup deadline has already been extended once."),
                code="already_extended",
            )
        assert locked.pickup_deadline is not None
        locked.pickup_deadline += timedelta(days=settings.PARCEL_EXTENSION_DAYS)
        locked.extension_count += 1
        locked.save(update_fields=["pickup_deadline", "extension_count", "updated_at"])
        ParcelEvent.objects.create(
            parcel=locked,
            from_status=locked.status,
            to_status=locked.status,
            reason="deadline extended",
            data={"pickup_deadline": locked.pickup_deadline.isoformat()},
            **actor.event_fields(),
        )
    return locked
