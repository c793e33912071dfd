"""What the link does with each event a cabinet sends (protocol §4): store it once, apply the
link's own part (command status, door sensor), and hand the domain its report
(cabinets.reports). A refusal is recorded on the stored message and acknowledged, so a cabinet
never replays an event the platform will not accept."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from cabinet_agent import protocol
from cabinets.locks import compartment_lock_by_label
from cabinets.models import CabinetMessage, DoorState
from cabinets.reports import (
    BurstFrame,
    CodeEntry,
    CourierRequest,
    DoorEvent,
    FaceBurst,
    FaceChallengeRequest,
    FaceConfirm,
    FaceScan,
    report_handler,
)
from cabinets.services.commands import (
    UnknownCommand,
    command_receipt_record,
    command_rejected_record,
    command_result_record,
)
from core.errors import ApplicationError

logger = logging.getLogger(__name__)

DOOR_EVENT_STATE = {
    "opened": DoorState.OPEN,
    "closed": DoorState.CLOSED,
    "forced": DoorState.OPEN,
    "fault": DoorState.FAULT,
}


@dataclass(frozen=True)
class InboundOutcome:
    duplicate: bool
    applied: bool
    # A protocol error code the cabinet is told about with an error frame (besides the ack),
    # e.g. "unknown_command"; None when there is nothing to tell.
    error: str | None = None
    error_message: str = ""


_NOT_STORED = frozenset({"type", "id", "image", "code", "pin", "frames", "digits", "nonce"})

# Refusals the cabinet hears about (protocol §12); other refusals are only recorded.
_TOLD = frozenset({UnknownCommand.code})


def cabinet_message_handle(*, cabinet_id: int, frame: dict[str, Any]) -> InboundOutcome:
    """Apply one cabinet event exactly once. The event id is stored in the same transaction
    as its effect, so a replay after a lost ack is recognised and only acknowledged."""
    kind = frame["type"]
    # Neither face images, the typed code, the confirmation digits nor a nonce are kept.
    stored = {k: v for k, v in frame.items() if k not in _NOT_STORED}
    with transaction.atomic():
        try:
            # A savepoint: a duplicate id must not abort the outer transaction (PostgreSQL).
            with transaction.atomic():
                message = CabinetMessage.objects.create(
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
        try:
            # A savepoint: a refusal undoes the event's effects, never the stored message.
            with transaction.atomic():
                applied = _apply(cabinet_id=cabinet_id, frame=frame)
        except ApplicationError as refusal:
            logger.warning(
                "cabinet %s: %s %s refused: %s", cabinet_id, kind, frame["id"], refusal.code
            )
            message.refusal, message.refusal_detail = refusal.code[:64], refusal.message[:255]
            message.save(update_fields=["refusal", "refusal_detail"])
            told = refusal.code in _TOLD
            return InboundOutcome(
                duplicate=False,
                applied=False,
                error=refusal.code if told else None,
                error_message=refusal.message if told else "",
            )
    return InboundOutcome(duplicate=False, applied=applied)


def _from_ms(value: Any) -> datetime | None:
    if not isinstance(value, int):
        return None
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def door_event_apply(*, cabinet_id: int, label: str, event: str, at: datetime | None) -> bool:
    compartment = compartment_lock_by_label(cabinet_id=cabinet_id, label=label)
    if compartment is None:
        raise ApplicationError(f"no compartment {label!r} here", code="unknown_compartment")
    compartment.door_state = DOOR_EVENT_STATE[event]
    compartment.door_changed_at = timezone.now()
    compartment.save(update_fields=["door_state", "door_changed_at"])
    if event == "forced":
        logger.warning("door forced open: cabinet %s compartment %s", cabinet_id, label)
    report_handler().door_event(
        DoorEvent(
            cabinet_id=cabinet_id,
            compartment_id=compartment.pk,
            label=compartment.label,
            event=event,
            at=at,
        )
    )
    return True


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
        return door_event_apply(
            cabinet_id=cabinet_id,
            label=frame["compartment"],
            event=frame["event"],
            at=_from_ms(frame.get("at")),
        )
    handler = report_handler()
    if kind == protocol.FACE_SCAN:
        handler.face_scan(
            FaceScan(
                cabinet_id=cabinet_id,
                scan_id=frame["id"],
                purpose=frame["purpose"],
                image=base64.b64decode(frame["image"]),
                light_on=frame["light_on"],
                taken_at=_from_ms(frame["taken_at"]),
            )
        )
        return True
    if kind == protocol.FACE_START:
        handler.face_challenge_request(
            FaceChallengeRequest(
                cabinet_id=cabinet_id,
                start_id=frame["id"],
                purpose=frame["purpose"],
                at=_from_ms(frame["at"]),
            )
        )
        return True
    if kind == protocol.FACE_BURST:
        handler.face_burst(
            FaceBurst(
                cabinet_id=cabinet_id,
                burst_id=frame["id"],
                challenge_id=frame["challenge_id"],
                nonce=frame["nonce"],
                frames=tuple(
                    BurstFrame(t_ms=f["t_ms"], jpeg=base64.b64decode(f["jpeg"]))
                    for f in frame["frames"]
                ),
                light_on=frame["light_on"],
                taken_at=_from_ms(frame["taken_at"]),
            )
        )
        return True
    if kind == protocol.FACE_CONFIRM:
        handler.face_confirm(
            FaceConfirm(
                cabinet_id=cabinet_id,
                event_id=frame["id"],
                confirm_id=frame["confirm_id"],
                digits=frame["digits"],
                at=_from_ms(frame["at"]),
            )
        )
        return True
    if kind == protocol.COURIER_REQUEST:
        handler.courier_request(
            CourierRequest(
                cabinet_id=cabinet_id,
                request_id=frame["id"],
                badge=frame["badge"],
                pin=frame["pin"],
                action=frame["action"],
                tracking_number=frame.get("tracking_number"),
                at=_from_ms(frame["at"]),
                carrier=frame.get("carrier") or "",
            )
        )
        return True
    if kind == protocol.CODE_ENTRY:
        handler.code_entry(
            CodeEntry(
                cabinet_id=cabinet_id,
                entry_id=frame["id"],
                code=frame["code"],
                entered_at=_from_ms(frame["entered_at"]),
            )
        )
        return True
    return False
