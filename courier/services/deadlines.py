"""Pickup deadlines passing: a parcel nobody collected in time waits for its courier."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from core.actors import Actor
from core.errors import ApplicationError
from courier.models import NotificationKind, Parcel, ParcelStatus
from courier.services.parcels import parcel_transition
from courier.tasks import parcel_notify_task


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
        parcel_notify_task.delay_on_commit(parcel_id, NotificationKind.EXPIRED)
    return expired
