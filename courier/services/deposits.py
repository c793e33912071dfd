"""Putting parcels in: a courier's deposit and a sender's drop-off reserve the smallest free
compartment that fits and open it; the door's close stores the parcel (courier.services
.releases handles the close). A compartment is free when it is in service and no parcel holds
it: occupancy is never stored on the compartment."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Exists, IntegerField, OuterRef, Value, When
from django.utils import timezone
from django.utils.translation import gettext

from cabinets.models import (
    COMMAND_OPEN_STATUSES,
    SIZE_ORDER,
    Cabinet,
    CabinetCommand,
    CommandAction,
    CommandStatus,
    Compartment,
    ServiceState,
)
from cabinets.services.commands import compartment_unlock
from core.actors import Actor
from core.errors import Conflict, NotFound
from courier.codes import pickup_code_generate, pickup_code_hash
from courier.lock_objects import parcel_lock
from courier.models import (
    PARCEL_HOLDS_COMPARTMENT,
    Carrier,
    NotificationKind,
    Parcel,
    ParcelDirection,
    ParcelStatus,
)
from courier.services.parcels import parcel_transition
from courier.tasks import parcel_notify_task

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Opening:
    """A parcel and the unlock that opens its compartment (pushed after commit unless the
    caller asked to push it itself)."""

    parcel: Parcel
    command: CabinetCommand


def _free_compartment_lock(
    *, cabinet_id: int, min_size: str, exclude_ids: set[int]
) -> Compartment | None:
    """Lock the smallest free compartment of at least `min_size`.

    SKIP LOCKED lets concurrent deposits into one cabinet each take a different compartment
    instead of queueing on the same row, and it never waits, so it may be called while the
    parcel is already locked. Under the lock the compartment is checked again: a deposit that
    committed after this statement's snapshot may just have filled it. Where the database has
    no row locks (SQLite), its single writer serialises deposits."""
    sizes = [size for size, rank in SIZE_ORDER.items() if rank >= SIZE_ORDER[min_size]]
    rank = Case(
        *[When(size=size, then=Value(order)) for size, order in SIZE_ORDER.items()],
        output_field=IntegerField(),
    )
    held = Parcel.objects.filter(PARCEL_HOLDS_COMPARTMENT, compartment=OuterRef("pk"))
    excluded = set(exclude_ids)
    for _ in range(8):
        candidates = (
            Compartment.objects.filter(
                cabinet_id=cabinet_id, service_state=ServiceState.IN_SERVICE, size__in=sizes
            )
            .exclude(pk__in=excluded)
            .filter(~Exists(held))
            .order_by(rank, "label")
        )
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True, of=("self",))
        compartment = candidates.select_related("cabinet").first()
        if compartment is None:
            return None
        if not Parcel.objects.filter(PARCEL_HOLDS_COMPARTMENT, compartment=compartment).exists():
            return compartment
        excluded.add(compartment.pk)
    return None


def _reserve_and_open(
    *, parcel: Parcel, min_size: str, actor: Actor, reason: str, avoid: set[int] | None = None
) -> Opening:
    """Inside a transaction, the parcel locked: reserve a compartment for it and unlock it."""
    if parcel.status != ParcelStatus.ANNOUNCED or parcel.compartment_id is not None:
        raise Conflict(gettext("The parcel is already in a compartment."), code="parcel_in_cabinet")
    compartment = _free_compartment_lock(
        cabinet_id=parcel.cabinet_id, min_size=min_size, exclude_ids=avoid or set()
    )
    if compartment is None:
        raise Conflict(
            gettext("No free compartment is large enough for this parcel."), code="no_compartment"
        )
    parcel.compartment = compartment
    parcel.reserved_at = timezone.now()
    parcel.save(update_fields=["compartment", "reserved_at", "updated_at"])
    command = compartment_unlock(
        compartment=compartment,
        actor=actor,
        reason=reason,
        payload={"parcel": parcel.tracking_number, "purpose": reason},
        push=False,
    )
    return Opening(parcel=parcel, command=command)


def _release_reservation(*, parcel: Parcel) -> None:
    """Inside a transaction, the parcel locked: give its reserved compartment back."""
    parcel.compartment = None
    parcel.reserved_at = None
    parcel.save(update_fields=["compartment", "reserved_at", "updated_at"])


def _depositable(*, cabinet: Cabinet, carrier: Carrier, tracking_number: str) -> Parcel:
    parcel = Parcel.objects.filter(carrier=carrier, tracking_number=tracking_number).first()
    if parcel is None:
        raise NotFound(
            gettext("Parcel %(number)s is not announced.") % {"number": tracking_number},
            code="unknown_parcel",
        )
    if parcel.direction != ParcelDirection.DELIVERY or parcel.status != ParcelStatus.ANNOUNCED:
        raise Conflict(
            gettext("Parcel %(number)s is %(status)s.")
            % {"number": tracking_number, "status": parcel.get_status_display().lower()},
            code="parcel_not_depositable",
        )
    if parcel.cabinet_id != cabinet.pk:
        raise Conflict(
            gettext("Parcel %(number)s is announced for another cabinet.")
            % {"number": tracking_number},
            code="wrong_cabinet",
        )
    return parcel


def parcel_deposit_start(
    *, cabinet: Cabinet, carrier: Carrier, tracking_number: str, actor: Actor
) -> Opening:
    """A courier scanned a parcel at the cabinet: reserve the smallest free compartment that
    fits and open it. Scanning the same parcel again reopens the same compartment."""
    found = _depositable(cabinet=cabinet, carrier=carrier, tracking_number=tracking_number)
    with transaction.atomic():
        parcel = parcel_lock(parcel_id=found.pk)
        if parcel.status != ParcelStatus.ANNOUNCED:
            raise Conflict(
                gettext("Parcel %(number)s is no longer announced.") % {"number": tracking_number},
                code="conflict",
            )
        if parcel.compartment is not None:
            command = compartment_unlock(
                compartment=parcel.compartment,
                actor=actor,
                reason="deposit",
                payload={"parcel": tracking_number, "purpose": "deposit"},
                push=False,
            )
            return Opening(parcel=parcel, command=command)
        return _reserve_and_open(parcel=parcel, min_size=parcel.size, actor=actor, reason="deposit")


def parcel_deposit_bigger(
    *, cabinet: Cabinet, carrier: Carrier, tracking_number: str, actor: Actor
) -> Opening:
    """The parcel did not fit the compartment just opened: open a larger one instead."""
    found = Parcel.objects.filter(
        carrier=carrier, tracking_number=tracking_number, cabinet=cabinet
    ).first()
    with transaction.atomic():
        parcel = parcel_lock(parcel_id=found.pk) if found is not None else None
        if parcel is None or parcel.status != ParcelStatus.ANNOUNCED or parcel.compartment is None:
            raise Conflict(
                gettext("No compartment is open for parcel %(number)s.")
                % {"number": tracking_number},
                code="parcel_not_reserved",
            )
        sizes = sorted(SIZE_ORDER, key=SIZE_ORDER.__getitem__)
        current = SIZE_ORDER[parcel.compartment.size]
        if current + 1 >= len(sizes):
            raise Conflict(gettext("No larger compartment size exists."), code="no_compartment")
        too_small = parcel.compartment_id
        _release_reservation(parcel=parcel)
        # The parcel is recorded as the larger size, so a re-scan does not pick a small one.
        parcel.size = sizes[current + 1]
        parcel.save(update_fields=["size", "updated_at"])
        assert too_small is not None
        return _reserve_and_open(
            parcel=parcel, min_size=parcel.size, actor=actor, reason="deposit", avoid={too_small}
        )


def parcel_dropoff_start(*, parcel: Parcel, actor: Actor) -> Opening:
    """A verified sender is at the cabinet: open a compartment for their parcel."""
    with transaction.atomic():
        locked = parcel_lock(parcel_id=parcel.pk)
        return _reserve_and_open(parcel=locked, min_size=locked.size, actor=actor, reason="dropoff")


def parcel_stored(*, parcel: Parcel, actor: Actor, door: str) -> Parcel:
    """The door of a reserved compartment closed: the parcel is in. Compartment and parcel
    are locked by the caller."""
    now = timezone.now()
    if parcel.direction == ParcelDirection.DROPOFF:
        return parcel_transition(
            parcel_id=parcel.pk,
            to_status=ParcelStatus.DROPPED_OFF,
            actor=actor,
            reason="dropped off by the sender",
            changes={"reserved_at": None, "deposited_at": now},
            data={"compartment": door},
        )
    stored, _ = parcel_ready(parcel=parcel, actor=actor, reason="deposited", door=door)
    return stored


def parcel_ready(
    *,
    parcel: Parcel,
    actor: Actor,
    reason: str,
    door: str,
    compartment: Compartment | None = None,
) -> tuple[Parcel, str]:
    """A recipient's parcel is in its compartment (`compartment` when it was not reserved
    first: the demo seed): ready, with a pickup code and deadline; the recipient is told
    after commit. Returns the parcel and its code, which exists in clear only here, in the
    task message and in the notification itself."""
    now = timezone.now()
    code = pickup_code_generate()
    changes: dict[str, object] = {
        "reserved_at": None,
        "deposited_at": now,
        "pickup_deadline": now + timedelta(days=settings.PARCEL_PICKUP_DAYS),
        "pickup_code_hash": pickup_code_hash(parcel_id=parcel.pk, code=code),
    }
    if compartment is not None:
        changes["compartment"] = compartment
    ready = parcel_transition(
        parcel_id=parcel.pk,
        to_status=ParcelStatus.READY,
        actor=actor,
        reason=reason,
        changes=changes,
        data={"compartment": door},
    )
    parcel_notify_task.delay_on_commit(ready.pk, NotificationKind.READY, code)
    return ready, code


def _other_unlock_open(*, compartment_id: int, command_id: str) -> bool:
    return (
        CabinetCommand.objects.filter(
            compartment_id=compartment_id,
            action=CommandAction.UNLOCK,
            status__in=(*COMMAND_OPEN_STATUSES, CommandStatus.RECEIVED),
        )
        .exclude(pk=command_id)
        .exists()
    )


def deposit_unlock_finished(
    *, parcel: Parcel, command: CabinetCommand, compartment: Compartment
) -> Opening | None:
    """An unlock of a reserved compartment finished without opening it (compartment and parcel
    locked by the caller). Expired or rejected: the reservation is given back (the courier
    scans again). Failed (the door stuck): another compartment is opened instead, once."""
    if _other_unlock_open(compartment_id=compartment.pk, command_id=str(command.pk)):
        return None  # a re-scan opened it again: that unlock decides
    _release_reservation(parcel=parcel)
    if command.status != CommandStatus.FAILED:
        logger.info("parcel %s: unlock %s, reservation released", parcel.pk, command.status)
        return None
    reason = "dropoff" if parcel.direction == ParcelDirection.DROPOFF else "deposit"
    try:
        with transaction.atomic():
            return _reserve_and_open(
                parcel=parcel,
                min_size=parcel.size,
                actor=Actor.system("deposit retry"),
                reason=reason,
                avoid={compartment.pk},
            )
    except Conflict:
        logger.warning("parcel %s: door did not open and no other compartment is free", parcel.pk)
        return None


def deposit_late_open(*, command: CabinetCommand, compartment: Compartment) -> Parcel | None:
    """An unlock for a deposit reported success after the server had expired it and released
    the reservation: the door is open with the parcel's courier in front of it. If the parcel
    is still waiting for a compartment and this one is still free, it is reserved again, so
    the close stores the parcel (compartment locked by the caller, which holds no parcel)."""
    tracking = (command.payload or {}).get("parcel")
    if not tracking or not compartment.in_service:
        return None
    candidates = list(
        Parcel.objects.filter(
            cabinet_id=command.cabinet_id,
            tracking_number=tracking,
            status=ParcelStatus.ANNOUNCED,
            compartment__isnull=True,
        ).values_list("pk", flat=True)[:2]
    )
    if len(candidates) != 1:
        return None
    parcel = parcel_lock(parcel_id=candidates[0])
    if parcel.compartment_id is not None or parcel.status != ParcelStatus.ANNOUNCED:
        return None
    parcel.compartment = compartment
    parcel.reserved_at = timezone.now()
    parcel.save(update_fields=["compartment", "reserved_at", "updated_at"])
    logger.warning(
        "parcel %s: late unlock result, compartment %s reserved again", parcel.pk, compartment.pk
    )
    return parcel
