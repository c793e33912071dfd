from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Exists, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from cabinet_agent import protocol
from cabinets.keys import secret_unseal, signing_key_for
from cabinets.models import (
    COMMAND_OPEN_STATUSES,
    Cabinet,
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
    LABELS = {FREE: _("Free"), IN_USE: _("In use"), OUT_OF_SERVICE: _("Out of service")}


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
    # Set when this credential replaces one that is still valid (rotation with overlap): the
    # connection proves the cabinet has the new one, so the old one is revoked.
    retiring_key_id: str | None = None
    # The telemetry last stored, so that a reconnect does not rewrite what is already known.
    telemetry: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class AuthResult:
    session: CabinetSession | None
    reason: str  # "ok", "missing", "malformed", "unknown", "revoked", "expired", "retired"


def cabinet_authenticate(authorization: str | None) -> AuthResult:
    if not authorization:
        return AuthResult(None, "missing")
    parsed = protocol.parse_credential(authorization)
    if parsed is None:
        return AuthResult(None, "malformed")
    key_id, secret = parsed
    # key_id is unique: no ORDER BY (what .first() adds costs a fifth of this read's time in
    # Django's compiler, on every handshake of a reconnect storm).
    credential = next(
        iter(
            CabinetCredential.objects.select_related("cabinet", "supersedes").filter(key_id=key_id)[
                :1
            ]
        ),
        None,
    )
    if credential is None or not protocol.secret_matches(secret, credential.secret_hash):
        return AuthResult(None, "unknown")
    if credential.revoked_at is not None:
        return AuthResult(None, "revoked")
    if credential.expires_at is not None and credential.expires_at <= timezone.now():
        return AuthResult(None, "expired")
    if credential.cabinet.state == CabinetState.RETIRED:
        return AuthResult(None, "retired")
    return AuthResult(
        CabinetSession(
            cabinet_id=credential.cabinet_id,
            serial=credential.cabinet.serial,
            key_id=key_id,
            retiring_key_id=_retiring_key_id(credential),
            telemetry=credential.cabinet.telemetry,
        ),
        "ok",
    )


def _retiring_key_id(credential: CabinetCredential) -> str | None:
    old = credential.supersedes
    if old is None or old.revoked_at is not None:
        return None
    return old.key_id


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000)


def command_frame(command: CabinetCommand, *, serial: str, key_id: str) -> dict[str, Any]:
    """The signed frame for a command, as the cabinet will verify it."""
    body = {
        "id": str(command.id),
        "action": command.action,
        "cabinet": serial,
        "compartment": command.compartment.label if command.compartment else None,
        "payload": _payload_for_cabinet(command),
        "issued_at": _ms(command.issued_at),
        "expires_at": _ms(command.expires_at),
    }
    return protocol.make_command_frame(signing_key_for(key_id), body)


def _payload_for_cabinet(command: CabinetCommand) -> dict[str, Any]:
    if command.action != CommandAction.CREDENTIAL_ROTATE:
        return command.payload
    # Stored sealed (cabinets.keys.secret_seal); opened only into the signed frame.
    key_id = command.payload["key_id"]
    return {
        "key_id": key_id,
        "credential": secret_unseal(command.payload["sealed_credential"]),
        "signing_key": signing_key_for(key_id).hex(),
    }


def active_key_id(cabinet_id: int) -> str | None:
    """The current credential's key (during a rotation's overlap, the new one)."""
    return (
        CabinetCredential.objects.filter(
            cabinet_id=cabinet_id, revoked_at__isnull=True, expires_at__isnull=True
        )
        .values_list("key_id", flat=True)
        .first()
    )


def valid_key_ids(cabinet_id: int) -> list[str]:
    """Every key a connection of this cabinet may be using, the current one first: two
    during a rotation's overlap."""
    rows = (
        CabinetCredential.objects.filter(cabinet_id=cabinet_id, revoked_at__isnull=True)
        .exclude(expires_at__lte=timezone.now())
        .values_list("key_id", "expires_at")
    )
    return [key_id for key_id, expires_at in sorted(rows, key=lambda row: row[1] is not None)]


def _already_held(command: CabinetCommand, key_id: str) -> bool:
    # The cabinet connected with the credential this command delivers: it has it already.
    return (
        command.action == CommandAction.CREDENTIAL_ROTATE
        and command.payload.get("key_id") == key_id
    )


def _commands_open(cabinet_id: int) -> QuerySet[CabinetCommand]:
    """A cabinet's commands that are unacknowledged and unexpired."""
    return CabinetCommand.objects.filter(
        cabinet_id=cabinet_id, status__in=COMMAND_OPEN_STATUSES, expires_at__gt=timezone.now()
    )


def commands_to_deliver(session: CabinetSession) -> list[dict[str, Any]]:
    """Signed frames of every unacknowledged command that has not expired, oldest first."""
    commands = (
        _commands_open(session.cabinet_id).select_related("compartment").order_by("issued_at")
    )
    return [
        command_frame(c, serial=session.serial, key_id=session.key_id)
        for c in commands
        if not _already_held(c, session.key_id)
    ]


@dataclass(frozen=True)
class LinkBacklog:
    state: str
    pending: list[dict[str, Any]]


def link_backlog(session: CabinetSession) -> LinkBacklog:
    """What a connecting link reads once it has joined its cabinet's group: the lifecycle
    state and every unacknowledged command. Read after joining, so that a command or state
    change committed meanwhile is read here or pushed to the link (in a reconnect storm,
    read before joining, a command committed in between reached neither). One indexed read
    (state, and whether any command waits) and no write, in one thread hop after the
    authentication's; the commands themselves only when some wait, which a reconnect storm's
    cabinets mostly have not."""
    row = next(
        iter(
            Cabinet.objects.filter(pk=session.cabinet_id)
            .annotate(waiting=Exists(_commands_open(session.cabinet_id)))
            .values_list("state", "waiting")[:1]
        ),
        None,
    )
    if row is None:
        return LinkBacklog(state="", pending=[])
    state, waiting = row
    return LinkBacklog(state=state, pending=commands_to_deliver(session) if waiting else [])


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
    last_event_at: datetime | None
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
            service_label=str(ServiceState(c["service_state"]).label),
            door_state=c["door_state"],
            door_label=str(DoorState(c["door_state"]).label),
            tracking_number=held.get(c["id"]),
            last_event_at=_latest(c["door_changed_at"], c["service_changed_at"]),
            opening=c["id"] in opening,
        )
        for c in compartments
    ]


def _latest(*moments: datetime | None) -> datetime | None:
    known = [m for m in moments if m is not None]
    return max(known) if known else None
