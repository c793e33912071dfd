from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from cabinet_agent import protocol
from cabinets.keys import signing_key_for
from cabinets.models import (
    COMMAND_OPEN_STATUSES,
    CabinetCommand,
    CabinetCredential,
    CabinetState,
    CommandAction,
    Compartment,
    DoorState,
    ServiceState,
)
from cabinets.reports import report_handler


class Occupancy:
    """How a compartment is used, derived: its service state and whether a parcel holds it."""

    FREE = "free"
    IN_USE = "in_use"
    OUT_OF_SERVICE = "out_of_service"
    LABELS = {FREE: "Free", IN_USE: "In use", OUT_OF_SERVICE: "Out of service"}


def compartments_in_use() -> QuerySet[Compartment]:
    return Compartment.objects.filter(pk__in=report_handler().occupied_compartment_ids())


def compartments_free() -> QuerySet[Compartment]:
    """In service and nothing in it (nor reserved for a deposit)."""
    return Compartment.objects.filter(service_state=ServiceState.IN_SERVICE).exclude(
        pk__in=report_handler().occupied_compartment_ids()
    )


@dataclass(frozen=True)
class CabinetSession:
    cabinet_id: int
    serial: str
    key_id: str
    # The telemetry last stored, so that a reconnect does not rewrite what is already known.
    telemetry: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class AuthResult:
    session: CabinetSession | None
    reason: str  # "ok", "missing", "malformed", "unknown", "revoked", "retired"


def cabinet_authenticate(authorization: str | None) -> AuthResult:
    if not authorization:
        return AuthResult(None, "missing")
    parsed = protocol.parse_credential(authorization)
    if parsed is None:
        return AuthResult(None, "malformed")
    key_id, secret = parsed
    credential = CabinetCredential.objects.select_related("cabinet").filter(key_id=key_id).first()
    if credential is None or not protocol.secret_matches(secret, credential.secret_hash):
        return AuthResult(None, "unknown")
    if credential.revoked_at is not None:
        return AuthResult(None, "revoked")
    if credential.cabinet.state == CabinetState.RETIRED:
        return AuthResult(None, "retired")
    return AuthResult(
        CabinetSession(
            cabinet_id=credential.cabinet_id,
            serial=credential.cabinet.serial,
            key_id=key_id,
            telemetry=credential.cabinet.telemetry,
        ),
        "ok",
    )


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000)


def command_frame(command: CabinetCommand, *, serial: str, key_id: str) -> dict[str, Any]:
    """The signed frame for a command, as the cabinet will verify it."""
    body = {
        "id": str(command.id),
        "action": command.action,
        "cabinet": serial,
        "compartment": command.compartment.label if command.compartment else None,
        "payload": command.payload,
        "issued_at": _ms(command.issued_at),
        "expires_at": _ms(command.expires_at),
    }
    return protocol.make_command_frame(signing_key_for(key_id), body)


def active_key_id(cabinet_id: int) -> str | None:
    return (
        CabinetCredential.objects.filter(cabinet_id=cabinet_id, revoked_at__isnull=True)
        .values_list("key_id", flat=True)
        .first()
    )


def commands_to_deliver(session: CabinetSession) -> list[dict[str, Any]]:
    """Signed frames of every unacknowledged command that has not expired, oldest first."""
    commands = (
        CabinetCommand.objects.filter(
            cabinet_id=session.cabinet_id,
            status__in=COMMAND_OPEN_STATUSES,
            expires_at__gt=timezone.now(),
        )
        .select_related("compartment")
        .order_by("issued_at")
    )
    return [command_frame(c, serial=session.serial, key_id=session.key_id) for c in commands]


@dataclass(frozen=True)
class LinkOpening:
    auth: AuthResult
    pending: list[dict[str, Any]]


def link_open(authorization: str | None) -> LinkOpening:
    """Everything a connecting cabinet needs from the database, in one thread hop and two
    indexed reads and no write: in a reconnect storm of 10,000 cabinets every handshake
    queues behind the others on the consumer's database thread."""
    auth = cabinet_authenticate(authorization)
    pending = commands_to_deliver(auth.session) if auth.session is not None else []
    return LinkOpening(auth=auth, pending=pending)


@dataclass(frozen=True)
class DoorRow:
    """One door of the admin's door grid, as the JSON endpoint sends it."""

    id: int
    label: str
    size: str
    service_state: str
    service_label: str
    door_state: str
    door_label: str
    tracking_number: str | None
    last_event_at: str | None
    # An unlock sent and not finished yet: the grid says "opening".
    opening: bool


def cabinet_doors(*, cabinet_id: int) -> list[DoorRow]:
    """Every compartment of a cabinet with its live state: three queries whatever its size.
    The last event is the later of the last door change and the last service change."""
    compartments = list(
        Compartment.objects.filter(cabinet_id=cabinet_id)
        .order_by("label")
        .values(
            "id",
            "label",
            "size",
            "service_state",
            "door_state",
            "door_changed_at",
            "service_changed_at",
        )
    )
    held = report_handler().tracking_numbers_in([c["id"] for c in compartments])
    opening = set(
        CabinetCommand.objects.filter(
            cabinet_id=cabinet_id,
            action=CommandAction.UNLOCK,
            status__in=COMMAND_OPEN_STATUSES,
            expires_at__gt=timezone.now(),
        ).values_list("compartment_id", flat=True)
    )
    return [
        DoorRow(
            id=c["id"],
            label=c["label"],
            size=c["size"],
            service_state=c["service_state"],
            service_label=ServiceState(c["service_state"]).label,
            door_state=c["door_state"],
            door_label=DoorState(c["door_state"]).label,
            tracking_number=held.get(c["id"]),
            last_event_at=_latest_iso(c["door_changed_at"], c["service_changed_at"]),
            opening=c["id"] in opening,
        )
        for c in compartments
    ]


def _latest_iso(*moments: datetime | None) -> str | None:
    known = [m for m in moments if m is not None]
    return max(known).isoformat() if known else None
