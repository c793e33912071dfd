"""A recipient (pickup) or a verified sender (drop-off) looks at the cabinet's camera. Runs in
a Celery task: face work happens outside any transaction, then one short transaction records
the attempt, authorises the doors and queues the answer before the unlocks."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from cabinet_agent import protocol
from cabinets.models import CabinetCommand
from core.actors import Actor, ActorKind
from core.errors import ApplicationError
from courier.access.attempts import (
    answer_then_open,
    attempt_record,
    doors,
    locked_out,
    speaks_cabinet_language,
    stale,
)
from courier.models import AccessAttempt, AttemptMethod, Parcel, ParcelDirection, ParcelStatus
from courier.selectors import (
    attempt_unlocks_never_sent,
    parcels_face_open_at,
    recipients_face_open_at,
    senders_expected_at,
)
from courier.services.deposits import parcel_dropoff_start
from courier.services.releases import parcels_release
from identity.door_policy import DoorDecision, DoorPolicy, door_decide
from identity.matching import MatchDecision

logger = logging.getLogger(__name__)
Outcome = protocol.FaceOutcome

SINGLE_FRAME_REFUSED = gettext_noop(
    "Face pickup is not available on this cabinet's software version: please use your pickup code."
)
NOT_RECOGNISED = gettext_noop("Face not recognised: try again or use your pickup code.")


# What to say when a scan's answer is repeated (its first message is not stored).
_FACE_AGAIN: dict[str, str] = {
    Outcome.UNLOCKING: gettext_noop("Your compartment is opening."),
    Outcome.NO_MATCH: NOT_RECOGNISED,
    Outcome.USE_CODE: gettext_noop("Please use your pickup code."),
    Outcome.LOCKED_OUT: gettext_noop("Face scan is paused here: use your pickup code."),
    Outcome.RETAKE: gettext_noop("Please look at the camera again."),
    Outcome.CONFIRM: gettext_noop("Enter the last four digits of your phone number."),
}


def face_answered_again(*, cabinet_id: int, scan_id: str) -> bool:
    """The face task acknowledges late, so a worker that dies after committing its answer
    has it run again. The scan was decided once (its attempt row, its doors): repeat that
    outcome to the cabinet and open nothing more. A worker that died between that commit and
    its pushes left the unlocks stored but never sent: they follow the answer now (the same
    commands: a cabinet runs each id once)."""
    attempt = (
        AccessAttempt.objects.filter(event_id=scan_id, method=AttemptMethod.FACE)
        .only("outcome", "cabinet_id")
        .first()
    )
    if attempt is None:
        return False
    logger.info("face scan %s already answered (%s): not matched again", scan_id, attempt.outcome)
    answer_then_open(
        cabinet_id,
        protocol.make_face_result(
            scan_id=scan_id,
            outcome=attempt.outcome,
            message=_(_FACE_AGAIN.get(attempt.outcome, gettext_noop("Please try again."))),
        ),
        attempt_unlocks_never_sent(attempt=attempt),
    )
    return True


@dataclass(frozen=True)
class Figures:
    distance: float | None = None
    second_distance: float | None = None
    threshold: float | None = None
    margin: float | None = None

    @classmethod
    def of(cls, decision: MatchDecision) -> Figures:
        return cls(
            decision.best_distance, decision.second_distance, decision.threshold, decision.margin
        )


def _finish(
    *,
    cabinet_id: int,
    scan_id: str,
    purpose: str,
    outcome: str,
    message: str,
    success: bool = False,
    detail: str = "",
    identity_id: int | None = None,
    figures: Figures = Figures(),
    release: list[Parcel] | None = None,
    dropoff: Parcel | None = None,
) -> str:
    with transaction.atomic():
        opened: list[Parcel] = []
        commands: list[CabinetCommand] = []
        if release:
            released = parcels_release(
                parcels=release,
                actor=Actor(kind=ActorKind.RECIPIENT, label="face scan"),
                reason="pickup",
            )
            opened, commands = released.parcels, released.commands
            message = (
                _("Compartment %(doors)s is opening.") % {"doors": doors(opened)}
                if opened
                else _("Your compartment is already opening.")
            )
        if dropoff is not None:
            try:
                opening = parcel_dropoff_start(
                    parcel=dropoff, actor=Actor(kind=ActorKind.SENDER, label="face scan")
                )
                opened, commands = [opening.parcel], [opening.command]
                message = _(
                    "Compartment %(doors)s is opening: put parcel %(parcel)s in and close the door."
                ) % {"doors": doors(opened), "parcel": dropoff.tracking_number}
            except ApplicationError as exc:
                outcome, message, success, detail = (
                    Outcome.UNAVAILABLE,
                    exc.message,
                    False,
                    exc.code,
                )
        attempt_record(
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
        answer_then_open(
            cabinet_id,
            protocol.make_face_result(scan_id=scan_id, outcome=outcome, message=message),
            commands,
        )
    return outcome


def finish_once(*, cabinet_id: int, scan_id: str, **kwargs: object) -> str:
    """`_finish`, or, when another run of this task recorded the scan first (one attempt per
    event id; this run's doors and answer were rolled back with it), that run's answer."""
    try:
        return _finish(cabinet_id=cabinet_id, scan_id=scan_id, **kwargs)  # type: ignore[arg-type]
    except IntegrityError:
        if face_answered_again(cabinet_id=cabinet_id, scan_id=scan_id):
            return "answered"
        raise


class Finish(Protocol):
    def __call__(self, outcome: str, message: str, **kwargs: Any) -> str: ...


class ConfirmAsk(Protocol):
    def __call__(self, *, identity_id: int, parcels: list[Parcel], detail: str) -> str: ...


def face_door_answer(
    *,
    finish: Finish,
    cabinet_id: int,
    door: DoorDecision,
    decision: MatchDecision,
    detail: str,
    confirm: ConfirmAsk | None = None,
) -> str:
    """What the door policy decided, answered: open the person's doors, ask for their phone
    digits (`confirm`; None where the protocol has no confirm step: refused), or refuse. On
    "open" the person is `best_key`; on "confirm" the digits are checked against the nearest
    person only (identity.door_policy)."""
    figures = Figures.of(decision)
    person = decision.best_key if door.action == "open" else decision.nearest_key
    if door.action == "refuse" or person is None or (door.action == "confirm" and not confirm):
        if door.action == "confirm":
            detail = f"no confirm step in this protocol version; {detail}"
        return finish(Outcome.NO_MATCH, _(NOT_RECOGNISED), detail=detail, figures=figures)
    identity_id = int(str(person))
    parcels = list(parcels_face_open_at(cabinet_id=cabinet_id).filter(recipient_id=identity_id))
    if door.action == "confirm" and confirm is not None:
        return confirm(identity_id=identity_id, parcels=parcels, detail=detail)
    return finish(
        Outcome.UNLOCKING,
        "",
        success=True,
        identity_id=identity_id,
        figures=figures,
        release=parcels,
        detail=detail,
    )


@speaks_cabinet_language
def face_scan_answer(
    *,
    cabinet_id: int,
    scan_id: str,
    purpose: str,
    image_b64: str,
    light_on: bool,
    taken_at: str,
) -> str:
    from identity.face_pipeline import FaceRefused
    from identity.models import Identity
    from identity.services import face_identify, face_probe, face_verify

    if face_answered_again(cabinet_id=cabinet_id, scan_id=scan_id):
        return "answered"

    def finish(outcome: str, message: str, **kwargs: object) -> str:
        return finish_once(
            cabinet_id=cabinet_id,
            scan_id=scan_id,
            purpose=purpose,
            outcome=outcome,
            message=message,
            **kwargs,
        )

    if not settings.FACE_ALLOW_SINGLE_FRAME:
        # One still picture cannot tell a person from a printed photo (protocol 1.2).
        return finish(Outcome.USE_CODE, _(SINGLE_FRAME_REFUSED), detail="single_frame")
    if stale(parse_datetime(taken_at) if taken_at else None):
        return finish(
            Outcome.RETAKE,
            _("That took too long: please look at the camera again."),
            detail="stale",
        )
    if locked_out(cabinet_id=cabinet_id, method=AttemptMethod.FACE):
        return finish(
            Outcome.LOCKED_OUT,
            _("Face scan is paused here after several failures: use your pickup code."),
        )

    pickup = purpose == protocol.ScanPurpose.PICKUP
    candidate_ids = (
        recipients_face_open_at(cabinet_id=cabinet_id)
        if pickup
        else senders_expected_at(cabinet_id=cabinet_id)
    )
    no_candidates = (
        _("No parcel here can be opened by face: use your pickup code.")
        if pickup
        else _("No drop-off is expected here for you.")
    )
    if not candidate_ids:
        return finish(
            Outcome.USE_CODE if pickup else Outcome.NO_MATCH, no_candidates, detail="no_candidates"
        )

    try:
        probe = face_probe(image=base64.b64decode(image_b64)).encoding
    except FaceRefused as refusal:
        if refusal.code == "too_dark" and not light_on:
            return finish(
                Outcome.RETAKE_LIGHT_ON,
                _("Too dark: the light is switching on, please look at the camera."),
                detail=refusal.code,
            )
        return finish(Outcome.RETAKE, _(refusal.message), detail=refusal.code)

    decision = face_identify(probe=probe, identity_ids=candidate_ids)
    if decision.decision == "no_candidates":
        # Waiting recipients exist, but none enrolled (or all withdrew consent).
        message = no_candidates if pickup else _("No enrolled sender is expected here.")
        return finish(
            Outcome.USE_CODE if pickup else Outcome.NO_MATCH, message, detail="no_candidates"
        )
    figures = Figures.of(decision)
    if pickup:
        # An operator who allows single frames waives liveness for them (FACE_ALLOW_SINGLE_FRAME);
        # the door policy still decides. Protocol 1.0/1.1 has no confirm step: confirm refuses.
        door = door_decide(
            match=decision, waiting=len(candidate_ids), live=True, policy=DoorPolicy.from_settings()
        )
        return face_door_answer(
            finish=finish,
            cabinet_id=cabinet_id,
            door=door,
            decision=decision,
            detail=f"single frame; {door.explain()}",
        )
    if not decision.is_match or decision.best_key is None:
        return finish(
            Outcome.NO_MATCH,
            _("Face not recognised: a drop-off needs the sender's verified face."),
            detail=decision.decision,
            figures=figures,
        )
    identity_id = int(str(decision.best_key))

    identity = Identity.objects.get(pk=identity_id)
    if identity.real_name_verified_at is None:
        return finish(
            Outcome.NO_MATCH,
            _("Drop-off needs a real-name verified identity: verify your ID first."),
            detail="not_verified",
            identity_id=identity_id,
            figures=figures,
        )
    verified = face_verify(probe=probe, identity=identity)
    figures = Figures(
        verified.distance, decision.second_distance, verified.threshold, decision.margin
    )
    if not verified.verified:
        return finish(
            Outcome.NO_MATCH,
            _("Face not confirmed against your verified ID."),
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
            _("No drop-off is expected here for you."),
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
