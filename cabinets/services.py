from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from cabinet_agent import protocol
from cabinets.keys import signing_key_for
from cabinets.models import (
    CABINET_TRANSITIONS,
    COMMAND_OPEN_STATUSES,
    COMMAND_TRANSITIONS,
    COMPARTMENT_TRANSITIONS,
    Cabinet,
    CabinetCommand,
    CabinetCredential,
    CabinetEvent,
    CabinetMessage,
    CabinetState,
    CommandAction,
    CommandStatus,
    Compartment,
    CompartmentEvent,
    CompartmentState,
    ConnectionState,
    DoorState,
)
from cabinets.presence import presence_drop, presence_snapshot
from cabinets.push import push_after_commit, push_many_after_commit
from cabinets.selectors import active_key_id, command_frame
from cabinets.signals import (
    code_entry_received,
    command_finished,
    courier_request_received,
    door_event,
    face_scan_received,
)
from core.actors import Actor
from core.transitions import check_transition

logger = logging.getLogger(__name__)


def cabinet_transition(
    *, cabinet_id: int, to_state: str, actor: Actor, reason: str = ""
) -> Cabinet:
    with transaction.atomic():
        # Locked so that two admins moving the same cabinet cannot both pass the map check.
        cabinet = Cabinet.objects.select_for_update().get(pk=cabinet_id)
        from_state = cabinet.state
        check_transition(CABINET_TRANSITIONS, kind="cabinet", current=from_state, target=to_state)
        cabinet.state = to_state
        cabinet.save(update_fields=["state", "updated_at"])
        CabinetEvent.objects.create(
            cabinet=cabinet,
            from_state=from_state,
            to_state=to_state,
            reason=reason[:255],
            **actor.event_fields(),
        )
    return cabinet


def compartment_transition(
    *, compartment_id: int, to_state: str, actor: Actor, reason: str = ""
) -> Compartment:
    with transaction.atomic():
        # Locked: deposits, pickups and door events race on the same compartment.
        compartment = Compartment.objects.select_for_update().get(pk=compartment_id)
        from_state = compartment.state
        check_transition(
            COMPARTMENT_TRANSITIONS, kind="compartment", current=from_state, target=to_state
        )
        compartment.state = to_state
        compartment.state_changed_at = timezone.now()
        compartment.save(update_fields=["state", "state_changed_at"])
        CompartmentEvent.objects.create(
            compartment=compartment,
            from_state=from_state,
            to_state=to_state,
            reason=reason[:255],
            **actor.event_fields(),
        )
    return compartment


def compartments_create(
    *, cabinet: Cabinet, layout: Iterable[tuple[str, str]]
) -> list[Compartment]:
    """Create compartments from (label, size) pairs, with the nominal size dimensions."""
    compartments = []
    for label, size in layout:
        compartment = Compartment(cabinet=cabinet, label=label, size=size)
        compartment.apply_size_spec()
        compartments.append(compartment)
    return Compartment.objects.bulk_create(compartments)


# --- Credentials -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedCredential:
    """Shown once to the operator who provisions the cabinet; only hashes are kept."""

    cabinet_id: int
    serial: str
    credential: str
    signing_key_hex: str


def cabinet_credential_issue(*, cabinet: Cabinet, actor: Actor) -> IssuedCredential:
    """Issue a new credential; any active one is revoked (this is also rotation)."""
    credential, key_id, secret_hash = protocol.new_credential()
    with transaction.atomic():
        # Locking the cabinet serialises two rotations: one active credential at most.
        Cabinet.objects.select_for_update().filter(pk=cabinet.pk).first()
        revoked = CabinetCredential.objects.filter(cabinet=cabinet, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_reason="rotated"
        )
        CabinetCredential.objects.create(
            cabinet=cabinet, key_id=key_id, secret_hash=secret_hash, **actor.event_fields()
        )
        if revoked:
            push_after_commit(cabinet.pk, {"type": "link.revoke"})
    return IssuedCredential(
        cabinet_id=cabinet.pk,
        serial=cabinet.serial,
        credential=credential,
        signing_key_hex=signing_key_for(key_id).hex(),
    )


def cabinet_credentials_issue_bulk(
    *, cabinets: list[Cabinet], actor: Actor
) -> list[IssuedCredential]:
    """cabinet_credential_issue for many cabinets in a few queries (a fleet import, a
    simulation): active credentials are revoked and their open links closed after commit."""
    ids = [cabinet.pk for cabinet in cabinets]
    issued: list[IssuedCredential] = []
    with transaction.atomic():
        # Locked in primary-key order, like cabinet_credential_issue one at a time: at most
        # one active credential per cabinet even against a concurrent rotation.
        list(Cabinet.objects.select_for_update().filter(pk__in=ids).order_by("pk").values("pk"))
        active = CabinetCredential.objects.filter(cabinet_id__in=ids, revoked_at__isnull=True)
        rotated = list(active.values_list("cabinet_id", flat=True).distinct())
        active.update(revoked_at=timezone.now(), revoked_reason="rotated")
        rows = []
        for cabinet in cabinets:
            credential, key_id, secret_hash = protocol.new_credential()
            rows.append(
                CabinetCredential(
                    cabinet=cabinet, key_id=key_id, secret_hash=secret_hash, **actor.event_fields()
                )
            )
            issued.append(
                IssuedCredential(
                    cabinet_id=cabinet.pk,
                    serial=cabinet.serial,
                    credential=credential,
                    signing_key_hex=signing_key_for(key_id).hex(),
                )
            )
        CabinetCredential.objects.bulk_create(rows, batch_size=1000)
        push_many_after_commit(rotated, {"type": "link.revoke"})
    return issued


SIMULATED_LAYOUT: tuple[tuple[str, str], ...] = (
    ("A01", "S"),
    ("A02", "S"),
    ("B01", "M"),
    ("C01", "L"),
)


def simulated_fleet_provision(
    *, prefix: str, count: int, create: bool, actor: Actor
) -> list[IssuedCredential]:
    """Credentials for the cabinets `<prefix>00001`..`<prefix>NNNNN` of a fleet simulation,
    created first (with four compartments each) when `create` is set. Issuing rotates: the
    previous credentials stop working and their sockets are closed. In bulk, for 10,000."""
    serials = [f"{prefix}{n:05d}" for n in range(1, count + 1)]
    with transaction.atomic():
        existing = set(Cabinet.objects.filter(serial__in=serials).values_list("serial", flat=True))
        if create:
            Cabinet.objects.bulk_create(
                [_simulated_cabinet(serial) for serial in serials if serial not in existing],
                batch_size=1000,
            )
        cabinets = list(Cabinet.objects.filter(serial__in=serials).order_by("serial"))
        if len(cabinets) < count:
            missing = count - len(cabinets)
            raise ValueError(f"{missing} of {count} cabinets {prefix}… do not exist (use --create)")
        ids = [cabinet.pk for cabinet in cabinets]
        have_compartments = set(
            Compartment.objects.filter(cabinet_id__in=ids).values_list("cabinet_id", flat=True)
        )
        compartments = []
        for cabinet in cabinets:
            if cabinet.pk in have_compartments:
                continue
            for label, size in SIMULATED_LAYOUT:
                compartment = Compartment(cabinet=cabinet, label=label, size=size)
                compartment.apply_size_spec()
                compartments.append(compartment)
        Compartment.objects.bulk_create(compartments, batch_size=1000)
        issued = cabinet_credentials_issue_bulk(cabinets=cabinets, actor=actor)
    return issued


def _simulated_cabinet(serial: str) -> Cabinet:
    return Cabinet(
        serial=serial,
        name=f"Simulated {serial}",
        address="Fleet simulator",
        city="Simulation",
        region="Simulation",
        latitude=0,
        longitude=0,
        hardware_model="SIM",
        state=CabinetState.ACTIVE,
    )


def cabinet_credential_revoke(*, cabinet: Cabinet, actor: Actor, reason: str) -> int:
    with transaction.atomic():
        revoked = CabinetCredential.objects.filter(cabinet=cabinet, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_reason=reason[:255] or "revoked"
        )
        if revoked:
            logger.warning("credential of cabinet %s revoked by %s", cabinet.serial, actor.label)
            push_after_commit(cabinet.pk, {"type": "link.revoke"})
    return revoked


# --- Commands --------------------------------------------------------------------------------


def command_issue(
    *,
    cabinet: Cabinet,
    action: str,
    actor: Actor,
    compartment: Compartment | None = None,
    payload: dict[str, Any] | None = None,
    reason: str = "",
    ttl_s: int | None = None,
) -> CabinetCommand:
    """Store a command, then push it once the transaction commits."""
    if ttl_s is None:
        ttl_s = (
            settings.CABINET_UNLOCK_TTL_S
            if action == CommandAction.UNLOCK
            else settings.CABINET_CONFIG_COMMAND_TTL_S
        )
    now = timezone.now()
    command = CabinetCommand.objects.create(
        id=uuid.uuid4(),
        cabinet=cabinet,
        compartment=compartment,
        action=action,
        payload=payload or {},
        reason=reason[:255],
        issued_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
        **actor.event_fields(),
    )
    key_id = active_key_id(cabinet.pk)
    if key_id is not None:
        frame = command_frame(command, serial=cabinet.serial, key_id=key_id)
        push_after_commit(
            cabinet.pk, {"type": "command.deliver", "command_id": str(command.id), "frame": frame}
        )
    return command


def compartment_unlock(
    *, compartment: Compartment, actor: Actor, reason: str, payload: dict[str, Any] | None = None
) -> CabinetCommand:
    return command_issue(
        cabinet=compartment.cabinet,
        compartment=compartment,
        action=CommandAction.UNLOCK,
        actor=actor,
        reason=reason,
        payload=payload,
    )


def command_mark_sent(*, command_id: str) -> bool:
    """Compare-and-set: only an open command becomes sent; counts re-sends."""
    now = timezone.now()
    changed = CabinetCommand.objects.filter(
        pk=command_id, status__in=COMMAND_OPEN_STATUSES, expires_at__gt=now
    ).update(status=CommandStatus.SENT, sent_at=now, send_count=F("send_count") + 1)
    return changed == 1


def _command_finish(
    command: CabinetCommand, *, to_status: str, at_field: str, result: dict[str, Any] | None
) -> bool:
    if to_status not in COMMAND_TRANSITIONS[command.status]:
        return False
    command.status = to_status
    setattr(command, at_field, timezone.now())
    fields = ["status", at_field]
    if result is not None:
        command.result = result
        fields.append("result")
    command.save(update_fields=fields)
    return True


def _locked_command(*, cabinet_id: int, command_id: str) -> CabinetCommand | None:
    # Locked: a receipt, a result and the expiry task may race on one command. Scoped to the
    # cabinet, so one cabinet can never acknowledge another's command.
    return (
        CabinetCommand.objects.select_for_update()
        .filter(pk=command_id, cabinet_id=cabinet_id)
        .first()
    )


def command_receipt_record(*, cabinet_id: int, command_id: str) -> bool:
    with transaction.atomic():
        command = _locked_command(cabinet_id=cabinet_id, command_id=command_id)
        if command is None:
            return False
        return _command_finish(
            command, to_status=CommandStatus.RECEIVED, at_field="received_at", result=None
        )


def command_rejected_record(*, cabinet_id: int, command_id: str | None, reason: str) -> bool:
    if not command_id or not protocol.is_uuid(command_id):
        return False
    with transaction.atomic():
        command = _locked_command(cabinet_id=cabinet_id, command_id=command_id)
        if command is None:
            return False
        logger.warning("cabinet %s rejected command %s: %s", cabinet_id, command_id, reason)
        done = _command_finish(
            command,
            to_status=CommandStatus.REJECTED,
            at_field="completed_at",
            result={"rejected": reason},
        )
        if done:
            command_finished.send(sender=CabinetCommand, command=command)
        return done


def command_result_record(
    *, cabinet_id: int, command_id: str, status: str, door: str | None, detail: str
) -> bool:
    """The cabinet's report of what it did. A failed unlock counts against the compartment:
    after CABINET_MAX_FAILED_OPENS in a row it is taken out of service."""
    with transaction.atomic():
        command = _locked_command(cabinet_id=cabinet_id, command_id=command_id)
        if command is None:
            return False
        to_status = CommandStatus.SUCCEEDED if status == "succeeded" else CommandStatus.FAILED
        if not _command_finish(
            command,
            to_status=to_status,
            at_field="completed_at",
            result={"status": status, "door": door, "detail": detail},
        ):
            return False
        if command.action == CommandAction.UNLOCK and command.compartment_id:
            _unlock_outcome(command, opened=to_status == CommandStatus.SUCCEEDED, door=door)
        command_finished.send(sender=CabinetCommand, command=command)
        return True


def _unlock_outcome(command: CabinetCommand, *, opened: bool, door: str | None) -> None:
    assert command.compartment_id is not None
    compartment = Compartment.objects.select_for_update().get(pk=command.compartment_id)
    if door in DoorState.values:
        compartment.door_state = door
    if opened:
        compartment.failed_open_count = 0
        compartment.save(update_fields=["door_state", "failed_open_count"])
        return
    compartment.failed_open_count += 1
    compartment.save(update_fields=["door_state", "failed_open_count"])
    if (
        compartment.failed_open_count >= settings.CABINET_MAX_FAILED_OPENS
        and compartment.state != CompartmentState.OUT_OF_SERVICE
    ):
        compartment_transition(
            compartment_id=compartment.pk,
            to_state=CompartmentState.OUT_OF_SERVICE,
            actor=Actor.system("cabinet link"),
            reason=f"{compartment.failed_open_count} failed opens in a row",
        )


def commands_expire(*, now: datetime | None = None) -> int:
    """Open commands past their expiry will never be executed: the cabinet refuses them too."""
    now = now or timezone.now()
    return CabinetCommand.objects.filter(
        status__in=COMMAND_OPEN_STATUSES, expires_at__lte=now
    ).update(status=CommandStatus.EXPIRED, completed_at=now)


# --- Connection, heartbeats, events ----------------------------------------------------------


def cabinet_telemetry_record(*, cabinet_id: int, telemetry: dict[str, Any]) -> None:
    """Store the latest telemetry and the door states it reports."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "telemetry": telemetry,
        "telemetry_at": now,
        "last_seen_at": now,
        "connection_state": ConnectionState.ONLINE,
        "firmware_version": str(telemetry.get("firmware_version", ""))[:32],
        "config_version": str(telemetry.get("config_version", ""))[:32],
    }
    with transaction.atomic():
        Cabinet.objects.filter(pk=cabinet_id).update(**fields)
        doors = telemetry.get("doors") or {}
        for door_state in (DoorState.OPEN, DoorState.CLOSED, DoorState.FAULT):
            labels = [label for label, state in doors.items() if state == door_state]
            if labels:
                Compartment.objects.filter(cabinet_id=cabinet_id, label__in=labels).exclude(
                    door_state=door_state
                ).update(door_state=door_state)


DOOR_EVENT_STATE = {
    "opened": DoorState.OPEN,
    "closed": DoorState.CLOSED,
    "forced": DoorState.OPEN,
    "fault": DoorState.FAULT,
}


def door_event_apply(*, cabinet_id: int, label: str, event: str) -> Compartment | None:
    with transaction.atomic():
        compartment = (
            Compartment.objects.select_for_update()
            .filter(cabinet_id=cabinet_id, label=label)
            .first()
        )
        if compartment is None:
            return None
        compartment.door_state = DOOR_EVENT_STATE[event]
        compartment.save(update_fields=["door_state"])
        if event == "forced":
            logger.warning("door forced open: cabinet %s compartment %s", cabinet_id, label)
        door_event.send(sender=Compartment, compartment=compartment, event=event)
    return compartment


@dataclass(frozen=True)
class InboundOutcome:
    duplicate: bool
    applied: bool
    # An error code (protocol §12) the cabinet is told about; the event is acked all the same.
    error: str | None = None
    error_message: str = ""


def cabinet_message_handle(*, cabinet_id: int, frame: dict[str, Any]) -> InboundOutcome:
    """Apply one cabinet event exactly once. The event id is stored in the same transaction
    as its effect, so a replay after a lost ack is recognised and only acknowledged."""
    kind = frame["type"]
    # Neither the face image nor the typed code is kept.
    stored = {k: v for k, v in frame.items() if k not in ("type", "id", "image", "code", "pin")}
    with transaction.atomic():
        try:
            with transaction.atomic():
                CabinetMessage.objects.create(
                    id=frame["id"],
                    cabinet_id=cabinet_id,
                    type=kind,
                    payload=stored,
                    sent_at=_from_ms(
                        frame.get("at") or frame.get("taken_at") or frame.get("entered_at")
                    ),
                )
        except IntegrityError:
            return InboundOutcome(duplicate=True, applied=False)
        applied = _apply(cabinet_id=cabinet_id, frame=frame)
        if not applied and _names_unknown_command(cabinet_id=cabinet_id, frame=frame):
            return InboundOutcome(
                duplicate=False,
                applied=False,
                error=protocol.ErrorCode.UNKNOWN_COMMAND,
                error_message=f"{kind}: no such command for this cabinet",
            )
    return InboundOutcome(duplicate=False, applied=applied)


def _names_unknown_command(*, cabinet_id: int, frame: dict[str, Any]) -> bool:
    """A receipt, result or rejection whose command is not one of this cabinet's (where
    _locked_command found nothing). Another cabinet's command is unknown here too."""
    if frame["type"] not in (
        protocol.COMMAND_RECEIPT,
        protocol.COMMAND_RESULT,
        protocol.COMMAND_REJECTED,
    ):
        return False
    command_id = frame.get("command_id")
    if command_id is None:  # a rejection of a command that carried no usable id
        return False
    return not (
        protocol.is_uuid(command_id)
        and CabinetCommand.objects.filter(pk=command_id, cabinet_id=cabinet_id).exists()
    )


def _from_ms(value: Any) -> datetime | None:
    if not isinstance(value, int):
        return None
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def _apply(*, cabinet_id: int, frame: dict[str, Any]) -> bool:
    kind = frame["type"]
    if kind == protocol.COMMAND_RECEIPT:
        return command_receipt_record(cabinet_id=cabinet_id, command_id=frame["command_id"])
    if kind == protocol.COMMAND_REJECTED:
        return command_rejected_record(
            cabinet_id=cabinet_id, command_id=frame.get("command_id"), reason=frame["reason"]
        )
    if kind == protocol.COMMAND_RESULT:
        return command_result_record(
            cabinet_id=cabinet_id,
            command_id=frame["command_id"],
            status=frame["status"],
            door=frame.get("door"),
            detail=frame.get("detail", ""),
        )
    if kind == protocol.DOOR_EVENT:
        return (
            door_event_apply(
                cabinet_id=cabinet_id, label=frame["compartment"], event=frame["event"]
            )
            is not None
        )
    if kind == protocol.FACE_SCAN:
        face_scan_received.send(
            sender=Cabinet,
            cabinet_id=cabinet_id,
            scan_id=frame["id"],
            purpose=frame["purpose"],
            image=base64.b64decode(frame["image"]),
            light_on=frame["light_on"],
            taken_at=_from_ms(frame["taken_at"]),
        )
        return True
    if kind == protocol.COURIER_REQUEST:
        courier_request_received.send(
            sender=Cabinet,
            cabinet_id=cabinet_id,
            request_id=frame["id"],
            badge=frame["badge"],
            pin=frame["pin"],
            action=frame["action"],
            tracking_number=frame.get("tracking_number"),
            at=_from_ms(frame["at"]),
        )
        return True
    if kind == protocol.CODE_ENTRY:
        code_entry_received.send(
            sender=Cabinet,
            cabinet_id=cabinet_id,
            entry_id=frame["id"],
            code=frame["code"],
            entered_at=_from_ms(frame["entered_at"]),
        )
        return True
    return False


def cabinets_liveness_sync(*, now: float | None = None) -> dict[str, int]:
    """Fold the Redis presence set into the database: refresh last_seen_at of live cabinets,
    mark the silent ones offline."""
    now = now or time.time()
    cutoff = now - settings.CABINET_OFFLINE_AFTER_S
    seen = presence_snapshot()
    alive = {pk: ts for pk, ts in seen.items() if ts >= cutoff}
    stale = [pk for pk, ts in seen.items() if ts < cutoff]

    updated = 0
    alive_ids = sorted(alive)
    for start in range(0, len(alive_ids), 1000):
        chunk = alive_ids[start : start + 1000]
        cabinets = [
            Cabinet(
                pk=pk,
                last_seen_at=datetime.fromtimestamp(alive[pk], tz=UTC),
                connection_state=ConnectionState.ONLINE,
            )
            for pk in chunk
        ]
        updated += Cabinet.objects.bulk_update(cabinets, ["last_seen_at", "connection_state"])

    # Online in the database but silent in Redis (or gone from it): offline.
    offline = (
        Cabinet.objects.filter(connection_state=ConnectionState.ONLINE)
        .exclude(pk__in=alive_ids)
        .update(connection_state=ConnectionState.OFFLINE)
    )
    presence_drop(stale)
    return {"alive": updated, "marked_offline": offline}
