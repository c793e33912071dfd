from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy

from cabinets.models import CompartmentSize
from core.actors import ActorFields, event_row_str


class Carrier(models.Model):
    """A logistics company sharing the fleet."""

    code = models.SlugField(max_length=32, unique=True, verbose_name=gettext_lazy("code"))
    name = models.CharField(max_length=120, verbose_name=gettext_lazy("name"))
    is_active = models.BooleanField(default=True, verbose_name=gettext_lazy("is active"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))

    class Meta:
        verbose_name = gettext_lazy("carrier")
        verbose_name_plural = gettext_lazy("carriers")
        ordering = ["name"]
        # Admin actions beyond add/change/delete/view (docs/security-admin.md).
        permissions = [("issue_api_key", "Can issue carrier API keys")]

    def __str__(self) -> str:
        return self.name


class Courier(models.Model):
    carrier = models.ForeignKey(
        Carrier,
        on_delete=models.PROTECT,
        related_name="couriers",
        verbose_name=gettext_lazy("carrier"),
    )
    name = models.CharField(max_length=120, verbose_name=gettext_lazy("name"))
    phone = models.CharField(max_length=16, verbose_name=gettext_lazy("phone"))
    badge_number = models.CharField(
        max_length=32,
        help_text=gettext_lazy("Shown at the cabinet to log in."),
        verbose_name=gettext_lazy("badge number"),
    )
    # The PIN typed at the cabinet with the badge number; a Django password hash.
    pin_hash = models.CharField(max_length=128, blank=True, verbose_name=gettext_lazy("pin hash"))
    is_active = models.BooleanField(default=True, verbose_name=gettext_lazy("is active"))
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="courier",
        verbose_name=gettext_lazy("user"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))

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
    DELIVERY = "delivery", gettext_lazy("Delivery to a recipient")
    DROPOFF = "dropoff", gettext_lazy("Drop-off by a sender")


class ParcelStatus(models.TextChoices):
    ANNOUNCED = "announced", gettext_lazy("Announced")
    READY = "ready", gettext_lazy("Deposited, ready for pickup")
    PICKED_UP = "picked_up", gettext_lazy("Picked up")
    EXPIRED = "expired", gettext_lazy("Expired, awaiting return")
    RETURNED = "returned", gettext_lazy("Returned to carrier")
    CANCELLED = "cancelled", gettext_lazy("Cancelled")
    DROPPED_OFF = "dropped_off", gettext_lazy("Dropped off, awaiting courier")
    COLLECTED = "collected", gettext_lazy("Collected by courier")


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

# Where a pickup deadline may be pushed back (once, parcel_extend): not a move of the map,
# the parcel stays as it is.
PARCEL_EXTENDABLE = frozenset({ParcelStatus.READY})

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
    carrier = models.ForeignKey(
        Carrier,
        on_delete=models.PROTECT,
        related_name="parcels",
        verbose_name=gettext_lazy("carrier"),
    )
    tracking_number = models.CharField(max_length=40, verbose_name=gettext_lazy("tracking number"))
    recipient = models.ForeignKey(
        "identity.Identity",
        on_delete=models.PROTECT,
        related_name="parcels_received",
        verbose_name=gettext_lazy("recipient"),
    )
    sender = models.ForeignKey(
        "identity.Identity",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="parcels_sent",
        verbose_name=gettext_lazy("sender"),
    )
    # The contact data this parcel's carrier gave: it belongs to the shipment, and is what
    # its notifications use. `recipient` is the person keyed by `recipient_phone`.
    recipient_name = models.CharField(
        max_length=120, blank=True, verbose_name=gettext_lazy("recipient name")
    )
    recipient_phone = models.CharField(
        max_length=16, blank=True, verbose_name=gettext_lazy("recipient phone")
    )
    recipient_email = models.EmailField(blank=True, verbose_name=gettext_lazy("recipient email"))
    sender_name = models.CharField(
        max_length=120, blank=True, verbose_name=gettext_lazy("sender name")
    )
    sender_phone = models.CharField(
        max_length=16, blank=True, verbose_name=gettext_lazy("sender phone")
    )
    direction = models.CharField(
        max_length=16,
        choices=ParcelDirection.choices,
        default=ParcelDirection.DELIVERY,
        verbose_name=gettext_lazy("direction"),
    )
    size = models.CharField(
        max_length=1, choices=CompartmentSize.choices, verbose_name=gettext_lazy("size")
    )
    cabinet = models.ForeignKey(
        "cabinets.Cabinet",
        on_delete=models.PROTECT,
        related_name="parcels",
        verbose_name=gettext_lazy("cabinet"),
    )
    compartment = models.ForeignKey(
        "cabinets.Compartment",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="parcels",
        verbose_name=gettext_lazy("compartment"),
    )
    status = models.CharField(
        max_length=16,
        choices=ParcelStatus.choices,
        default=ParcelStatus.ANNOUNCED,
        verbose_name=gettext_lazy("status"),
    )
    pickup_deadline = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("pickup deadline")
    )
    pickup_code_hash = models.CharField(
        max_length=128, blank=True, verbose_name=gettext_lazy("pickup code hash")
    )
    # Set while a compartment is reserved for this parcel and its door is open for the
    # courier (delivery) or the sender (drop-off); cleared when the door closes.
    reserved_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("reserved at")
    )
    # Set when a face or code authorised opening the door for pickup or collection; the
    # door's "closed" event then completes it.
    release_authorized_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("release authorized at")
    )
    extension_count = models.PositiveSmallIntegerField(
        default=0, verbose_name=gettext_lazy("extension count")
    )
    deposited_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("deposited at")
    )
    picked_up_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("picked up at")
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=gettext_lazy("updated at"))

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

    parcel = models.ForeignKey(
        Parcel, on_delete=models.CASCADE, related_name="events", verbose_name=gettext_lazy("parcel")
    )
    from_status = models.CharField(
        max_length=16,
        choices=ParcelStatus.choices,
        blank=True,
        verbose_name=gettext_lazy("from status"),
    )
    to_status = models.CharField(
        max_length=16, choices=ParcelStatus.choices, verbose_name=gettext_lazy("to status")
    )
    reason = models.CharField(max_length=255, blank=True, verbose_name=gettext_lazy("reason"))
    data = models.JSONField(default=dict, blank=True, verbose_name=gettext_lazy("data"))
    at = models.DateTimeField(auto_now_add=True, db_index=True, verbose_name=gettext_lazy("at"))

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
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="carrier_staff",
        verbose_name=gettext_lazy("user"),
    )
    carrier = models.ForeignKey(
        Carrier,
        on_delete=models.CASCADE,
        related_name="staff",
        verbose_name=gettext_lazy("carrier"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))

    class Meta:
        verbose_name = gettext_lazy("carrier staff")
        verbose_name_plural = gettext_lazy("carrier staff")

    def __str__(self) -> str:
        return f"{self.user} @ {self.carrier.code}"


class CarrierApiKey(models.Model):
    """A carrier's key for the REST API: `<prefix>.<secret>`; only a hash is stored."""

    carrier = models.ForeignKey(
        Carrier,
        on_delete=models.CASCADE,
        related_name="api_keys",
        verbose_name=gettext_lazy("carrier"),
    )
    name = models.CharField(max_length=80, default="default", verbose_name=gettext_lazy("name"))
    prefix = models.CharField(max_length=16, unique=True, verbose_name=gettext_lazy("prefix"))
    secret_hash = models.CharField(max_length=64, verbose_name=gettext_lazy("secret hash"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))
    revoked_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("revoked at")
    )

    class Meta:
        permissions = [("revoke_api_key", "Can revoke carrier API keys")]
        verbose_name = gettext_lazy("carrier api key")
        verbose_name_plural = gettext_lazy("carrier api keys")

    def __str__(self) -> str:
        return f"{self.carrier.code}:{self.prefix}"


class NotificationKind(models.TextChoices):
    READY = "ready", gettext_lazy("Ready for pickup")
    REMINDER = "reminder", gettext_lazy("Pickup reminder")
    EXPIRED = "expired", gettext_lazy("Expired")


class Notification(models.Model):
    """One message to a recipient about a parcel. Unique per kind: tasks that run twice
    never send twice."""

    parcel = models.ForeignKey(
        Parcel,
        on_delete=models.CASCADE,
        related_name="notifications",
        verbose_name=gettext_lazy("parcel"),
    )
    kind = models.CharField(
        max_length=16, choices=NotificationKind.choices, verbose_name=gettext_lazy("kind")
    )
    channel = models.CharField(max_length=16, verbose_name=gettext_lazy("channel"))
    to = models.CharField(max_length=254, verbose_name=gettext_lazy("to"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))
    sent_at = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("sent at"))
    error = models.CharField(max_length=255, blank=True, verbose_name=gettext_lazy("error"))

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
    FACE = "face", gettext_lazy("Face scan")
    CODE = "code", gettext_lazy("Pickup code")
    COURIER = "courier", gettext_lazy("Courier login")


class AccessAttempt(models.Model):
    """Every attempt at a cabinet to open a door: decision and figures, never the image or
    the code. Also the basis of lockouts."""

    cabinet = models.ForeignKey(
        "cabinets.Cabinet",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=gettext_lazy("cabinet"),
    )
    method = models.CharField(
        max_length=8, choices=AttemptMethod.choices, verbose_name=gettext_lazy("method")
    )
    purpose = models.CharField(max_length=16, blank=True, verbose_name=gettext_lazy("purpose"))
    event_id = models.UUIDField(
        null=True, blank=True, unique=True, verbose_name=gettext_lazy("event id")
    )
    success = models.BooleanField(verbose_name=gettext_lazy("success"))
    outcome = models.CharField(max_length=32, verbose_name=gettext_lazy("outcome"))
    identity = models.ForeignKey(
        "identity.Identity",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=gettext_lazy("identity"),
    )
    courier = models.ForeignKey(
        Courier,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=gettext_lazy("courier"),
    )
    distance = models.FloatField(null=True, blank=True, verbose_name=gettext_lazy("distance"))
    second_distance = models.FloatField(
        null=True, blank=True, verbose_name=gettext_lazy("second distance")
    )
    threshold = models.FloatField(null=True, blank=True, verbose_name=gettext_lazy("threshold"))
    margin = models.FloatField(null=True, blank=True, verbose_name=gettext_lazy("margin"))
    detail = models.CharField(max_length=255, blank=True, verbose_name=gettext_lazy("detail"))
    # Whose failures these are, for lockouts: "" for codes and faces (counted per cabinet),
    # "courier:<id>" or "badge:<carrier>:<badge>" for a badge (courier/access/attempts.py).
    lockout_subject = models.CharField(
        max_length=80, blank=True, verbose_name=gettext_lazy("lockout subject")
    )
    parcels = models.ManyToManyField(
        Parcel, blank=True, related_name="access_attempts", verbose_name=gettext_lazy("parcels")
    )
    at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("at"))

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

    id = models.UUIDField(primary_key=True, verbose_name=gettext_lazy("id"))
    cabinet = models.ForeignKey(
        "cabinets.Cabinet",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=gettext_lazy("cabinet"),
    )
    start_id = models.UUIDField(unique=True, verbose_name=gettext_lazy("start id"))
    purpose = models.CharField(max_length=16, verbose_name=gettext_lazy("purpose"))
    nonce_hash = models.CharField(max_length=64, verbose_name=gettext_lazy("nonce hash"))
    actions = models.JSONField(default=list, verbose_name=gettext_lazy("actions"))
    issued_at = models.DateTimeField(verbose_name=gettext_lazy("issued at"))
    expires_at = models.DateTimeField(verbose_name=gettext_lazy("expires at"))
    # Set once, by the burst that answered it (compare-and-set): a nonce is single use.
    burst_id = models.UUIDField(
        null=True, blank=True, unique=True, verbose_name=gettext_lazy("burst id")
    )

    def __str__(self) -> str:
        return f"challenge {self.id} ({', '.join(self.actions)})"


class FaceFrameSeen(models.Model):
    """The hash of every frame a burst carried: a frame is never accepted twice. The
    picture itself is not kept."""

    digest = models.CharField(max_length=64, unique=True, verbose_name=gettext_lazy("digest"))
    burst_id = models.UUIDField(verbose_name=gettext_lazy("burst id"))
    cabinet = models.ForeignKey(
        "cabinets.Cabinet",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=gettext_lazy("cabinet"),
    )
    seen_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("seen at"))

    class Meta:
        indexes = [models.Index(fields=["seen_at"])]

    def __str__(self) -> str:
        return f"frame {self.digest[:12]}"


class FaceConfirmation(models.Model):
    """A face matched and the door policy asked for the last four digits of the matched
    person's phone: one try. A wrong answer locks face pickup for these parcels (derived from
    this row; the pickup code still works)."""

    id = models.UUIDField(primary_key=True, verbose_name=gettext_lazy("id"))
    cabinet = models.ForeignKey(
        "cabinets.Cabinet",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=gettext_lazy("cabinet"),
    )
    burst_id = models.UUIDField(unique=True, verbose_name=gettext_lazy("burst id"))
    identity = models.ForeignKey(
        "identity.Identity",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=gettext_lazy("identity"),
    )
    parcels = models.ManyToManyField(
        Parcel, related_name="face_confirmations", verbose_name=gettext_lazy("parcels")
    )
    expires_at = models.DateTimeField(verbose_name=gettext_lazy("expires at"))
    answered_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("answered at")
    )
    answer_event_id = models.UUIDField(
        null=True, blank=True, unique=True, verbose_name=gettext_lazy("answer event id")
    )
    success = models.BooleanField(null=True, verbose_name=gettext_lazy("success"))

    def __str__(self) -> str:
        return f"confirmation {self.id}"
