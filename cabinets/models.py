from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy

from core.actors import ActorFields, event_row_str


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known IANA time zone.")


class CabinetState(models.TextChoices):
    PROVISIONING = "provisioning", gettext_lazy("Provisioning")
    ACTIVE = "active", gettext_lazy("Active")
    MAINTENANCE = "maintenance", gettext_lazy("Maintenance")
    RETIRED = "retired", gettext_lazy("Retired")


CABINET_TRANSITIONS: dict[str, frozenset[str]] = {
    CabinetState.PROVISIONING: frozenset({CabinetState.ACTIVE, CabinetState.RETIRED}),
    CabinetState.ACTIVE: frozenset({CabinetState.MAINTENANCE, CabinetState.RETIRED}),
    CabinetState.MAINTENANCE: frozenset({CabinetState.ACTIVE, CabinetState.RETIRED}),
    CabinetState.RETIRED: frozenset(),
}


# What a serial is, wherever one comes in (the admin, a provisioning CSV, the carrier API).
SERIAL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"
serial_validator = RegexValidator(
    SERIAL_PATTERN, gettext_lazy("letters, digits, '.', '_' or '-', at most 32")
)


class ConnectionState(models.TextChoices):
    NEVER = "never", gettext_lazy("Never connected")
    ONLINE = "online", gettext_lazy("Online")
    OFFLINE = "offline", gettext_lazy("Offline")


class Cabinet(models.Model):
    serial = models.CharField(
        max_length=32,
        unique=True,
        validators=[serial_validator],
        help_text=gettext_lazy("Printed on the cabinet."),
        verbose_name=gettext_lazy("serial"),
    )
    name = models.CharField(max_length=120, verbose_name=gettext_lazy("name"))
    address = models.CharField(max_length=255, verbose_name=gettext_lazy("address"))
    city = models.CharField(max_length=80, db_index=True, verbose_name=gettext_lazy("city"))
    region = models.CharField(max_length=80, db_index=True, verbose_name=gettext_lazy("region"))
    latitude = models.DecimalField(
        max_digits=9,
        decimal_places=6,
        validators=[MinValueValidator(Decimal(-90)), MaxValueValidator(Decimal(90))],
        verbose_name=gettext_lazy("latitude"),
    )
    longitude = models.DecimalField(
        max_digits=9,
        decimal_places=6,
        validators=[MinValueValidator(Decimal(-180)), MaxValueValidator(Decimal(180))],
        verbose_name=gettext_lazy("longitude"),
    )
    time_zone = models.CharField(
        max_length=64,
        default="Asia/Shanghai",
        validators=[validate_time_zone],
        verbose_name=gettext_lazy("time zone"),
    )
    hardware_model = models.CharField(max_length=64, verbose_name=gettext_lazy("hardware model"))
    firmware_version = models.CharField(
        max_length=32, blank=True, verbose_name=gettext_lazy("firmware version")
    )
    config_version = models.CharField(
        max_length=32, blank=True, verbose_name=gettext_lazy("config version")
    )
    state = models.CharField(
        max_length=16,
        choices=CabinetState.choices,
        default=CabinetState.PROVISIONING,
        verbose_name=gettext_lazy("state"),
    )
    connection_state = models.CharField(
        max_length=16,
        choices=ConnectionState.choices,
        default=ConnectionState.NEVER,
        verbose_name=gettext_lazy("connection state"),
    )
    last_seen_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("last seen at")
    )
    # The latest heartbeat's telemetry (temperature, power, battery, doors, versions).
    telemetry = models.JSONField(default=dict, blank=True, verbose_name=gettext_lazy("telemetry"))
    telemetry_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("telemetry at")
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=gettext_lazy("updated at"))

    class Meta:
        verbose_name = gettext_lazy("cabinet")
        verbose_name_plural = gettext_lazy("cabinets")
        ordering = ["serial"]
        # Rotating, revoking and importing (which issues) cabinet credentials.
        permissions = [("manage_credentials", "Can issue, rotate and revoke cabinet credentials")]
        indexes = [models.Index(fields=["state", "connection_state"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=CabinetState.values), name="cabinet_state_valid"
            ),
            models.CheckConstraint(
                condition=Q(connection_state__in=ConnectionState.values),
                name="cabinet_connection_state_valid",
            ),
            models.CheckConstraint(
                condition=Q(latitude__gte=-90, latitude__lte=90)
                & Q(longitude__gte=-180, longitude__lte=180),
                name="cabinet_coordinates_valid",
            ),
            models.CheckConstraint(condition=~Q(serial=""), name="cabinet_serial_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.serial} {self.name}"


class CabinetEvent(ActorFields):
    """Append-only: one row per lifecycle transition of a cabinet."""

    cabinet = models.ForeignKey(
        Cabinet,
        on_delete=models.CASCADE,
        related_name="events",
        verbose_name=gettext_lazy("cabinet"),
    )
    from_state = models.CharField(
        max_length=16, choices=CabinetState.choices, verbose_name=gettext_lazy("from state")
    )
    to_state = models.CharField(
        max_length=16, choices=CabinetState.choices, verbose_name=gettext_lazy("to state")
    )
    reason = models.CharField(max_length=255, blank=True, verbose_name=gettext_lazy("reason"))
    at = models.DateTimeField(auto_now_add=True, db_index=True, verbose_name=gettext_lazy("at"))

    class Meta:
        verbose_name = gettext_lazy("cabinet event")
        verbose_name_plural = gettext_lazy("cabinet events")
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return event_row_str(
            f"cabinet {self.cabinet_id}",
            from_label=self.get_from_state_display(),
            to_label=self.get_to_state_display(),
            at=self.at,
            by=self.actor_label,
        )


class CompartmentSize(models.TextChoices):
    S = "S", gettext_lazy("Small")
    M = "M", gettext_lazy("Medium")
    L = "L", gettext_lazy("Large")


@dataclass(frozen=True)
class SizeSpec:
    width_mm: int
    height_mm: int
    depth_mm: int
    max_weight_g: int


# Nominal inner dimensions; a hardware model may differ, so each compartment stores its own.
SIZE_SPECS: dict[str, SizeSpec] = {
    CompartmentSize.S: SizeSpec(width_mm=420, height_mm=90, depth_mm=560, max_weight_g=5_000),
    CompartmentSize.M: SizeSpec(width_mm=420, height_mm=190, depth_mm=560, max_weight_g=15_000),
    CompartmentSize.L: SizeSpec(width_mm=420, height_mm=390, depth_mm=560, max_weight_g=30_000),
}
SIZE_ORDER: dict[str, int] = {CompartmentSize.S: 0, CompartmentSize.M: 1, CompartmentSize.L: 2}


class ServiceState(models.TextChoices):
    """Whether a compartment may take new parcels: its own fact, apart from occupancy (which
    follows from the parcel inside, see cabinets.reports)."""

    IN_SERVICE = "in_service", gettext_lazy("In service")
    OUT_OF_SERVICE = "out_of_service", gettext_lazy("Out of service")


SERVICE_TRANSITIONS: dict[str, frozenset[str]] = {
    ServiceState.IN_SERVICE: frozenset({ServiceState.OUT_OF_SERVICE}),
    ServiceState.OUT_OF_SERVICE: frozenset({ServiceState.IN_SERVICE}),
}


class DoorState(models.TextChoices):
    UNKNOWN = "unknown", gettext_lazy("Unknown")
    CLOSED = "closed", gettext_lazy("Closed")
    OPEN = "open", gettext_lazy("Open")
    FAULT = "fault", gettext_lazy("Fault")


class Compartment(models.Model):
    cabinet = models.ForeignKey(
        Cabinet,
        on_delete=models.CASCADE,
        related_name="compartments",
        verbose_name=gettext_lazy("cabinet"),
    )
    label = models.CharField(
        max_length=8,
        help_text=gettext_lazy("As printed on the door, e.g. A01."),
        verbose_name=gettext_lazy("label"),
    )
    size = models.CharField(
        max_length=1, choices=CompartmentSize.choices, verbose_name=gettext_lazy("size")
    )
    width_mm = models.PositiveIntegerField(verbose_name=gettext_lazy("width mm"))
    height_mm = models.PositiveIntegerField(verbose_name=gettext_lazy("height mm"))
    depth_mm = models.PositiveIntegerField(verbose_name=gettext_lazy("depth mm"))
    max_weight_g = models.PositiveIntegerField(verbose_name=gettext_lazy("max weight g"))
    # Out of service: no new parcel goes in; a parcel already inside can still be released.
    service_state = models.CharField(
        max_length=16,
        choices=ServiceState.choices,
        default=ServiceState.IN_SERVICE,
        verbose_name=gettext_lazy("service state"),
    )
    service_reason = models.CharField(
        max_length=255, blank=True, verbose_name=gettext_lazy("service reason")
    )
    service_changed_at = models.DateTimeField(
        auto_now_add=True, verbose_name=gettext_lazy("service changed at")
    )
    door_state = models.CharField(
        max_length=8,
        choices=DoorState.choices,
        default=DoorState.UNKNOWN,
        verbose_name=gettext_lazy("door state"),
    )
    # When the door last changed state (door event, unlock result or telemetry), for the grid.
    door_changed_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("door changed at")
    )
    # Consecutive unlocks that did not open the door; reset by a successful open.
    failed_open_count = models.PositiveSmallIntegerField(
        default=0, verbose_name=gettext_lazy("failed open count")
    )

    class Meta:
        verbose_name = gettext_lazy("compartment")
        verbose_name_plural = gettext_lazy("compartments")
        ordering = ["cabinet_id", "label"]
        constraints = [
            models.UniqueConstraint(fields=["cabinet", "label"], name="compartment_label_unique"),
            models.CheckConstraint(
                condition=Q(service_state__in=ServiceState.values),
                name="compartment_service_state_valid",
            ),
            models.CheckConstraint(
                condition=Q(size__in=CompartmentSize.values), name="compartment_size_valid"
            ),
            models.CheckConstraint(
                condition=Q(door_state__in=DoorState.values), name="compartment_door_state_valid"
            ),
            models.CheckConstraint(
                condition=Q(width_mm__gt=0, height_mm__gt=0, depth_mm__gt=0, max_weight_g__gt=0),
                name="compartment_dimensions_positive",
            ),
        ]
        indexes = [models.Index(fields=["cabinet", "service_state", "size"])]

    def __str__(self) -> str:
        return f"{self.cabinet.serial}/{self.label}"

    @property
    def in_service(self) -> bool:
        return self.service_state == ServiceState.IN_SERVICE

    def apply_size_spec(self) -> None:
        spec = SIZE_SPECS[self.size]
        self.width_mm, self.height_mm = spec.width_mm, spec.height_mm
        self.depth_mm, self.max_weight_g = spec.depth_mm, spec.max_weight_g


class CompartmentEvent(ActorFields):
    """Append-only: one row per change of a compartment's service state."""

    compartment = models.ForeignKey(
        Compartment,
        on_delete=models.CASCADE,
        related_name="events",
        verbose_name=gettext_lazy("compartment"),
    )
    from_state = models.CharField(
        max_length=16, choices=ServiceState.choices, verbose_name=gettext_lazy("from state")
    )
    to_state = models.CharField(
        max_length=16, choices=ServiceState.choices, verbose_name=gettext_lazy("to state")
    )
    reason = models.CharField(max_length=255, blank=True, verbose_name=gettext_lazy("reason"))
    at = models.DateTimeField(auto_now_add=True, db_index=True, verbose_name=gettext_lazy("at"))

    class Meta:
        verbose_name = gettext_lazy("compartment event")
        verbose_name_plural = gettext_lazy("compartment events")
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return event_row_str(
            f"compartment {self.compartment_id}",
            from_label=self.get_from_state_display(),
            to_label=self.get_to_state_display(),
            at=self.at,
            by=self.actor_label,
        )


class CabinetCredential(ActorFields):
    """A cabinet's login for the websocket link. Only a hash of the secret is stored.

    The credential reads `<key_id>.<secret>`; `key_id` is public and finds the row. The
    command-signing key is derived from the platform's master key and `key_id`, so rotating
    the credential rotates the signing key too and no signing key is stored anywhere."""

    cabinet = models.ForeignKey(
        Cabinet,
        on_delete=models.CASCADE,
        related_name="credentials",
        verbose_name=gettext_lazy("cabinet"),
    )
    key_id = models.CharField(max_length=24, unique=True, verbose_name=gettext_lazy("key id"))
    secret_hash = models.CharField(max_length=64, verbose_name=gettext_lazy("secret hash"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))
    revoked_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("revoked at")
    )
    revoked_reason = models.CharField(
        max_length=255, blank=True, verbose_name=gettext_lazy("revoked reason")
    )
    # Rotation with overlap (docs/cabinet-protocol.md §17): the credential being replaced
    # stays valid until the cabinet connects with its successor, or until `expires_at`.
    expires_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("expires at")
    )
    # A ForeignKey, not one-to-one: a second rotation during the overlap replaces the same one.
    supersedes = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="successors",
        verbose_name=gettext_lazy("supersedes"),
    )

    class Meta:
        verbose_name = gettext_lazy("cabinet credential")
        verbose_name_plural = gettext_lazy("cabinet credentials")
        ordering = ["-created_at"]
        constraints = [
            # One current credential; at most one more, retiring, has `expires_at` set.
            models.UniqueConstraint(
                fields=["cabinet"],
                condition=Q(revoked_at__isnull=True, expires_at__isnull=True),
                name="one_active_credential_per_cabinet",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key_id} ({'revoked' if self.revoked_at else 'active'})"


class CommandAction(models.TextChoices):
    UNLOCK = "unlock", gettext_lazy("Unlock a compartment")
    SET_CONFIG = "set_config", gettext_lazy("Set configuration version")
    SET_FIRMWARE = "set_firmware", gettext_lazy("Set firmware version")
    CREDENTIAL_ROTATE = "credential_rotate", gettext_lazy("Deliver a new link credential")


class CommandStatus(models.TextChoices):
    PENDING = "pending", gettext_lazy("Pending")
    SENT = "sent", gettext_lazy("Sent")
    RECEIVED = "received", gettext_lazy("Received by the cabinet")
    SUCCEEDED = "succeeded", gettext_lazy("Succeeded")
    FAILED = "failed", gettext_lazy("Failed")
    REJECTED = "rejected", gettext_lazy("Rejected by the cabinet")
    EXPIRED = "expired", gettext_lazy("Expired")


COMMAND_OPEN_STATUSES = (CommandStatus.PENDING, CommandStatus.SENT)
COMMAND_TRANSITIONS: dict[str, frozenset[str]] = {
    CommandStatus.PENDING: frozenset(
        {
            CommandStatus.SENT,
            CommandStatus.RECEIVED,
            CommandStatus.SUCCEEDED,
            CommandStatus.FAILED,
            CommandStatus.REJECTED,
            CommandStatus.EXPIRED,
        }
    ),
    # A receipt can overtake the "sent" bookkeeping, and a result can come without a receipt
    # (the receipt frame was lost with the connection).
    CommandStatus.SENT: frozenset(
        {
            CommandStatus.RECEIVED,
            CommandStatus.SUCCEEDED,
            CommandStatus.FAILED,
            CommandStatus.REJECTED,
            CommandStatus.EXPIRED,
        }
    ),
    CommandStatus.RECEIVED: frozenset(
        {CommandStatus.SUCCEEDED, CommandStatus.FAILED, CommandStatus.EXPIRED}
    ),
    CommandStatus.SUCCEEDED: frozenset(),
    CommandStatus.FAILED: frozenset(),
    CommandStatus.REJECTED: frozenset(),
    # The cabinet may run a command until expires_at plus the allowed clock skew, and its
    # result can arrive later still (a lost connection): what it reports is the truth.
    CommandStatus.EXPIRED: frozenset({CommandStatus.SUCCEEDED, CommandStatus.FAILED}),
}


class CabinetCommand(ActorFields):
    """A command for one cabinet: stored before it is pushed, signed when pushed, acknowledged
    by the cabinet. Every state change keeps its timestamp on the row."""

    id = models.UUIDField(primary_key=True, verbose_name=gettext_lazy("id"))
    cabinet = models.ForeignKey(
        Cabinet,
        on_delete=models.CASCADE,
        related_name="commands",
        verbose_name=gettext_lazy("cabinet"),
    )
    compartment = models.ForeignKey(
        Compartment,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="commands",
        verbose_name=gettext_lazy("compartment"),
    )
    action = models.CharField(
        max_length=24, choices=CommandAction.choices, verbose_name=gettext_lazy("action")
    )
    payload = models.JSONField(default=dict, blank=True, verbose_name=gettext_lazy("payload"))
    reason = models.CharField(max_length=255, blank=True, verbose_name=gettext_lazy("reason"))
    status = models.CharField(
        max_length=16,
        choices=CommandStatus.choices,
        default=CommandStatus.PENDING,
        verbose_name=gettext_lazy("status"),
    )
    issued_at = models.DateTimeField(verbose_name=gettext_lazy("issued at"))
    expires_at = models.DateTimeField(verbose_name=gettext_lazy("expires at"))
    sent_at = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("sent at"))
    send_count = models.PositiveSmallIntegerField(
        default=0, verbose_name=gettext_lazy("send count")
    )
    received_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("received at")
    )
    completed_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("completed at")
    )
    result = models.JSONField(default=dict, blank=True, verbose_name=gettext_lazy("result"))

    class Meta:
        verbose_name = gettext_lazy("cabinet command")
        verbose_name_plural = gettext_lazy("cabinet commands")
        ordering = ["-issued_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=CommandStatus.values), name="command_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(action__in=CommandAction.values), name="command_action_valid"
            ),
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("issued_at")),
                name="command_expires_after_issue",
            ),
            models.CheckConstraint(
                condition=~Q(action=CommandAction.UNLOCK) | Q(compartment__isnull=False),
                name="command_unlock_has_compartment",
            ),
        ]
        indexes = [models.Index(fields=["cabinet", "status", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.action} {self.cabinet_id}/{self.compartment_id or '-'} ({self.status})"


class CabinetMessage(models.Model):
    """Every event a cabinet sent (door events, command results, face scans, code entries),
    kept once: the cabinet's own event id is the key, so a replay from its offline queue is
    recognised and acknowledged without being applied twice. Never holds images."""

    id = models.UUIDField(primary_key=True, verbose_name=gettext_lazy("id"))
    cabinet = models.ForeignKey(
        Cabinet,
        on_delete=models.CASCADE,
        related_name="messages",
        verbose_name=gettext_lazy("cabinet"),
    )
    type = models.CharField(max_length=24, verbose_name=gettext_lazy("type"))
    payload = models.JSONField(default=dict, blank=True, verbose_name=gettext_lazy("payload"))
    sent_at = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("sent at"))
    received_at = models.DateTimeField(
        auto_now_add=True, db_index=True, verbose_name=gettext_lazy("received at")
    )
    # A domain refusal of the event (e.g. a result for a command the server does not know):
    # recorded here and acknowledged, so the cabinet never replays it.
    refusal = models.CharField(max_length=64, blank=True, verbose_name=gettext_lazy("refusal"))
    refusal_detail = models.CharField(
        max_length=255, blank=True, verbose_name=gettext_lazy("refusal detail")
    )

    class Meta:
        verbose_name = gettext_lazy("cabinet message")
        verbose_name_plural = gettext_lazy("cabinet messages")
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["cabinet", "type", "received_at"])]

    def __str__(self) -> str:
        return f"{self.type} from {self.cabinet_id}"


# --- Fleet administration: tags, provisioning imports, staged rollouts ----------------------


class CabinetTag(models.Model):
    """A free label ("pilot", "mall", "cold-chain") to target cabinets in a rollout."""

    name = models.SlugField(max_length=40, unique=True, verbose_name=gettext_lazy("name"))
    cabinets = models.ManyToManyField(
        Cabinet, related_name="tags", blank=True, verbose_name=gettext_lazy("cabinets")
    )

    class Meta:
        verbose_name = gettext_lazy("cabinet tag")
        verbose_name_plural = gettext_lazy("cabinet tags")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CabinetImport(ActorFields):
    """Append-only: one row per CSV import of cabinets (who, when, what it changed)."""

    filename = models.CharField(max_length=255, blank=True, verbose_name=gettext_lazy("filename"))
    rows = models.PositiveIntegerField(default=0, verbose_name=gettext_lazy("rows"))
    created = models.PositiveIntegerField(default=0, verbose_name=gettext_lazy("created"))
    updated = models.PositiveIntegerField(default=0, verbose_name=gettext_lazy("updated"))
    unchanged = models.PositiveIntegerField(default=0, verbose_name=gettext_lazy("unchanged"))
    errors = models.PositiveIntegerField(default=0, verbose_name=gettext_lazy("errors"))
    at = models.DateTimeField(auto_now_add=True, db_index=True, verbose_name=gettext_lazy("at"))

    class Meta:
        verbose_name = gettext_lazy("cabinet import")
        verbose_name_plural = gettext_lazy("cabinet imports")
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"import {self.filename or '-'} ({self.at:%Y-%m-%d %H:%M})"


class RolloutKind(models.TextChoices):
    CONFIG = "config", gettext_lazy("Configuration")
    FIRMWARE = "firmware", gettext_lazy("Firmware")


ROLLOUT_KIND_ACTION: dict[str, str] = {
    RolloutKind.CONFIG: CommandAction.SET_CONFIG,
    RolloutKind.FIRMWARE: CommandAction.SET_FIRMWARE,
}
# The cabinet field that tells whether a cabinet already runs a rollout's version.
ROLLOUT_KIND_VERSION_FIELD: dict[str, str] = {
    RolloutKind.CONFIG: "config_version",
    RolloutKind.FIRMWARE: "firmware_version",
}


class RolloutState(models.TextChoices):
    DRAFT = "draft", gettext_lazy("Draft")
    RUNNING = "running", gettext_lazy("Running")
    PAUSED = "paused", gettext_lazy("Paused")
    COMPLETED = "completed", gettext_lazy("Completed")
    ABORTED = "aborted", gettext_lazy("Aborted")


ROLLOUT_TRANSITIONS: dict[str, frozenset[str]] = {
    RolloutState.DRAFT: frozenset({RolloutState.RUNNING, RolloutState.ABORTED}),
    RolloutState.RUNNING: frozenset(
        {RolloutState.PAUSED, RolloutState.COMPLETED, RolloutState.ABORTED}
    ),
    RolloutState.PAUSED: frozenset({RolloutState.RUNNING, RolloutState.ABORTED}),
    # "Retry failed" reopens a completed rollout.
    RolloutState.COMPLETED: frozenset({RolloutState.RUNNING}),
    RolloutState.ABORTED: frozenset(),
}


class Rollout(ActorFields):
    """A config or firmware version delivered to a filtered set of cabinets, wave by wave.

    Driven by Celery (cabinets/rollouts/driver.py); the admin only changes its state."""

    name = models.CharField(max_length=120, verbose_name=gettext_lazy("name"))
    kind = models.CharField(
        max_length=16, choices=RolloutKind.choices, verbose_name=gettext_lazy("kind")
    )
    version = models.CharField(max_length=32, verbose_name=gettext_lazy("version"))
    # Extra payload keys sent with the version (firmware url and sha256, config settings).
    payload = models.JSONField(default=dict, blank=True, verbose_name=gettext_lazy("payload"))
    # Target filter; an empty value matches every cabinet.
    target_region = models.CharField(
        max_length=80, blank=True, verbose_name=gettext_lazy("target region")
    )
    target_tag = models.ForeignKey(
        CabinetTag,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=gettext_lazy("target tag"),
    )
    target_hardware_model = models.CharField(
        max_length=64, blank=True, verbose_name=gettext_lazy("target hardware model")
    )
    # Cumulative wave sizes: "5" is five cabinets, "10%" is a tenth of the targets.
    wave_plan = models.JSONField(default=list, verbose_name=gettext_lazy("wave plan"))
    success_threshold_pct = models.PositiveSmallIntegerField(
        default=95,
        validators=[MaxValueValidator(100)],
        verbose_name=gettext_lazy("success threshold pct"),
    )
    error_threshold_pct = models.PositiveSmallIntegerField(
        default=20,
        validators=[MaxValueValidator(100)],
        verbose_name=gettext_lazy("error threshold pct"),
    )
    min_sample = models.PositiveIntegerField(default=5, verbose_name=gettext_lazy("min sample"))
    command_ttl_s = models.PositiveIntegerField(
        default=3600, verbose_name=gettext_lazy("command ttl s")
    )
    state = models.CharField(
        max_length=16,
        choices=RolloutState.choices,
        default=RolloutState.DRAFT,
        verbose_name=gettext_lazy("state"),
    )
    state_reason = models.CharField(
        max_length=255, blank=True, verbose_name=gettext_lazy("state reason")
    )
    planned_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("planned at")
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))
    started_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("started at")
    )
    finished_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("finished at")
    )

    class Meta:
        verbose_name = gettext_lazy("rollout")
        verbose_name_plural = gettext_lazy("rollouts")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=RolloutState.values), name="rollout_state_valid"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=RolloutKind.values), name="rollout_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(success_threshold_pct__lte=100, error_threshold_pct__lte=100),
                name="rollout_thresholds_are_percentages",
            ),
            models.CheckConstraint(condition=~Q(version=""), name="rollout_version_not_empty"),
            models.CheckConstraint(
                condition=Q(command_ttl_s__gt=0, command_ttl_s__lte=86_400),
                name="rollout_command_ttl_in_protocol_range",
            ),
        ]
        indexes = [models.Index(fields=["state"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()} {self.version})"


class RolloutWaveState(models.TextChoices):
    PENDING = "pending", gettext_lazy("Pending")
    RUNNING = "running", gettext_lazy("Running")
    PASSED = "passed", gettext_lazy("Passed")
    STOPPED = "stopped", gettext_lazy("Stopped")


class RolloutWave(models.Model):
    rollout = models.ForeignKey(
        Rollout,
        on_delete=models.CASCADE,
        related_name="waves",
        verbose_name=gettext_lazy("rollout"),
    )
    number = models.PositiveSmallIntegerField(verbose_name=gettext_lazy("number"))
    spec = models.CharField(
        max_length=16,
        help_text=gettext_lazy('As planned: "5" or "10%".'),
        verbose_name=gettext_lazy("spec"),
    )
    size = models.PositiveIntegerField(default=0, verbose_name=gettext_lazy("size"))
    state = models.CharField(
        max_length=16,
        choices=RolloutWaveState.choices,
        default=RolloutWaveState.PENDING,
        verbose_name=gettext_lazy("state"),
    )
    started_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("started at")
    )
    finished_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("finished at")
    )

    class Meta:
        verbose_name = gettext_lazy("rollout wave")
        verbose_name_plural = gettext_lazy("rollout waves")
        ordering = ["rollout_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["rollout", "number"], name="rollout_wave_unique"),
            models.CheckConstraint(
                condition=Q(state__in=RolloutWaveState.values), name="rollout_wave_state_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rollout.name} wave {self.number} ({self.spec})"


class RolloutTargetState(models.TextChoices):
    SCHEDULED = "scheduled", gettext_lazy("Scheduled")
    SENT = "sent", gettext_lazy("Sent")
    RECEIVED = "received", gettext_lazy("Received")
    SUCCEEDED = "succeeded", gettext_lazy("Succeeded")
    FAILED = "failed", gettext_lazy("Failed")
    TIMED_OUT = "timed_out", gettext_lazy("Timed out")
    SKIPPED = "skipped", gettext_lazy("Skipped (already at version)")
    CANCELLED = "cancelled", gettext_lazy("Cancelled")


ROLLOUT_TARGET_TRANSITIONS: dict[str, frozenset[str]] = {
    RolloutTargetState.SCHEDULED: frozenset(
        {RolloutTargetState.SENT, RolloutTargetState.SKIPPED, RolloutTargetState.CANCELLED}
    ),
    RolloutTargetState.SENT: frozenset(
        {
            RolloutTargetState.RECEIVED,
            RolloutTargetState.SUCCEEDED,
            RolloutTargetState.FAILED,
            RolloutTargetState.TIMED_OUT,
            RolloutTargetState.CANCELLED,
        }
    ),
    RolloutTargetState.RECEIVED: frozenset(
        {RolloutTargetState.SUCCEEDED, RolloutTargetState.FAILED, RolloutTargetState.TIMED_OUT}
    ),
    # "Retry failed" schedules them again.
    RolloutTargetState.FAILED: frozenset({RolloutTargetState.SCHEDULED}),
    RolloutTargetState.TIMED_OUT: frozenset({RolloutTargetState.SCHEDULED}),
    RolloutTargetState.SUCCEEDED: frozenset(),
    RolloutTargetState.SKIPPED: frozenset(),
    RolloutTargetState.CANCELLED: frozenset(),
}
# A delivered target's state follows from its command's status: folded into the target on the
# driver's tick (cabinets.rollouts.results), derived for the admin's live progress (selectors).
COMMAND_TO_TARGET: dict[str, str] = {
    CommandStatus.RECEIVED: RolloutTargetState.RECEIVED,
    CommandStatus.SUCCEEDED: RolloutTargetState.SUCCEEDED,
    CommandStatus.FAILED: RolloutTargetState.FAILED,
    CommandStatus.REJECTED: RolloutTargetState.FAILED,
    CommandStatus.EXPIRED: RolloutTargetState.TIMED_OUT,
}
ROLLOUT_TARGET_OPEN = (
    RolloutTargetState.SCHEDULED,
    RolloutTargetState.SENT,
    RolloutTargetState.RECEIVED,
)


class RolloutTarget(models.Model):
    """One cabinet of a rollout and where its delivery stands."""

    rollout = models.ForeignKey(
        Rollout,
        on_delete=models.CASCADE,
        related_name="targets",
        verbose_name=gettext_lazy("rollout"),
    )
    wave = models.ForeignKey(
        RolloutWave,
        on_delete=models.CASCADE,
        related_name="targets",
        verbose_name=gettext_lazy("wave"),
    )
    cabinet = models.ForeignKey(
        Cabinet,
        on_delete=models.CASCADE,
        related_name="rollout_targets",
        verbose_name=gettext_lazy("cabinet"),
    )
    state = models.CharField(
        max_length=16,
        choices=RolloutTargetState.choices,
        default=RolloutTargetState.SCHEDULED,
        verbose_name=gettext_lazy("state"),
    )
    command = models.OneToOneField(
        CabinetCommand,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="rollout_target",
        verbose_name=gettext_lazy("command"),
    )
    attempts = models.PositiveSmallIntegerField(default=0, verbose_name=gettext_lazy("attempts"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=gettext_lazy("updated at"))

    class Meta:
        verbose_name = gettext_lazy("rollout target")
        verbose_name_plural = gettext_lazy("rollout targets")
        ordering = ["wave_id", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rollout", "cabinet"], name="rollout_target_one_per_cabinet"
            ),
            models.CheckConstraint(
                condition=Q(state__in=RolloutTargetState.values),
                name="rollout_target_state_valid",
            ),
            models.CheckConstraint(
                condition=~Q(state__in=[RolloutTargetState.SENT, RolloutTargetState.RECEIVED])
                | Q(command__isnull=False),
                name="rollout_target_in_flight_has_command",
            ),
        ]
        indexes = [
            models.Index(fields=["rollout", "state"]),
            models.Index(fields=["wave", "state"]),
        ]

    def __str__(self) -> str:
        return f"{self.cabinet_id} in rollout {self.rollout_id} ({self.state})"


class RolloutEvent(ActorFields):
    """Append-only audit: every operator action and every automatic decision on a rollout."""

    rollout = models.ForeignKey(
        Rollout,
        on_delete=models.CASCADE,
        related_name="events",
        verbose_name=gettext_lazy("rollout"),
    )
    action = models.CharField(max_length=32, verbose_name=gettext_lazy("action"))
    from_state = models.CharField(
        max_length=16, blank=True, verbose_name=gettext_lazy("from state")
    )
    to_state = models.CharField(max_length=16, blank=True, verbose_name=gettext_lazy("to state"))
    wave_number = models.PositiveSmallIntegerField(
        null=True, blank=True, verbose_name=gettext_lazy("wave number")
    )
    detail = models.CharField(max_length=255, blank=True, verbose_name=gettext_lazy("detail"))
    data = models.JSONField(default=dict, blank=True, verbose_name=gettext_lazy("data"))
    at = models.DateTimeField(auto_now_add=True, db_index=True, verbose_name=gettext_lazy("at"))

    class Meta:
        verbose_name = gettext_lazy("rollout event")
        verbose_name_plural = gettext_lazy("rollout events")
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} on rollout {self.rollout_id}"
