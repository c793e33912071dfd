"""Parcel lifecycle services.

Lock order, everywhere: compartment before parcel (the cabinet link locks the compartment when
a door event arrives, then the parcel flows lock the parcel)."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import connection, transaction
from django.db.models import Case, IntegerField, Q, Value, When
from django.utils import timezone

from cabinets.models import (
    SIZE_ORDER,
    Cabinet,
    CabinetCommand,
    CommandAction,
    CommandStatus,
    Compartment,
    CompartmentSize,
    CompartmentState,
)
from cabinets.services import compartment_transition, compartment_unlock
from core.actors import Actor
from core.errors import ApplicationError, Conflict, NotFound
from core.transitions import check_transition
from courier.codes import pickup_code_generate, pickup_code_hash
from courier.models import (
    PARCEL_TRANSITIONS,
    Carrier,
    CarrierApiKey,
    Courier,
    NotificationKind,
    Parcel,
    ParcelDirection,
    ParcelEvent,
    ParcelStatus,
)
from identity.models import Identity

logger = logging.getLogger(__name__)


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
    direction: str = ParcelDirection.DELIVERY,
) -> Parcel:
    if size not in CompartmentSize.values:
        raise ApplicationError(f"Unknown parcel size {size!r}.", code="invalid_size")
    if direction == ParcelDirection.DROPOFF and sender is None:
        raise ApplicationError("A drop-off needs its sender.", code="sender_required")
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
            direction=direction,
            status=ParcelStatus.ANNOUNCED,
        )
        ParcelEvent.objects.create(
            parcel=parcel, from_status="", to_status=ParcelStatus.ANNOUNCED, **actor.event_fields()
        )
    return parcel


def parcel_cancel(*, parcel: Parcel, actor: Actor, reason: str = "") -> Parcel:
    if parcel.compartment_id is not None:
        raise Conflict(
            "The parcel is being put into a compartment and can no longer be cancelled.",
            code="parcel_in_cabinet",
        )
    return parcel_transition(
        parcel_id=parcel.pk, to_status=ParcelStatus.CANCELLED, actor=actor, reason=reason
    )


# --- Compartment reservation (deposits and drop-offs) ------------------------------------------


def _fitting_compartment(
    *, cabinet_id: int, min_size: str, exclude_id: int | None = None
) -> Compartment | None:
    """Lock the smallest free compartment of at least `min_size`.

    SKIP LOCKED lets concurrent deposits into one cabinet each take a different compartment
    instead of queueing on the same row; where the database has no row locks (SQLite), its
    single writer serialises them."""
    sizes = [size for size, rank in SIZE_ORDER.items() if rank >= SIZE_ORDER[min_size]]
    rank = Case(
        *[When(size=size, then=Value(order)) for size, order in SIZE_ORDER.items()],
        output_field=IntegerField(),
    )
    candidates = Compartment.objects.filter(
        cabinet_id=cabinet_id, state=CompartmentState.FREE, size__in=sizes
    ).order_by(rank, "label")
    if exclude_id is not None:
        candidates = candidates.exclude(pk=exclude_id)
    if connection.features.has_select_for_update_skip_locked:
        candidates = candidates.select_for_update(skip_locked=True, of=("self",))
    return candidates.first()


def _reserve_and_open(
    *, parcel: Parcel, min_size: str, actor: Actor, reason: str, avoid_id: int | None = None
) -> Parcel:
    """Inside a transaction: reserve a compartment for an announced parcel and unlock it."""
    compartment = _fitting_compartment(
        cabinet_id=parcel.cabinet_id, min_size=min_size, exclude_id=avoid_id
    )
    if compartment is None:
        raise Conflict(
            "No free compartment is large enough for this parcel.", code="no_compartment"
        )
    compartment_transition(
        compartment_id=compartment.pk,
        to_state=CompartmentState.RESERVED,
        actor=actor,
        reason=reason,
    )
    locked = Parcel.objects.select_for_update().get(pk=parcel.pk)
    if locked.status != ParcelStatus.ANNOUNCED or locked.compartment_id is not None:
        raise Conflict("The parcel is already in a compartment.", code="parcel_in_cabinet")
    locked.compartment = compartment
    locked.reserved_at = timezone.now()
    locked.save(update_fields=["compartment", "reserved_at", "updated_at"])
    compartment_unlock(
        compartment=compartment,
        actor=actor,
        reason=reason,
        payload={"parcel": locked.tracking_number, "purpose": reason},
    )
    return locked


def _release_reservation(*, parcel: Parcel, actor: Actor, reason: str) -> None:
    """Inside a transaction: give a reserved compartment back."""
    compartment = parcel.compartment
    if compartment is None:
        return
    Parcel.objects.filter(pk=parcel.pk).update(compartment=None, reserved_at=None)
    current = Compartment.objects.get(pk=compartment.pk).state
    if current == CompartmentState.RESERVED:
        compartment_transition(
            compartment_id=compartment.pk,
            to_state=CompartmentState.FREE,
            actor=actor,
            reason=reason,
        )


def parcel_deposit_start(
    *, cabinet: Cabinet, carrier: Carrier, tracking_number: str, actor: Actor
) -> Parcel:
    """A courier scanned a parcel at the cabinet: reserve the smallest free compartment that
    fits and open it. Scanning the same parcel again reopens the same compartment."""
    parcel = (
        Parcel.objects.filter(carrier=carrier, tracking_number=tracking_number)
        .select_related("compartment")
        .first()
    )
    if parcel is None:
        raise NotFound(f"Parcel {tracking_number} is not announced.", code="unknown_parcel")
    if parcel.direction != ParcelDirection.DELIVERY or parcel.status != ParcelStatus.ANNOUNCED:
        raise Conflict(
            f"Parcel {tracking_number} is {parcel.get_status_display().lower()}.",
            code="parcel_not_depositable",
        )
    if parcel.cabinet_id != cabinet.pk:
        raise Conflict(
            f"Parcel {tracking_number} is announced for another cabinet.", code="wrong_cabinet"
        )
    with transaction.atomic():
        if parcel.compartment is not None:
            compartment_unlock(
                compartment=parcel.compartment,
                actor=actor,
                reason="deposit",
                payload={"parcel": tracking_number, "purpose": "deposit"},
            )
            return parcel
        return _reserve_and_open(parcel=parcel, min_size=parcel.size, actor=actor, reason="deposit")


def parcel_deposit_bigger(
    *, cabinet: Cabinet, carrier: Carrier, tracking_number: str, actor: Actor
) -> Parcel:
    """The parcel did not fit the compartment just opened: open a larger one instead."""
    parcel = (
        Parcel.objects.filter(
            carrier=carrier,
            tracking_number=tracking_number,
            cabinet=cabinet,
            status=ParcelStatus.ANNOUNCED,
            compartment__isnull=False,
        )
        .select_related("compartment")
        .first()
    )
    if parcel is None or parcel.compartment is None:
        raise Conflict(
            f"No compartment is open for parcel {tracking_number}.", code="parcel_not_reserved"
        )
    sizes = sorted(SIZE_ORDER, key=SIZE_ORDER.__getitem__)
    current = SIZE_ORDER[parcel.compartment.size]
    if current + 1 >= len(sizes):
        raise Conflict("No larger compartment size exists.", code="no_compartment")
    bigger = sizes[current + 1]
    with transaction.atomic():
        _release_reservation(parcel=parcel, actor=actor, reason="parcel did not fit")
        parcel.refresh_from_db()
        # The parcel is recorded as the larger size, so a re-scan does not pick a small one.
        Parcel.objects.filter(pk=parcel.pk).update(size=bigger)
        parcel.size = bigger
        return _reserve_and_open(parcel=parcel, min_size=bigger, actor=actor, reason="deposit")


def parcel_dropoff_start(*, parcel: Parcel, actor: Actor) -> Parcel:
    """A verified sender is at the cabinet: open a compartment for their parcel."""
    with transaction.atomic():
        return _reserve_and_open(parcel=parcel, min_size=parcel.size, actor=actor, reason="dropoff")


# --- Releasing parcels (pickup, return, collection) --------------------------------------------

# How long one authorisation to open a parcel's door lasts; a new face or code after that
# may open it again (the person walked away before opening).
RELEASE_WINDOW = timedelta(seconds=60)


def parcels_release(*, parcels: list[Parcel], actor: Actor, reason: str) -> list[Parcel]:
    """Authorise opening the doors of these parcels. Compare-and-set per parcel: two people
    (or a face and a code) at once open a door once; the door's close completes the release."""
    released = []
    now = timezone.now()
    with transaction.atomic():
        for parcel in parcels:
            not_claimed = Q(release_authorized_at__isnull=True) | Q(
                release_authorized_at__lt=now - RELEASE_WINDOW
            )
            claimed = (
                Parcel.objects.filter(pk=parcel.pk, status=parcel.status, compartment__isnull=False)
                .filter(not_claimed)
                .update(release_authorized_at=now)
            )
            if claimed != 1 or parcel.compartment is None:
                continue
            compartment_unlock(
                compartment=parcel.compartment,
                actor=actor,
                reason=reason,
                payload={"parcel": parcel.tracking_number, "purpose": reason},
            )
            released.append(parcel)
    return released


PARCEL_DONE = (
    ParcelStatus.PICKED_UP,
    ParcelStatus.RETURNED,
    ParcelStatus.COLLECTED,
    ParcelStatus.CANCELLED,
)

# What closing the door completes, per status of the parcel inside.
_RELEASE_DONE: dict[str, str] = {
    ParcelStatus.READY: ParcelStatus.PICKED_UP,
    ParcelStatus.EXPIRED: ParcelStatus.RETURNED,
    ParcelStatus.DROPPED_OFF: ParcelStatus.COLLECTED,
}


def compartment_door_closed(*, compartment: Compartment) -> Parcel | None:
    """Called inside the door event's transaction, the compartment already locked."""
    parcel = (
        Parcel.objects.select_for_update()
        .filter(compartment=compartment)
        .exclude(
            status__in=[
                ParcelStatus.PICKED_UP,
                ParcelStatus.RETURNED,
                ParcelStatus.COLLECTED,
                ParcelStatus.CANCELLED,
            ]
        )
        .first()
    )
    if parcel is None:
        return None
    actor = Actor(kind="cabinet", label=compartment.cabinet.serial)
    if parcel.status == ParcelStatus.ANNOUNCED and parcel.reserved_at is not None:
        return _parcel_stored(parcel=parcel, compartment=compartment, actor=actor)
    if parcel.status in _RELEASE_DONE and parcel.release_authorized_at is not None:
        compartment_transition(
            compartment_id=compartment.pk,
            to_state=CompartmentState.FREE,
            actor=actor,
            reason="emptied",
        )
        now = timezone.now()
        changes: dict[str, Any] = {"compartment": None, "release_authorized_at": None}
        if parcel.status == ParcelStatus.READY:
            changes["picked_up_at"] = now
        done = parcel_transition(
            parcel_id=parcel.pk,
            to_status=_RELEASE_DONE[parcel.status],
            actor=actor,
            reason=f"door {compartment.label} closed",
            changes=changes,
        )
        return done
    return None


def _parcel_stored(*, parcel: Parcel, compartment: Compartment, actor: Actor) -> Parcel:
    compartment_transition(
        compartment_id=compartment.pk,
        to_state=CompartmentState.OCCUPIED,
        actor=actor,
        reason="door closed",
    )
    now = timezone.now()
    if parcel.direction == ParcelDirection.DROPOFF:
        return parcel_transition(
            parcel_id=parcel.pk,
            to_status=ParcelStatus.DROPPED_OFF,
            actor=actor,
            reason="dropped off by the sender",
            changes={"reserved_at": None, "deposited_at": now},
        )
    code = pickup_code_generate()
    stored = parcel_transition(
        parcel_id=parcel.pk,
        to_status=ParcelStatus.READY,
        actor=actor,
        reason="deposited",
        changes={
            "reserved_at": None,
            "deposited_at": now,
            "pickup_deadline": now + timedelta(days=settings.PARCEL_PICKUP_DAYS),
            "pickup_code_hash": pickup_code_hash(parcel_id=parcel.pk, code=code),
        },
    )
    from courier.tasks import parcel_notify_task

    # The code exists in clear only in this task message and the notification itself.
    parcel_notify_task.delay_on_commit(stored.pk, NotificationKind.READY, code)
    return stored


def unlock_failed(*, command: CabinetCommand) -> None:
    """An unlock did not open the door. A pending release may be tried again at once; a
    deposit moves to another compartment (this one counts a failed open)."""
    if command.action != CommandAction.UNLOCK or command.compartment_id is None:
        return
    if command.status not in (CommandStatus.FAILED, CommandStatus.REJECTED, CommandStatus.EXPIRED):
        return
    parcel = (
        Parcel.objects.select_for_update()
        .filter(compartment_id=command.compartment_id)
        .exclude(
            status__in=[
                ParcelStatus.PICKED_UP,
                ParcelStatus.RETURNED,
                ParcelStatus.COLLECTED,
                ParcelStatus.CANCELLED,
            ]
        )
        .select_related("compartment")
        .first()
    )
    if parcel is None:
        return
    if parcel.release_authorized_at is not None:
        Parcel.objects.filter(pk=parcel.pk).update(release_authorized_at=None)
        return
    if parcel.status == ParcelStatus.ANNOUNCED and parcel.reserved_at is not None:
        actor = Actor.system("deposit retry")
        _release_reservation(parcel=parcel, actor=actor, reason="door did not open")
        parcel.refresh_from_db()
        reason = "dropoff" if parcel.direction == ParcelDirection.DROPOFF else "deposit"
        try:
            with transaction.atomic():
                _reserve_and_open(
                    parcel=parcel,
                    min_size=parcel.size,
                    actor=actor,
                    reason=reason,
                    avoid_id=command.compartment_id,
                )
        except Conflict:
            logger.warning(
                "parcel %s: door did not open and no other compartment is free", parcel.pk
            )


# --- Deadlines -----------------------------------------------------------------------------------


def parcels_expire(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    expired = 0
    for parcel_id in list(
        Parcel.objects.filter(status=ParcelStatus.READY, pickup_deadline__lte=now).values_list(
            "pk", flat=True
        )
    ):
        try:
            parcel_transition(
                parcel_id=parcel_id,
                to_status=ParcelStatus.EXPIRED,
                actor=Actor.system("expiry"),
                reason="pickup deadline passed",
            )
        except ApplicationError:
            continue  # picked up meanwhile
        expired += 1
        from courier.tasks import parcel_notify_task

        parcel_notify_task.delay_on_commit(parcel_id, NotificationKind.EXPIRED)
    return expired


def parcel_extend(*, parcel: Parcel, actor: Actor) -> Parcel:
    """The recipient may push the deadline back once, while the parcel waits for them."""
    with transaction.atomic():
        locked = Parcel.objects.select_for_update().get(pk=parcel.pk)
        if locked.status != ParcelStatus.READY:
            raise Conflict(
                "Only a parcel waiting for pickup can be extended.", code="not_extendable"
            )
        if locked.extension_count >= 1:
            raise Conflict(
                "The pickup deadline has already been extended once.", code="already_extended"
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


# --- People and keys -----------------------------------------------------------------------------


def courier_pin_reset(*, courier: Courier) -> str:
    """A new 4-digit PIN for the cabinet screen, returned in clear once."""
    pin = f"{secrets.randbelow(10**4):04d}"
    courier.pin_hash = make_password(pin)
    courier.save(update_fields=["pin_hash"])
    return pin


def carrier_api_key_revoke(*, key: CarrierApiKey) -> None:
    CarrierApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
