from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy

from cabinets.models import CompartmentSize
from core.actors import ActorFields, event_row_str


class Carrier(models.Model):
    """A logistics company sharing the fleet."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=120)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = gettext_lazy("carrier")
        verbose_name_plural = gettext_lazy("carriers")
        ordering = ["name"]
        # Admin actions beyond add/change/delete/view (docs/security-admin.md).
        permissions = [("issue_api_key", "Can issue carrier API keys")]

    def __str__(self) -> str:
        return self.name


class Courier(models.Model):
    carrier = models.ForeignKey(Carrier, on_delete=models.PROTECT, related_name="couriers")
    name = models.CharField(max_length=120)
    phone = models.CharField(max_length=16)
    badge_number = models.CharField(max_length=32, help_text="Shown at the cabinet to log in.")
    # The PIN typed at the cabinet with the badge number; a Django password hash.
    pin_hash = models.CharField(max_length=128, blank=True)
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
        verbose_name = gettext_lazy("courier")
        verbose_name_plural = gettext_lazy("couriers")
        ordering = ["carrier_id", "name"]
        permissions = [("reset_courier_pin", "Can set a courier's cabinet PIN")]
        constraints = [
            models.UniqueConstraint(
                fields=["carrier", "badge_number"], name="courier_badge_unique_per_carrier"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.carrier.code})"


class ParcelDirection(models.TextChoices):
    DELIVERY = "delivery", "Delivery to a recipient"
    DROPOFF = "dropoff", "Drop-off by a sender"


class ParcelStatus(models.TextChoices):
    ANNOUNCED = "announced", "Announced"
    READY = "ready", "Deposited, ready for pickup"
    PICKED_UP = "picked_up", "Picked up"
    EXPIRED = "expired", "Expired, awaiting return"
    RETURNED = "returned", "Returned to carrier"
    CANCELLED = "cancelled", "Cancelled"
    DROPPED_OFF = "dropped_off", "Dropped off, awaiting courier"
    COLLECTED = "collected", "Collected by courier"


# Deliveries: announced -> ready -> picked_up | expired -> returned.
# Drop-offs: announced -> dropped_off -> collected.
PARCEL_TRANSITIONS: dict[str, frozenset[str]] = {
    ParcelStatus.ANNOUNCED: frozenset(
        {ParcelStatus.READY, ParcelStatus.DROPPED_OFF, ParcelStatus.CANCELLED}
    ),
    ParcelStatus.READY: frozenset({ParcelStatus.PICKED_UP, ParcelStatus.EXPIRED}),
    ParcelStatus.EXPIRED: frozenset({ParcelStatus.RETURNED}),
    ParcelStatus.DROPPED_OFF: frozenset({ParcelStatus.COLLECTED}),
    ParcelStatus.PICKED_UP: frozenset(),
    ParcelStatus.RETURNED: frozenset(),
    ParcelStatus.CANCELLED: frozenset(),
    ParcelStatus.COLLECTED: frozenset(),
}

# A parcel in one of these statuses physically occupies its compartment.
PARCEL_IN_COMPARTMENT = (ParcelStatus.READY, ParcelStatus.EXPIRED, ParcelStatus.DROPPED_OFF)
# The parcel that occupies its compartment or has it reserved (its door open for a deposit or
# a drop-off): at most one per compartment, and the only source of a compartment's occupancy.
PARCEL_HOLDS_COMPARTMENT = Q(status__in=PARCEL_IN_COMPARTMENT) | Q(
    status=ParcelStatus.ANNOUNCED, compartment__isnull=False
)
DELIVERY_ONLY_STATUSES = (
    ParcelStatus.READY,
    ParcelStatus.PICKED_UP,
    ParcelStatus.EXPIRED,
    ParcelStatus.RETURNED,
)
DROPOFF_ONLY_STATUSES = (ParcelStatus.DROPPED_OFF, ParcelStatus.COLLECTED)


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
    # The contact data this parcel's carrier gave: it belongs to the shipment, and is what
    # its notifications use. `recipient` is the person keyed by `recipient_phone`.
    recipient_name = models.CharField(max_length=120, blank=True)
    recipient_phone = models.CharField(max_length=16, blank=True)
    recipient_email = models.EmailField(blank=True)
    sender_name = models.CharField(max_length=120, blank=True)
    sender_phone = models.CharField(max_length=16, blank=True)
    direction = models.CharField(
        max_length=16, choices=ParcelDirection.choices, default=ParcelDirection.DELIVERY
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
    # Set while a compartment is reserved for this parcel and its door is open for the
    # courier (delivery) or the sender (drop-off); cleared when the door closes.
    reserved_at = models.DateTimeField(null=True, blank=True)
    # Set when a face or code authorised opening the door for pickup or collection; the
    # door's "closed" event then completes it.
    release_authorized_at = models.DateTimeField(null=True, blank=True)
    extension_count = models.PositiveSmallIntegerField(default=0)
    deposited_at = models.DateTimeField(null=True, blank=True)
    picked_up_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = gettext_lazy("parcel")
        verbose_name_plural = gettext_lazy("parcels")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["carrier", "tracking_number"], name="parcel_tracking_unique_per_carrier"
            ),
            models.UniqueConstraint(
                fields=["compartment"],
                condition=PARCEL_HOLDS_COMPARTMENT,
                name="one_active_parcel_per_compartment",
            ),
            models.CheckConstraint(
                condition=Q(direction__in=ParcelDirection.values), name="parcel_direction_valid"
            ),
            models.CheckConstraint(
                condition=~Q(direction=ParcelDirection.DELIVERY, status__in=DROPOFF_ONLY_STATUSES)
                & ~Q(direction=ParcelDirection.DROPOFF, status__in=DELIVERY_ONLY_STATUSES),
                name="parcel_status_matches_direction",
            ),
            models.CheckConstraint(
                condition=~Q(direction=ParcelDirection.DROPOFF) | Q(sender__isnull=False),
                name="parcel_dropoff_has_sender",
            ),
            models.CheckConstraint(
                condition=Q(extension_count__lte=1), name="parcel_extended_at_most_once"
            ),
            models.CheckConstraint(
                condition=Q(status__in=ParcelStatus.values), name="parcel_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(size__in=CompartmentSize.values), name="parcel_size_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status__in=PARCEL_IN_COMPARTMENT)
                | (Q(compartment__isnull=False) & Q(deposited_at__isnull=False)),
                name="parcel_in_compartment_has_deposit",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=(ParcelStatus.READY, ParcelStatus.EXPIRED))
                | Q(pickup_deadline__isnull=False),
                name="parcel_awaiting_pickup_has_deadline",
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
            # The fleet dashboard counts parcels announced and picked up per day.
            models.Index(fields=["created_at"]),
            models.Index(fields=["picked_up_at"]),
            # The admin lists parcels newest first (-id) filtered by status: without it, the
            # ready parcels among a million are found by walking the primary key.
            models.Index(fields=["status", "id"], name="parcel_status_id_idx"),
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
        verbose_name = gettext_lazy("parcel event")
        verbose_name_plural = gettext_lazy("parcel events")
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return event_row_str(
            f"parcel {self.parcel_id}",
            from_label=self.get_from_status_display() if self.from_status else "",
            to_label=self.get_to_status_display(),
            at=self.at,
            by=self.actor_label,
        )


class CarrierStaff(models.Model):
    """A staff user of one carrier: in the admin they see only their carrier's parcels."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="carrier_staff"
    )
    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="staff")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = gettext_lazy("carrier staff")
        verbose_name_plural = gettext_lazy("carrier staff")

    def __str__(self) -> str:
        return f"{self.user} @ {self.carrier.code}"


class CarrierApiKey(models.Model):
    """A carrier's key for the REST API: `<prefix>.<secret>`; only a hash is stored."""

    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=80, default="default")
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("revoke_api_key", "Can revoke carrier API keys")]
        verbose_name = gettext_lazy("carrier api key")
        verbose_name_plural = gettext_lazy("carrier api keys")

    def __str__(self) -> str:
        return f"{self.carrier.code}:{self.prefix}"


class NotificationKind(models.TextChoices):
    READY = "ready", "Ready for pickup"
    REMINDER = "reminder", "Pickup reminder"
    EXPIRED = "expired", "Expired"


class Notification(models.Model):
    """One message to a recipient about a parcel. Unique per kind: tasks that run twice
    never send twice."""

    parcel = models.ForeignKey(Parcel, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=16, choices=NotificationKind.choices)
    channel = models.CharField(max_length=16)
    to = models.CharField(max_length=254)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=255, blank=True)

    class Meta:
        verbose_name = gettext_lazy("notification")
        verbose_name_plural = gettext_lazy("notifications")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["parcel", "kind", "channel"], name="one_notification_per_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} for {self.parcel_id} via {self.channel}"


class AttemptMethod(models.TextChoices):
    FACE = "face", "Face scan"
    CODE = "code", "Pickup code"
    COURIER = "courier", "Courier login"


class AccessAttempt(models.Model):
    """Every attempt at a cabinet to open a door: decision and figures, never the image or
    the code. Also the basis of lockouts."""

    cabinet = models.ForeignKey("cabinets.Cabinet", on_delete=models.CASCADE, related_name="+")
    method = models.CharField(max_length=8, choices=AttemptMethod.choices)
    purpose = models.CharField(max_length=16, blank=True)
    event_id = models.UUIDField(null=True, blank=True, unique=True)
    success = models.BooleanField()
    outcome = models.CharField(max_length=32)
    identity = models.ForeignKey(
        "identity.Identity", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    courier = models.ForeignKey(
        Courier, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    distance = models.FloatField(null=True, blank=True)
    second_distance = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    margin = models.FloatField(null=True, blank=True)
    detail = models.CharField(max_length=255, blank=True)
    # Whose failures these are, for lockouts: "" for codes and faces (counted per cabinet),
    # "courier:<id>" or "badge:<carrier>:<badge>" for a badge (courier/access/attempts.py).
    lockout_subject = models.CharField(max_length=80, blank=True)
    parcels = models.ManyToManyField(Parcel, blank=True, related_name="access_attempts")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = gettext_lazy("access attempt")
        verbose_name_plural = gettext_lazy("access attempts")
        ordering = ["-at"]
        indexes = [
            models.Index(fields=["cabinet", "method", "success", "at"]),
            models.Index(
                fields=["cabinet", "method", "lockout_subject", "at"], name="attempt_lockout_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} at {self.cabinet_id}: {self.outcome}"


class FaceChallenge(models.Model):
    """A liveness challenge issued to a cabinet (protocol 1.2): answered once, by one burst,
    before it expires. Only the nonce's hash is kept."""

    id = models.UUIDField(primary_key=True)
    cabinet = models.ForeignKey("cabinets.Cabinet", on_delete=models.CASCADE, related_name="+")
    start_id = models.UUIDField(unique=True)
    purpose = models.CharField(max_length=16)
    nonce_hash = models.CharField(max_length=64)
    actions = models.JSONField(default=list)
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    # Set once, by the burst that answered it (compare-and-set): a nonce is single use.
    burst_id = models.UUIDField(null=True, blank=True, unique=True)

    def __str__(self) -> str:
        return f"challenge {self.id} ({', '.join(self.actions)})"


class FaceFrameSeen(models.Model):
    """The hash of every frame a burst carried: a frame is never accepted twice. The
    picture itself is not kept."""

    digest = models.CharField(max_length=64, unique=True)
    burst_id = models.UUIDField()
    cabinet = models.ForeignKey("cabinets.Cabinet", on_delete=models.CASCADE, related_name="+")
    seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["seen_at"])]

    def __str__(self) -> str:
        return f"frame {self.digest[:12]}"


class FaceConfirmation(models.Model):
    """A face matched and the door policy asked for the last four digits of the matched
    person's phone: one try. A wrong answer locks face pickup for these parcels (derived from
    this row; the pickup code still works)."""

    id = models.UUIDField(primary_key=True)
    cabinet = models.ForeignKey("cabinets.Cabinet", on_delete=models.CASCADE, related_name="+")
    burst_id = models.UUIDField(unique=True)
    identity = models.ForeignKey("identity.Identity", on_delete=models.CASCADE, related_name="+")
    parcels = models.ManyToManyField(Parcel, related_name="face_confirmations")
    expires_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    answer_event_id = models.UUIDField(null=True, blank=True, unique=True)
    success = models.BooleanField(null=True)

    def __str__(self) -> str:
        return f"confirmation {self.id}"
