"""Commands for cabinets: stored before they are pushed, signed when pushed, finished by the
cabinet's receipt, result or rejection, or by expiry. Every final status is reported to the
domain (cabinets.reports) in the transaction that stored it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from cabinet_agent import protocol
from cabinets.locks import command_lock, compartment_lock
from cabinets.models import (
    COMMAND_OPEN_STATUSES,
    COMMAND_TRANSITIONS,
    Cabinet,
    CabinetCommand,
    CommandAction,
    CommandStatus,
    Compartment,
    DoorState,
    ServiceState,
)
from cabinets.push import push_after_commit
from cabinets.reports import CommandFinished, report_handler
from cabinets.rollouts.results import rollout_command_finished
from cabinets.selectors import command_frame, valid_key_ids
from cabinets.services.lifecycle import compartment_service_set
from core.actors import Actor
from core.errors import ApplicationError

logger = logging.getLogger(__name__)

# The actor the dashboard recognises for compartments the link took out of service.
AUTOMATIC_OUT_OF_SERVICE_ACTOR = "cabinet link"


class UnknownCommand(ApplicationError):
    """A receipt, result or rejection names no command of this cabinet (protocol §12)."""

    code = "unknown_command"


def command_issue(
    *,
    cabinet: Cabinet,
    action: str,
    actor: Actor,
    compartment: Compartment | None = None,
    payload: dict[str, Any] | None = None,
    reason: str = "",
    ttl_s: int | None = None,
    push: bool = True,
) -> CabinetCommand:
    """Store a command, then push it once the transaction commits. With `push=False` the
    caller pushes it with `commands_push_after_commit`, after what must reach the cabinet
    first (the `face_result` an unlock follows)."""
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
    if push:
        commands_push_after_commit([command])
    return command


def commands_push_after_commit(commands: Iterable[CabinetCommand]) -> None:
    for command in commands:
        key_ids = valid_key_ids(command.cabinet_id)
        if not key_ids:
            continue  # no credential, no link: it expires unsent
        # During a rotation's overlap the cabinet may be connected with either credential:
        # one frame per key, and the connection picks the one signed with its own.
        frames = {
            key_id: command_frame(command, serial=command.cabinet.serial, key_id=key_id)
            for key_id in key_ids
        }
        push_after_commit(
            command.cabinet_id,
            {
                "type": "command.deliver",
                "command_id": str(command.id),
                "frame": frames[key_ids[0]],
                "frames": frames,
            },
        )


def compartment_unlock(
    *,
    compartment: Compartment,
    actor: Actor,
    reason: str,
    payload: dict[str, Any] | None = None,
    push: bool = True,
) -> CabinetCommand:
    return command_issue(
        cabinet=compartment.cabinet,
        compartment=compartment,
        action=CommandAction.UNLOCK,
        actor=actor,
        reason=reason,
        payload=payload,
        push=push,
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


def _report_finished(command: CabinetCommand, *, late: bool = False) -> None:
    # Inside the caller's transaction: rollout targets and parcels move with the command.
    rollout_command_finished(command=command)
    report_handler().command_finished(
        CommandFinished(
            command_id=str(command.pk),
            cabinet_id=command.cabinet_id,
            compartment_id=command.compartment_id,
            action=command.action,
            status=command.status,
            late=late,
        )
    )


def _locked(*, cabinet_id: int, command_id: str) -> CabinetCommand:
    command = command_lock(cabinet_id=cabinet_id, command_id=command_id)
    if command is None:
        raise UnknownCommand(f"no command {command_id} of this cabinet")
    return command


def command_receipt_record(*, cabinet_id: int, command_id: str) -> bool:
    with transaction.atomic():
        command = _locked(cabinet_id=cabinet_id, command_id=command_id)
        return _command_finish(
            command, to_status=CommandStatus.RECEIVED, at_field="received_at", result=None
        )


def command_rejected_record(*, cabinet_id: int, command_id: str | None, reason: str) -> bool:
    if not command_id:
        return False  # a malformed or forged command: nothing of ours to mark
    if not protocol.is_uuid(command_id):
        raise UnknownCommand(f"no command {command_id[:64]!r} of this cabinet")
    with transaction.atomic():
        command = _locked(cabinet_id=cabinet_id, command_id=command_id)
        logger.warning("cabinet %s rejected command %s: %s", cabinet_id, command_id, reason)
        done = _command_finish(
            command,
            to_status=CommandStatus.REJECTED,
            at_field="completed_at",
            result={"rejected": reason},
        )
        if done:
            _report_finished(command)
        return done


def command_result_record(
    *, cabinet_id: int, command_id: str, status: str, door: str | None, detail: str
) -> bool:
    """The cabinet's report of what it did, recorded even after the server expired the
    command (the door may really have opened). A failed unlock counts against the compartment:
    after CABINET_MAX_FAILED_OPENS in a row it is taken out of service."""
    with transaction.atomic():
        command = _locked(cabinet_id=cabinet_id, command_id=command_id)
        late = command.status == CommandStatus.EXPIRED
        to_status = CommandStatus.SUCCEEDED if status == "succeeded" else CommandStatus.FAILED
        result: dict[str, Any] = {"status": status, "door": door, "detail": detail}
        if late:
            result["late"] = True
        if not _command_finish(
            command, to_status=to_status, at_field="completed_at", result=result
        ):
            return False
        if command.action == CommandAction.UNLOCK and command.compartment_id:
            _unlock_outcome(command, opened=to_status == CommandStatus.SUCCEEDED, door=door)
        rotated = to_status == CommandStatus.SUCCEEDED
        if command.action == CommandAction.CREDENTIAL_ROTATE and rotated:
            # The cabinet stored its new credential: close the link it holds with the old one
            # (4401) so that it reconnects with the new one, which completes the rotation.
            # It comes straight back: it stays online meanwhile ("switching").
            push_after_commit(
                cabinet_id,
                {
                    "type": "link.revoke",
                    "reason": "rotated",
                    "key_id": command.payload["previous_key_id"],
                    "switching": True,
                },
            )
        _report_finished(command, late=late)
        return True


def _unlock_outcome(command: CabinetCommand, *, opened: bool, door: str | None) -> None:
    assert command.compartment_id is not None
    compartment = compartment_lock(compartment_id=command.compartment_id)
    if door in DoorState.values and door != compartment.door_state:
        compartment.door_state = door
        compartment.door_changed_at = timezone.now()
    fields = ["door_state", "door_changed_at", "failed_open_count"]
    if opened:
        compartment.failed_open_count = 0
        compartment.save(update_fields=fields)
        return
    compartment.failed_open_count += 1
    compartment.save(update_fields=fields)
    if (
        compartment.failed_open_count >= settings.CABINET_MAX_FAILED_OPENS
        and compartment.service_state == ServiceState.IN_SERVICE
    ):
        compartment_service_set(
            compartment_id=compartment.pk,
            to_state=ServiceState.OUT_OF_SERVICE,
            actor=Actor.system(AUTOMATIC_OUT_OF_SERVICE_ACTOR),
            reason=f"{compartment.failed_open_count} failed opens in a row",
        )


def commands_expire(*, now: datetime | None = None) -> int:
    """Open commands the cabinet can no longer run: past `expires_at` plus the clock skew the
    cabinet allows (protocol §7). Unlocks expire one by one and are reported as finished, so
    whatever they reserved is released; the rest (config, firmware: thousands when a rollout
    meets an offline fleet) in one statement, folded into rollouts by their driver."""
    now = now or timezone.now()
    cutoff = now - timedelta(milliseconds=settings.CABINET_MAX_CLOCK_SKEW_MS)
    due = CabinetCommand.objects.filter(status__in=COMMAND_OPEN_STATUSES, expires_at__lte=cutoff)
    expired = due.exclude(action=CommandAction.UNLOCK).update(
        status=CommandStatus.EXPIRED, completed_at=now
    )
    unlocks = list(
        due.filter(action=CommandAction.UNLOCK)
        .order_by("expires_at")
        .values_list("pk", "cabinet_id")
    )
    for command_id, cabinet_id in unlocks:
        if command_expire(cabinet_id=cabinet_id, command_id=str(command_id)):
            expired += 1
    return expired


def command_expire(*, cabinet_id: int, command_id: str) -> bool:
    with transaction.atomic():
        command = command_lock(cabinet_id=cabinet_id, command_id=command_id)
        if command is None or command.status not in COMMAND_OPEN_STATUSES:
            return False  # a receipt or result came first
        _command_finish(
            command, to_status=CommandStatus.EXPIRED, at_field="completed_at", result=None
        )
        _report_finished(command)
        return True
