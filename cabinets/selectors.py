from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
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
from core.loop_reads import LoopRead, on_pool_thread


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


def _credential_query(*, key_id: str) -> QuerySet[Any, Any]:
    # key_id is unique: no ORDER BY (what .first() adds costs a fifth of this read's time in
    # Django's compiler, on every handshake of a reconnect storm).
    return CabinetCredential.objects.filter(
        key_id=key_id
    ).values_list(  # type: ignore[return-value]
        "cabinet_id",
        "secret_hash",
        "revoked_at",
        "expires_at",
        "cabinet__serial",
        "cabinet__state",
        "cabinet__telemetry",
        "supersedes__key_id",
        "supersedes__revoked_at",
    )[:1]


# The handshake's reads, on the event loop where the database allows (core/loop_reads.py).
# The placeholders only have to be of the right type and appear nowhere else in the query.
_PLACEHOLDER_TIME = datetime(1901, 1, 1, tzinfo=UTC)
_credential_read = LoopRead(_credential_query, placeholders={"key_id": "~key~"})


def _credential_parts(authorization: str | None) -> tuple[str, str] | AuthResult:
    if not authorization:
        return AuthResult(None, "missing")
    parsed = protocol.parse_credential(authorization)
    if parsed is None:
        return AuthResult(None, "malformed")
    return parsed


def _authenticated(row: dict[str, Any] | None, *, key_id: str, secret: str) -> AuthResult:
    if row is None or not protocol.secret_matches(secret, row["secret_hash"]):
        return AuthResult(None, "unknown")
    if row["revoked_at"] is not None:
        return AuthResult(None, "revoked")
    if row["expires_at"] is not None and row["expires_at"] <= timezone.now():
        return AuthResult(None, "expired")
    if row["cabinet__state"] == CabinetState.RETIRED:
        return AuthResult(None, "retired")
    # A credential that replaces one still valid (rotation with overlap): the connection
    # proves the cabinet has the new one, so the old one is revoked.
    old_key_id = row["supersedes__key_id"]
    still_valid = old_key_id is not None and row["supersedes__revoked_at"] is None
    retiring = old_key_id if still_valid else None
    return AuthResult(
        CabinetSession(
            cabinet_id=row["cabinet_id"],
            serial=row["cabinet__serial"],
            key_id=key_id,
            retiring_key_id=retiring,
            telemetry=row["cabinet__telemetry"],
        ),
        "ok",
    )


def cabinet_authenticate(authorization: str | None) -> AuthResult:
    parts = _credential_parts(authorization)
    if isinstance(parts, AuthResult):
        return parts
    key_id, secret = parts
    rows = _credential_read.rows(key_id=key_id)
    return _authenticated(rows[0] if rows else None, key_id=key_id, secret=secret)


async def cabinet_authenticate_on_loop(authorization: str | None) -> AuthResult:
    """`cabinet_authenticate` for the link's handshake: the same read, on the event loop."""
    parts = _credential_parts(authorization)
    if isinstance(parts, AuthResult):
        return parts
    key_id, secret = parts
    rows = await _credential_read.arows(key_id=key_id)
    return _authenticated(rows[0] if rows else None, key_id=key_id, secret=secret)


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


def _commands_open(cabinet_id: int, *, now: datetime | None = None) -> QuerySet[CabinetCommand]:
    """A cabinet's commands that are unacknowledged and unexpired."""
    return CabinetCommand.objects.filter(
        cabinet_id=cabinet_id,
        status__in=COMMAND_OPEN_STATUSES,
        expires_at__gt=now if now is not None else timezone.now(),
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


def _backlog_query(*, cabinet_id: int, now: datetime) -> QuerySet[Any, Any]:
    return (
        Cabinet.objects.filter(pk=cabinet_id)
        .annotate(waiting=Exists(_commands_open(cabinet_id, now=now)))
        .values_list("state", "waiting")[:1]
    )


_backlog_read = LoopRead(_backlog_query, placeholders={"cabinet_id": -1, "now": _PLACEHOLDER_TIME})


def _backlog(rows: list[dict[str, Any]]) -> tuple[str, bool]:
    return (rows[0]["state"], rows[0]["waiting"]) if rows else ("", False)


def link_backlog(session: CabinetSession) -> LinkBacklog:
    """What a connecting link reads once it has joined its cabinet's group: the lifecycle
    state and every unacknowledged command. Read after joining, so that a command or state
    change committed meanwhile is read here or pushed to the link (in a reconnect storm,
    read before joining, a command committed in between reached neither). One indexed read
    (state, and whether any command waits) and no write; the commands themselves only when
    some wait, which a reconnect storm's cabinets mostly have not."""
    state, waiting = _backlog(_backlog_read.rows(cabinet_id=session.cabinet_id, now=timezone.now()))
    return LinkBacklog(state=state, pending=commands_to_deliver(session) if waiting else [])


async def link_backlog_on_loop(session: CabinetSession) -> LinkBacklog:
    """`link_backlog` for the handshake: the read on the event loop, the commands (when some
    wait) on the thread pool."""
    state, waiting = _backlog(
        await _backlog_read.arows(cabinet_id=session.cabinet_id, now=timezone.now())
    )
    pending = await on_pool_thread(commands_to_deliver)(session) if waiting else []
    return LinkBacklog(state=state, pending=pending)


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
