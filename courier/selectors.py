from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, F, Max, Q, QuerySet
from django.utils import timezone

from cabinets.models import Cabinet, CabinetCommand, CommandAction, CommandStatus
from courier.models import (
    PARCEL_HOLDS_COMPARTMENT,
    AccessAttempt,
    Carrier,
    Courier,
    Parcel,
    ParcelDirection,
    ParcelEvent,
    ParcelStatus,
)


def parcels_ready_at(*, cabinet_id: int) -> QuerySet[Parcel]:
    return Parcel.objects.filter(
        cabinet_id=cabinet_id, status=ParcelStatus.READY, compartment__isnull=False
    ).select_related("compartment", "recipient")


def recipients_waiting_at(*, cabinet_id: int) -> list[int]:
    """Identity ids of the people with a parcel ready in this cabinet: the only candidates a
    face scan there is compared with. Only people who proved the very phone number the
    parcel's carrier gave: a face enrolled by anyone else opens nothing here."""
    return sorted(
        set(
            parcels_ready_at(cabinet_id=cabinet_id)
            .filter(
                recipient__phone=F("recipient_phone"), recipient__phone_verified_at__isnull=False
            )
            .values_list("recipient_id", flat=True)
        )
    )


def parcels_face_open_at(*, cabinet_id: int) -> QuerySet[Parcel]:
    """Ready parcels a face may still open: not those whose face confirmation was answered
    wrong (one try; their pickup code still works)."""
    return parcels_ready_at(cabinet_id=cabinet_id).exclude(face_confirmations__success=False)


def recipients_face_open_at(*, cabinet_id: int) -> list[int]:
    return sorted(
        set(parcels_face_open_at(cabinet_id=cabinet_id).values_list("recipient_id", flat=True))
    )


def senders_expected_at(*, cabinet_id: int) -> list[int]:
    return sorted(
        set(
            Parcel.objects.filter(
                cabinet_id=cabinet_id,
                direction=ParcelDirection.DROPOFF,
                status=ParcelStatus.ANNOUNCED,
                compartment__isnull=True,
                sender__phone=F("sender_phone"),
                sender__phone_verified_at__isnull=False,
            ).values_list("sender_id", flat=True)
        )
    )


def failed_attempts(
    *,
    cabinet_id: int,
    method: str,
    subject: str | None,
    since: datetime,
    uncounted: Iterable[str],
) -> tuple[int, datetime | None]:
    """How many failed attempts of `subject` (None: anyone) since `since` (outcomes in
    `uncounted` left out), and when the last of them was."""
    attempts = AccessAttempt.objects.filter(
        cabinet_id=cabinet_id, method=method, success=False, at__gte=since
    )
    if subject is not None:
        attempts = attempts.filter(lockout_subject=subject)
    figures = attempts.exclude(outcome__in=list(uncounted)).aggregate(
        failures=Count("pk"), last=Max("at")
    )
    return figures["failures"], figures["last"]


def couriers_with_badge(*, badge: str, carrier_code: str = "") -> list[Courier]:
    """Active couriers holding `badge`, within the named carrier if one is given. Badge
    numbers are unique per carrier only: without a carrier, two holders are possible."""
    couriers = Courier.objects.select_related("carrier").filter(
        badge_number=badge, is_active=True, carrier__is_active=True
    )
    if carrier_code:
        couriers = couriers.filter(carrier__code=carrier_code)
    return list(couriers.order_by("pk")[:2])


def attempt_unlocks_never_sent(*, attempt: AccessAttempt) -> list[CabinetCommand]:
    """The unlocks stored for an attempt's parcels that no connection has sent yet: still
    pending and unexpired (a worker that died between its commit and its pushes leaves them
    so). Ready to push: cabinet and compartment loaded."""
    parcels = list(attempt.parcels.values_list("compartment_id", "tracking_number"))
    if not parcels:
        return []
    return list(
        CabinetCommand.objects.filter(
            cabinet_id=attempt.cabinet_id,
            action=CommandAction.UNLOCK,
            status=CommandStatus.PENDING,
            expires_at__gt=timezone.now(),
            compartment_id__in={compartment_id for compartment_id, _ in parcels},
            payload__parcel__in=[tracking_number for _, tracking_number in parcels],
        )
        .select_related("cabinet", "compartment")
        .order_by("issued_at")
    )


def parcel_for_carrier(*, carrier: Carrier, tracking_number: str) -> Parcel | None:
    return (
        Parcel.objects.filter(carrier=carrier, tracking_number=tracking_number)
        .select_related("cabinet", "compartment", "recipient", "sender")
        .first()
    )


def parcel_events(*, parcel: Parcel) -> QuerySet[ParcelEvent]:
    return parcel.events.order_by("at", "id")


def parcel_changes(*, carrier: Carrier, after: int, limit: int) -> list[ParcelEvent]:
    """The carrier's change feed: parcel events in id order after a cursor."""
    return list(
        ParcelEvent.objects.filter(parcel__carrier=carrier, pk__gt=after)
        .select_related("parcel")
        .order_by("pk")[:limit]
    )


def collection_list(*, carrier: Carrier) -> dict[Cabinet, list[Parcel]]:
    """What the carrier's couriers must collect, by cabinet: expired parcels to return and
    parcels dropped off by senders."""
    parcels = (
        Parcel.objects.filter(carrier=carrier)
        .filter(Q(status=ParcelStatus.EXPIRED) | Q(status=ParcelStatus.DROPPED_OFF))
        .select_related("cabinet", "compartment")
        .order_by("cabinet__serial", "compartment__label")
    )
    grouped: dict[Cabinet, list[Parcel]] = defaultdict(list)
    for parcel in parcels:
        grouped[parcel.cabinet].append(parcel)
    return dict(grouped)


def parcels_due_for_reminder(*, before: datetime) -> QuerySet[Parcel]:
    return Parcel.objects.filter(
        status=ParcelStatus.READY, pickup_deadline__lte=before, pickup_deadline__gt=timezone.now()
    ).exclude(notifications__kind="reminder")


def parcels_past_deadline(*, now: datetime) -> QuerySet[Parcel]:
    return Parcel.objects.filter(status=ParcelStatus.READY, pickup_deadline__lte=now)


def compartment_use(*, compartment_id: int) -> str:
    """What is in a compartment, derived from the parcel that holds it: "free", "reserved" (its
    door open for a deposit or a drop-off) or "occupied". Service state is separate."""
    status = (
        Parcel.objects.filter(PARCEL_HOLDS_COMPARTMENT, compartment_id=compartment_id)
        .values_list("status", flat=True)
        .first()
    )
    if status is None:
        return "free"
    return "reserved" if status == ParcelStatus.ANNOUNCED else "occupied"


# The statuses a parcel reaches when its door closed after an authorised opening.
RELEASED_STATUSES = (ParcelStatus.PICKED_UP, ParcelStatus.RETURNED, ParcelStatus.COLLECTED)


@dataclass(frozen=True)
class ParcelRelease:
    """How a parcel left its compartment, derived from what was recorded then (the release's
    event row and the access attempt that opened the door), never stored a second time."""

    status_label: str
    at: datetime | None
    compartment: str  # "SH-XH-0001/A03"
    opened_by: str  # the attempt's method ("Face scan", "Pickup code", "Courier login")
    attempt: AccessAttempt | None


def parcel_release(*, parcel: Parcel) -> ParcelRelease | None:
    if parcel.status not in RELEASED_STATUSES:
        return None
    event = parcel.events.filter(to_status=parcel.status).order_by("-at", "-id").first()
    label = str((event.data or {}).get("compartment", "")) if event else ""
    if not label and parcel.compartment is not None:
        label = parcel.compartment.label
    attempt = (
        parcel.access_attempts.filter(success=True)
        .select_related("cabinet")
        .order_by("-at", "-id")
        .first()
    )
    return ParcelRelease(
        status_label=parcel.get_status_display(),
        at=event.at if event else None,
        compartment=f"{parcel.cabinet.serial}/{label or '?'}",
        opened_by=attempt.get_method_display()
        if attempt
        else "no access attempt recorded (a remote open?)",
        attempt=attempt,
    )


def parcel_attempts(*, parcel: Parcel, limit: int = 20) -> list[AccessAttempt]:
    """The attempts at a cabinet that concerned this parcel, newest first."""
    return list(parcel.access_attempts.select_related("cabinet").order_by("-at", "-id")[:limit])
