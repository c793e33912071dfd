from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from cabinets.models import CompartmentSize
from core.actors import ActorFields


class Carrier(models.Model):
    """A logistics company sharing the fleet."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=120)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Courier(models.Model):
    carrier = models.ForeignKey(Carrier, on_delete=models.PROTECT, related_name="couriers")
    name = models.CharField(max_length=120)
    phone = models.CharField(max_length=16)
    badge_number = models.CharField(max_length=32, help_text="Shown at the cabinet to log in.")
    is_active = models.BooleanField(default=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="courier",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["carrier_id", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["carrier", "badge_number"], name="courier_badge_unique_per_carrier"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.carrier.code})"


class ParcelStatus(models.TextChoices):
    ANNOUNCED = "announced", "Announced"
    READY = "ready", "Deposited, ready for pickup"
    PICKED_UP = "picked_up", "Picked up"
    EXPIRED = "expired", "Expired, awaiting return"
    RETURNED = "returned", "Returned to carrier"
    CANCELLED = "cancelled", "Cancelled"


PARCEL_TRANSITIONS: dict[str, frozenset[str]] = {
    ParcelStatus.ANNOUNCED: frozenset({ParcelStatus.READY, ParcelStatus.CANCELLED}),
    ParcelStatus.READY: frozenset({ParcelStatus.PICKED_UP, ParcelStatus.EXPIRED}),
    ParcelStatus.EXPIRED: frozenset({ParcelStatus.RETURNED}),
    ParcelStatus.PICKED_UP: frozenset(),
    ParcelStatus.RETURNED: frozenset(),
    ParcelStatus.CANCELLED: frozenset(),
}

# A parcel in one of these statuses physically occupies its compartment.
PARCEL_IN_COMPARTMENT = (ParcelStatus.READY, ParcelStatus.EXPIRED)


class Parcel(models.Model):
    carrier = models.ForeignKey(Carrier, on_delete=models.PROTECT, related_name="parcels")
    tracking_number = models.CharField(max_length=40)
    recipient = models.ForeignKey(
        "identity.Identity", on_delete=models.PROTECT, related_name="parcels_received"
    )
    sender = models.ForeignKey(
        "identity.Identity",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="parcels_sent",
    )
    size = models.CharField(max_length=1, choices=CompartmentSize.choices)
    cabinet = models.ForeignKey(
        "cabinets.Cabinet", on_delete=models.PROTECT, related_name="parcels"
    )
    compartment = models.ForeignKey(
        "cabinets.Compartment",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="parcels",
    )
    status = models.CharField(
        max_length=16, choices=ParcelStatus.choices, default=ParcelStatus.ANNOUNCED
    )
    pickup_deadline = models.DateTimeField(null=True, blank=True)
    pickup_code_hash = models.CharField(max_length=128, blank=True)
    deposited_at = models.DateTimeField(null=True, blank=True)
    picked_up_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["carrier", "tracking_number"], name="parcel_tracking_unique_per_carrier"
            ),
            models.UniqueConstraint(
                fields=["compartment"],
                condition=Q(status__in=PARCEL_IN_COMPARTMENT),
                name="one_active_parcel_per_compartment",
            ),
            models.CheckConstraint(
                condition=Q(status__in=ParcelStatus.values), name="parcel_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(size__in=CompartmentSize.values), name="parcel_size_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status__in=PARCEL_IN_COMPARTMENT)
                | (
                    Q(compartment__isnull=False)
                    & Q(deposited_at__isnull=False)
                    & Q(pickup_deadline__isnull=False)
                ),
                name="parcel_in_compartment_has_deposit",
            ),
            models.CheckConstraint(
                condition=~Q(status=ParcelStatus.PICKED_UP) | Q(picked_up_at__isnull=False),
                name="parcel_picked_up_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(tracking_number=""), name="parcel_tracking_not_empty"
            ),
        ]
        indexes = [
            models.Index(fields=["cabinet", "status"]),
            models.Index(fields=["recipient", "status"]),
            models.Index(fields=["status", "pickup_deadline"]),
        ]

    def __str__(self) -> str:
        return f"{self.carrier.code}:{self.tracking_number}"


class ParcelEvent(ActorFields):
    """Append-only audit row: one per status transition."""

    parcel = models.ForeignKey(Parcel, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=16, choices=ParcelStatus.choices, blank=True)
    to_status = models.CharField(max_length=16, choices=ParcelStatus.choices)
    reason = models.CharField(max_length=255, blank=True)
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["at", "id"]


class CarrierStaff(models.Model):
    """A staff user of one carrier: in the admin they see only their carrier's parcels."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="carrier_staff"
    )
    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="staff")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "carrier staff"

    def __str__(self) -> str:
        return f"{self.user} @ {self.carrier.code}"
