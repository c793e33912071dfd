"""Answering people at a cabinet: recipients with a code or a face, couriers with a badge and
PIN, senders with a face. Every attempt is recorded (figures, never the image or the code),
every answer goes back to the cabinet after commit, and doors open only through stored,
signed unlock commands."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from cabinet_agent import protocol
from cabinets.models import Cabinet
from cabinets.push import push_after_commit
from core.actors import Actor, ActorKind
from core.errors import ApplicationError
from courier.codes import pickup_code_matches
from courier.models import (
    AccessAttempt,
    AttemptMethod,
    Courier,
    Parcel,
    ParcelDirection,
    ParcelStatus,
)
from courier.selectors import (
    failed_attempts,
    parcels_ready_at,
    recipients_waiting_at,
    senders_expected_at,
)
from courier.services import (
    parcel_deposit_bigger,
    parcel_deposit_start,
    parcel_dropoff_start,
    parcels_release,
)

logger = logging.getLogger(__name__)


def _answer(cabinet_id: int, frame: dict[str, Any]) -> None:
    push_after_commit(cabinet_id, {"type": "link.send", "frame": frame})


# Per method: the settings naming how many failures in how many seconds lock it at a cabinet.
_LOCKOUT_SETTINGS: dict[str, tuple[str, str]] = {
    AttemptMethod.CODE: ("CODE_LOCKOUT_ATTEMPTS", "CODE_LOCKOUT_WINDOW_S"),
    AttemptMethod.FACE: ("FACE_LOCKOUT_ATTEMPTS", "FACE_LOCKOUT_WINDOW_S"),
    AttemptMethod.COURIER: ("COURIER_LOCKOUT_ATTEMPTS", "COURIER_LOCKOUT_WINDOW_S"),
}


def _locked_out(*, cabinet_id: int, method: str) -> bool:
    attempts, window_s = (getattr(settings, name) for name in _LOCKOUT_SETTINGS[method])
    since = timezone.now() - timedelta(seconds=window_s)
    return failed_attempts(cabinet_id=cabinet_id, method=method, since=since) >= attempts


def _stale(at: datetime | None) -> bool:
    return at is not None and timezone.now() - at > timedelta(
        seconds=settings.ACCESS_REQUEST_MAX_AGE_S
    )


def _record(
    *,
    cabinet_id: int,
    method: str,
    event_id: str,
    success: bool,
    outcome: str,
    parcels: list[Parcel] | None = None,
    **fields: Any,
) -> AccessAttempt:
    attempt = AccessAttempt.objects.create(
        cabinet_id=cabinet_id,
        method=method,
        event_id=event_id,
        success=success,
        outcome=outcome,
        **fields,
    )
    if parcels:
        attempt.parcels.set(parcels)
    return attempt


def _doors(parcels: list[Parcel]) -> str:
    labels = sorted(p.compartment.label for p in parcels if p.compartment is not None)
    return ", ".join(labels)


# --- Pickup code ------------------------------------------------------------------------------


def code_entry_answer(
    *, cabinet_id: int, entry_id: str, code: str, entered_at: datetime | None
) -> str:
    """Called inside the transaction that stored the code entry."""

    def answer(outcome: str, message: str) -> str:
        _answer(
            cabinet_id,
            protocol.make_code_result(entry_id=entry_id, outcome=outcome, message=message),
        )
        return outcome

    if _locked_out(cabinet_id=cabinet_id, method=AttemptMethod.CODE):
        _record(
            cabinet_id=cabinet_id,
            method=AttemptMethod.CODE,
            event_id=entry_id,
            success=False,
            outcome=protocol.CodeOutcome.LOCKED_OUT,
        )
        return answer(
            protocol.CodeOutcome.LOCKED_OUT,
            "Too many wrong codes here. Try again later or contact support.",
        )
    if _stale(entered_at):
        _record(
            cabinet_id=cabinet_id,
            method=AttemptMethod.CODE,
            event_id=entry_id,
            success=False,
            outcome="stale",
            detail="entry arrived too late",
        )
        return answer(
            protocol.CodeOutcome.NO_MATCH, "That took too long: please type the code again."
        )

    match = next(
        (
            parcel
            for parcel in parcels_ready_at(cabinet_id=cabinet_id)
            if pickup_code_matches(
                parcel_id=parcel.pk, code=code, code_hash=parcel.pickup_code_hash
            )
        ),
        None,
    )
    if match is None:
        _record(
            cabinet_id=cabinet_id,
            method=AttemptMethod.CODE,
            event_id=entry_id,
            success=False,
            outcome=protocol.CodeOutcome.NO_MATCH,
        )
        return answer(protocol.CodeOutcome.NO_MATCH, "This code is not valid.")
    released = parcels_release(
        parcels=[match], actor=Actor(kind=ActorKind.RECIPIENT, label="pickup code"), reason="pickup"
    )
    _record(
        cabinet_id=cabinet_id,
        method=AttemptMethod.CODE,
        event_id=entry_id,
        success=True,
        outcome=protocol.CodeOutcome.UNLOCKING,
        identity_id=match.recipient_id,
        parcels=[match],
    )
    if not released:
        return answer(protocol.CodeOutcome.UNLOCKING, "Your compartment is already opening.")
    return answer(protocol.CodeOutcome.UNLOCKING, f"Compartment {_doors(released)} is opening.")


# --- Couriers ---------------------------------------------------------------------------------


def courier_request_answer(
    *,
    cabinet_id: int,
    request_id: str,
    badge: str,
    pin: str,
    action: str,
    tracking_number: str | None,
    at: datetime | None,
) -> str:
    """Called inside the transaction that stored the request."""

    def answer(outcome: str, message: str, parcels: list[Parcel] = ()) -> str:  # type: ignore[assignment]
        labels = sorted(p.compartment.label for p in parcels if p.compartment is not None)
        _answer(
            cabinet_id,
            protocol.make_courier_result(
                request_id=request_id, outcome=outcome, compartments=labels, message=message
            ),
        )
        return outcome

    def refuse(outcome: str, message: str, *, answered: str | None = None, **fields: Any) -> str:
        """Record a failed attempt (it counts towards the lockout) and answer the cabinet."""
        _record(
            cabinet_id=cabinet_id,
            method=AttemptMethod.COURIER,
            event_id=request_id,
            success=False,
            outcome=outcome,
            purpose=action,
            **fields,
        )
        return answer(answered or outcome, message)

    Outcome = protocol.CourierOutcome
    if _locked_out(cabinet_id=cabinet_id, method=AttemptMethod.COURIER):
        return refuse(Outcome.LOCKED_OUT, "Too many wrong PINs here. Try again later.")
    courier = (
        Courier.objects.select_related("carrier")
        .filter(badge_number=badge, is_active=True, carrier__is_active=True)
        .first()
    )
    if courier is None or not courier.pin_hash or not check_password(pin, courier.pin_hash):
        return refuse(Outcome.NOT_AUTHORIZED, "Badge or PIN not recognised.")
    if _stale(at):
        return refuse(
            "stale",
            "That took too long: please try again.",
            answered=Outcome.REFUSED,
            courier=courier,
        )

    cabinet = Cabinet.objects.get(pk=cabinet_id)
    actor = Actor(kind=ActorKind.COURIER, label=courier.badge_number)
    try:
        # A savepoint: a refused request must not undo the stored event and its audit row.
        with transaction.atomic():
            if action == protocol.CourierAction.COLLECT:
                parcels = _collectable(cabinet_id=cabinet_id, carrier_id=courier.carrier_id)
                if not parcels:
                    outcome, message, opened = (
                        Outcome.NOTHING_TO_COLLECT,
                        "Nothing to collect here.",
                        [],
                    )
                else:
                    opened = parcels_release(parcels=parcels, actor=actor, reason="collection")
                    outcome = Outcome.UNLOCKING
                    message = f"Opening {len(opened)} compartment(s): {_doors(opened)}."
            else:
                start = (
                    parcel_deposit_bigger
                    if action == protocol.CourierAction.BIGGER
                    else parcel_deposit_start
                )
                parcel = start(
                    cabinet=cabinet,
                    carrier=courier.carrier,
                    tracking_number=tracking_number or "",
                    actor=actor,
                )
                opened = [parcel]
                outcome = Outcome.UNLOCKING
                message = (
                    f"Compartment {_doors(opened)} is opening: put parcel "
                    f"{parcel.tracking_number} in and close the door."
                )
    except ApplicationError as exc:
        outcome = {
            "unknown_parcel": Outcome.UNKNOWN_PARCEL,
            "no_compartment": Outcome.NO_COMPARTMENT,
        }.get(exc.code, Outcome.REFUSED)
        _record(
            cabinet_id=cabinet_id,
            method=AttemptMethod.COURIER,
            event_id=request_id,
            success=True,
            outcome=outcome,
            purpose=action,
            courier=courier,
            detail=exc.message[:255],
        )
        return answer(outcome, exc.message)
    _record(
        cabinet_id=cabinet_id,
        method=AttemptMethod.COURIER,
        event_id=request_id,
        success=True,
        outcome=outcome,
        purpose=action,
        courier=courier,
        parcels=opened,
    )
    return answer(outcome, message, opened)


def _collectable(*, cabinet_id: int, carrier_id: int) -> list[Parcel]:
    return list(
        Parcel.objects.filter(
            cabinet_id=cabinet_id,
            carrier_id=carrier_id,
            status__in=[ParcelStatus.EXPIRED, ParcelStatus.DROPPED_OFF],
            compartment__isnull=False,
        ).select_related("compartment")
    )


# --- Faces ------------------------------------------------------------------------------------


# What to say when a scan's answer is repeated (its first message is not stored).
_FACE_AGAIN: dict[str, str] = {
    protocol.FaceOutcome.UNLOCKING: "Your compartment is opening.",
    protocol.FaceOutcome.NO_MATCH: "Face not recognised: try again or use your pickup code.",
    protocol.FaceOutcome.USE_CODE: "Please use your pickup code.",
    protocol.FaceOutcome.LOCKED_OUT: "Face scan is paused here: use your pickup code.",
}


def _face_answered_again(*, cabinet_id: int, scan_id: str) -> bool:
    """The face task acknowledges late, so a worker that dies after committing its answer
    has it run again. The scan was decided once (its attempt row, its doors): repeat that
    outcome to the cabinet and open nothing more."""
    attempt = (
        AccessAttempt.objects.filter(event_id=scan_id, method=AttemptMethod.FACE)
        .only("outcome")
        .first()
    )
    if attempt is None:
        return False
    logger.info("face scan %s already answered (%s): not matched again", scan_id, attempt.outcome)
    _answer(
        cabinet_id,
        protocol.make_face_result(
            scan_id=scan_id,
            outcome=attempt.outcome,
            message=_FACE_AGAIN.get(attempt.outcome, "Please try again."),
        ),
    )
    return True


@dataclass(frozen=True)
class _Figures:
    distance: float | None = None
    second_distance: float | None = None
    threshold: float | None = None
    margin: float | None = None


def face_scan_answer(
    *,
    cabinet_id: int,
    scan_id: str,
    purpose: str,
    image_b64: str,
    light_on: bool,
    taken_at: str,
) -> str:
    """Run in a Celery task: face work happens outside any transaction, then one short
    transaction records the attempt, opens doors and queues the answer."""
    from identity.face_pipeline import FaceRefused
    from identity.models import Identity
    from identity.services import face_identify, face_probe, face_verify

    Outcome = protocol.FaceOutcome
    if _face_answered_again(cabinet_id=cabinet_id, scan_id=scan_id):
        return "answered"

    def finish(
        outcome: str,
        message: str,
        *,
        success: bool = False,
        detail: str = "",
        identity_id: int | None = None,
        figures: _Figures = _Figures(),
        release: list[Parcel] | None = None,
        dropoff: Parcel | None = None,
    ) -> str:
        try:
            return _finish(
                outcome,
                message,
                success=success,
                detail=detail,
                identity_id=identity_id,
                figures=figures,
                release=release,
                dropoff=dropoff,
            )
        except IntegrityError:
            # Another run of this task recorded the scan first (one attempt per event id):
            # this run's doors and answer were rolled back with it.
            if _face_answered_again(cabinet_id=cabinet_id, scan_id=scan_id):
                return "answered"
            raise

    def _finish(
        outcome: str,
        message: str,
        *,
        success: bool,
        detail: str,
        identity_id: int | None,
        figures: _Figures,
        release: list[Parcel] | None,
        dropoff: Parcel | None,
    ) -> str:
        with transaction.atomic():
            opened: list[Parcel] = []
            if release:
                opened = parcels_release(
                    parcels=release,
                    actor=Actor(kind=ActorKind.RECIPIENT, label="face scan"),
                    reason="pickup",
                )
                message = f"Compartment {_doors(opened) or '-'} is opening."
            if dropoff is not None:
                try:
                    with transaction.atomic():
                        opened = [
                            parcel_dropoff_start(
                                parcel=dropoff,
                                actor=Actor(kind=ActorKind.SENDER, label="face scan"),
                            )
                        ]
                    message = (
                        f"Compartment {_doors(opened)} is opening: put parcel "
                        f"{dropoff.tracking_number} in and close the door."
                    )
                except ApplicationError as exc:
                    outcome, message, success, detail = (
                        Outcome.UNAVAILABLE,
                        exc.message,
                        False,
                        exc.code,
                    )
            _record(
                cabinet_id=cabinet_id,
                method=AttemptMethod.FACE,
                event_id=scan_id,
                purpose=purpose,
                success=success,
                outcome=outcome,
                detail=detail[:255],
                identity_id=identity_id,
                distance=figures.distance,
                second_distance=figures.second_distance,
                threshold=figures.threshold,
                margin=figures.margin,
                parcels=opened or None,
            )
            _answer(
                cabinet_id,
                protocol.make_face_result(scan_id=scan_id, outcome=outcome, message=message),
            )
        return outcome

    if _stale(parse_datetime(taken_at) if taken_at else None):
        return finish(
            Outcome.RETAKE, "That took too long: please look at the camera again.", detail="stale"
        )
    if _locked_out(cabinet_id=cabinet_id, method=AttemptMethod.FACE):
        return finish(
            Outcome.LOCKED_OUT,
            "Face scan is paused here after several failures: use your pickup code.",
        )

    pickup = purpose == protocol.ScanPurpose.PICKUP
    candidate_ids = (
        recipients_waiting_at(cabinet_id=cabinet_id)
        if pickup
        else senders_expected_at(cabinet_id=cabinet_id)
    )
    if not candidate_ids:
        message = (
            "No parcel here can be opened by face: use your pickup code."
            if pickup
            else "No drop-off is expected here for you."
        )
        return finish(
            Outcome.USE_CODE if pickup else Outcome.NO_MATCH, message, detail="no_candidates"
        )

    try:
        probe = face_probe(image=base64.b64decode(image_b64)).encoding
    except FaceRefused as refusal:
        if refusal.code == "too_dark" and not light_on:
            return finish(
                Outcome.RETAKE_LIGHT_ON,
                "Too dark: the light is switching on, please look at the camera.",
                detail=refusal.code,
            )
        return finish(Outcome.RETAKE, refusal.message, detail=refusal.code)

    decision = face_identify(probe=probe, identity_ids=candidate_ids)
    if decision.decision == "no_candidates":
        # Waiting recipients exist, but none enrolled (or all withdrew consent).
        message = (
            "No parcel here can be opened by face: use your pickup code."
            if pickup
            else "No enrolled sender is expected here."
        )
        return finish(
            Outcome.USE_CODE if pickup else Outcome.NO_MATCH, message, detail="no_candidates"
        )
    figures = _Figures(
        decision.best_distance, decision.second_distance, decision.threshold, decision.margin
    )
    if not decision.is_match or decision.best_key is None:
        message = (
            "Face not recognised: try again or use your pickup code."
            if pickup
            else "Face not recognised: a drop-off needs the sender's verified face."
        )
        return finish(Outcome.NO_MATCH, message, detail=decision.decision, figures=figures)
    identity_id = int(str(decision.best_key))

    if pickup:
        parcels = list(parcels_ready_at(cabinet_id=cabinet_id).filter(recipient_id=identity_id))
        return finish(
            Outcome.UNLOCKING,
            "",
            success=True,
            identity_id=identity_id,
            figures=figures,
            release=parcels,
        )

    identity = Identity.objects.get(pk=identity_id)
    if identity.real_name_verified_at is None:
        return finish(
            Outcome.NO_MATCH,
            "Drop-off needs a real-name verified identity: verify your ID first.",
            detail="not_verified",
            identity_id=identity_id,
            figures=figures,
        )
    verified = face_verify(probe=probe, identity=identity)
    figures = _Figures(
        verified.distance, decision.second_distance, verified.threshold, decision.margin
    )
    if not verified.verified:
        return finish(
            Outcome.NO_MATCH,
            "Face not confirmed against your verified ID.",
            detail="verify_failed",
            identity_id=identity_id,
            figures=figures,
        )
    parcel = (
        Parcel.objects.filter(
            cabinet_id=cabinet_id,
            sender_id=identity_id,
            direction=ParcelDirection.DROPOFF,
            status=ParcelStatus.ANNOUNCED,
            compartment__isnull=True,
        )
        .order_by("created_at")
        .first()
    )
    if parcel is None:
        return finish(
            Outcome.NO_MATCH,
            "No drop-off is expected here for you.",
            detail="no_parcel",
            identity_id=identity_id,
            figures=figures,
        )
    return finish(
        Outcome.UNLOCKING,
        "",
        success=True,
        identity_id=identity_id,
        figures=figures,
        dropoff=parcel,
    )
