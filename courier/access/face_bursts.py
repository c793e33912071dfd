"""Face pickup by liveness challenge (protocol 1.2): a person chooses face, the server draws
a challenge (one or two of blink / turn left / turn right, a nonce, a short expiry), the
cabinet answers with a burst of frames, a worker checks that the burst is one live person
doing what was asked (identity.liveness), matches the burst's median encoding, and the door
policy opens, asks for the last four digits of the person's phone, or refuses.

What is kept: the challenge (the nonce's hash), the hash of every frame (reuse is refused),
one AccessAttempt per burst and per confirmation with codes and distances. Never a frame."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from cabinet_agent import protocol
from cabinets.push import push_after_commit
from cabinets.reports import FaceBurst, FaceChallengeRequest, FaceConfirm
from core.actors import Actor, ActorKind
from courier.access.attempts import (
    answer_then_open,
    attempt_record,
    doors,
    locked_out,
    speaks_cabinet_language,
    stale,
)
from courier.access.faces import (
    Figures,
    Outcome,
    face_answered_again,
    face_door_answer,
    finish_once,
)
from courier.models import AttemptMethod, FaceChallenge, FaceConfirmation, FaceFrameSeen, Parcel
from courier.selectors import recipients_face_open_at
from courier.services.releases import parcels_release
from courier.tasks import face_burst_task
from identity.door_policy import DoorPolicy, door_decide

logger = logging.getLogger(__name__)

NO_FACE_HERE = gettext_noop("No parcel here can be opened by face: use your pickup code.")
# Refusals that are attacks or cannot be retried by moving: no retake is offered.
_NOT_RETAKES = frozenset({"flat_picture", "person_changed", "frozen"})


# --- the challenge (in the transaction that stored face_start) -----------------------------


def challenge_actions_draw(draw: secrets.SystemRandom) -> list[str]:
    """One or two actions, at random. A turn whenever the deployment allows one: only a
    turning head shows that it is not flat, and a blink alone is passed by a phone replaying
    a video (docs/identity.md); a blink joins it half of the time, before or after."""
    allowed = [a for a in protocol.CHALLENGE_ACTIONS if a in settings.FACE_CHALLENGE_ACTIONS]
    turns = [a for a in allowed if a != "blink"]
    if not turns:
        return ["blink"]
    actions = [draw.choice(turns)]
    if "blink" in allowed and settings.FACE_CHALLENGE_MAX_ACTIONS >= 2 and draw.random() < 0.5:
        actions.insert(draw.randrange(2), "blink")
    return actions


def _nonce_hash(nonce: str) -> str:
    return hashlib.sha256(nonce.encode("ascii")).hexdigest()


def _face_result_now(cabinet_id: int, event_id: str, outcome: str, message: str) -> None:
    answer_then_open(
        cabinet_id, protocol.make_face_result(scan_id=event_id, outcome=outcome, message=message)
    )


def face_challenge_issue(
    *, request: FaceChallengeRequest, rng: secrets.SystemRandom | None = None
) -> str:
    """Answer a face_start: a face_challenge, or a face_result saying why face is not
    offered (stale, locked out, nobody here to open for). Cheap: no face work."""
    cabinet_id = request.cabinet_id
    if stale(request.at):
        _face_result_now(cabinet_id, request.start_id, Outcome.RETAKE, _("Please try again."))
        return "stale"
    if locked_out(cabinet_id=cabinet_id, method=AttemptMethod.FACE):
        _face_result_now(
            cabinet_id,
            request.start_id,
            Outcome.LOCKED_OUT,
            _("Face scan is paused here after several failures: use your pickup code."),
        )
        return "locked_out"
    if request.purpose != protocol.ScanPurpose.PICKUP:
        _face_result_now(
            cabinet_id,
            request.start_id,
            Outcome.USE_CODE,
            _("Drop-off by face is not available with a challenge yet: please use your code."),
        )
        return "purpose"
    if not recipients_face_open_at(cabinet_id=cabinet_id):
        _face_result_now(cabinet_id, request.start_id, Outcome.USE_CODE, _(NO_FACE_HERE))
        return "no_candidates"
    actions = challenge_actions_draw(rng or secrets.SystemRandom())
    nonce = secrets.token_urlsafe(24)
    now = timezone.now()
    challenge = FaceChallenge.objects.create(
        id=uuid.uuid4(),
        cabinet_id=cabinet_id,
        start_id=request.start_id,
        purpose=request.purpose,
        nonce_hash=_nonce_hash(nonce),
        actions=actions,
        issued_at=now,
        expires_at=now + timedelta(seconds=settings.FACE_CHALLENGE_TTL_S),
    )
    from identity.liveness import ACTION_PROMPTS

    push_after_commit(
        cabinet_id,
        {
            "type": "link.send",
            "frame": protocol.make_face_challenge(
                start_id=request.start_id,
                challenge_id=str(challenge.id),
                nonce=nonce,
                actions=actions,
                expires_at=int(challenge.expires_at.timestamp() * 1000),
                message=" ".join(_(ACTION_PROMPTS[a]) for a in actions),
            ),
        },
    )
    return "challenge"


def face_burst_schedule(*, burst: FaceBurst) -> None:
    # After commit: the frames travel only in the task message, never to the database.
    face_burst_task.delay_on_commit(
        burst.cabinet_id,
        burst.burst_id,
        burst.challenge_id,
        burst.nonce,
        [[f.t_ms, base64.b64encode(f.jpeg).decode("ascii")] for f in burst.frames],
        burst.light_on,
        burst.taken_at.isoformat() if burst.taken_at else "",
    )


# --- the burst (in the worker) ------------------------------------------------------------


def _confirm_asked_again(*, cabinet_id: int, burst_id: str) -> bool:
    confirmation = FaceConfirmation.objects.filter(burst_id=burst_id).first()
    if confirmation is None:
        return False
    _confirm_prompt(cabinet_id, burst_id, confirmation)
    return True


def _confirm_prompt(cabinet_id: int, burst_id: str, confirmation: FaceConfirmation) -> None:
    answer_then_open(
        cabinet_id,
        protocol.make_face_result(
            scan_id=burst_id,
            outcome=Outcome.CONFIRM,
            message=_(_CONFIRM_PROMPT),
            confirm_id=str(confirmation.pk),
        ),
    )


_CONFIRM_PROMPT = gettext_noop("Enter the last four digits of your phone number.")


def _challenge_claim(
    *, cabinet_id: int, burst_id: str, challenge_id: str, nonce: str
) -> tuple[FaceChallenge | None, str]:
    """The challenge this burst answers, claimed for it (a nonce is single use), or why not."""
    challenge = FaceChallenge.objects.filter(pk=challenge_id, cabinet_id=cabinet_id).first()
    if challenge is None:
        return None, "unknown_challenge"
    if not hmac.compare_digest(challenge.nonce_hash, _nonce_hash(nonce)):
        return None, "bad_nonce"
    if str(challenge.burst_id or "") == burst_id:
        return challenge, ""  # this task running again
    if challenge.burst_id is not None:
        return None, "challenge_used"
    if timezone.now() > challenge.expires_at:
        return None, "challenge_expired"
    claimed = FaceChallenge.objects.filter(pk=challenge.pk, burst_id__isnull=True).update(
        burst_id=burst_id
    )
    return (challenge, "") if claimed == 1 else (None, "challenge_used")


def _frames_claim(*, cabinet_id: int, burst_id: str, digests: list[str]) -> bool:
    """Remember every frame's hash; False if one was already seen in another burst."""
    seen = FaceFrameSeen.objects.filter(digest__in=digests)
    if any(str(row.burst_id) != burst_id for row in seen):
        return False
    known = {row.digest for row in seen}
    try:
        with transaction.atomic():
            FaceFrameSeen.objects.bulk_create(
                FaceFrameSeen(digest=d, burst_id=burst_id, cabinet_id=cabinet_id)
                for d in dict.fromkeys(digests)
                if d not in known
            )
    except IntegrityError:
        return False  # another burst carried one of them at the same moment
    return True


_TOO_LONG = gettext_noop("That took too long: please try again.")
_REPLAYED = gettext_noop("Face scan failed: please use your pickup code.")


def _with_code(message: str) -> str:
    """A refusal that offers no retry, with the way that always works."""
    return _("%(message)s The pickup code always works.") % {"message": message}


@speaks_cabinet_language
def face_burst_answer(
    *,
    cabinet_id: int,
    burst_id: str,
    challenge_id: str,
    nonce: str,
    frames: list[tuple[int, str]],
    light_on: bool,
    taken_at: str,
) -> str:
    from identity.liveness import BurstFrame, BurstLimits, burst_check, frame_digest
    from identity.services import face_identify, liveness_encoder

    if face_answered_again(cabinet_id=cabinet_id, scan_id=burst_id) or _confirm_asked_again(
        cabinet_id=cabinet_id, burst_id=burst_id
    ):
        return "answered"

    def finish(outcome: str, message: str, **kwargs: object) -> str:
        return finish_once(
            cabinet_id=cabinet_id,
            scan_id=burst_id,
            purpose=protocol.ScanPurpose.PICKUP,
            outcome=outcome,
            message=message,
            **kwargs,
        )

    if stale(parse_datetime(taken_at) if taken_at else None):
        return finish(Outcome.RETAKE, _(_TOO_LONG), detail="stale")
    challenge, refusal = _challenge_claim(
        cabinet_id=cabinet_id, burst_id=burst_id, challenge_id=challenge_id, nonce=nonce
    )
    if challenge is None:
        if refusal == "challenge_expired":
            return finish(Outcome.RETAKE, _(_TOO_LONG), detail=refusal)
        return finish(Outcome.NO_MATCH, _(_REPLAYED), detail=refusal)
    decoded = [BurstFrame(t_ms=int(t), jpeg=base64.b64decode(b64)) for t, b64 in frames]
    if not _frames_claim(
        cabinet_id=cabinet_id, burst_id=burst_id, digests=[frame_digest(f.jpeg) for f in decoded]
    ):
        return finish(Outcome.NO_MATCH, _(_REPLAYED), detail="frames_reused")
    if locked_out(cabinet_id=cabinet_id, method=AttemptMethod.FACE):
        return finish(
            Outcome.LOCKED_OUT,
            _("Face scan is paused here after several failures: use your pickup code."),
        )
    candidate_ids = recipients_face_open_at(cabinet_id=cabinet_id)
    if not candidate_ids:
        return finish(Outcome.USE_CODE, _(NO_FACE_HERE), detail="no_candidates")

    # Slow (dlib on every frame): outside any transaction.
    result = burst_check(
        decoded,
        challenge.actions,
        encoder=liveness_encoder(),
        limits=BurstLimits(
            min_frames=protocol.BURST_MIN_FRAMES,
            max_frames=protocol.BURST_MAX_FRAMES,
            max_frame_bytes=protocol.BURST_MAX_FRAME_BYTES,
            max_total_bytes=protocol.BURST_MAX_TOTAL_BYTES,
            min_span_ms=protocol.BURST_MIN_SPAN_MS,
            max_span_ms=protocol.BURST_MAX_SPAN_MS,
        ),
    )
    logger.info("face burst %s: liveness %s", burst_id, result.code)
    if not result.ok or result.encoding is None:
        outcome = Outcome.NO_MATCH if result.code in _NOT_RETAKES else Outcome.RETAKE
        message = _(result.message)
        if outcome == Outcome.NO_MATCH:
            message = _with_code(message)
        return finish(outcome, message, detail=result.explain())

    decision = face_identify(probe=result.encoding, identity_ids=candidate_ids)
    door = door_decide(
        match=decision,
        waiting=len(candidate_ids),
        live=True,
        policy=DoorPolicy.from_settings(),
    )

    def confirm(*, identity_id: int, parcels: list[Parcel], detail: str) -> str:
        return _confirm_ask(
            cabinet_id=cabinet_id,
            burst_id=burst_id,
            identity_id=identity_id,
            parcels=parcels,
            detail=detail,
            figures=Figures.of(decision),
        )

    return face_door_answer(
        finish=finish,
        cabinet_id=cabinet_id,
        door=door,
        decision=decision,
        detail=f"live; {door.explain()}",
        confirm=confirm,
    )


def _confirm_ask(
    *,
    cabinet_id: int,
    burst_id: str,
    identity_id: int,
    parcels: list[Parcel],
    detail: str,
    figures: Figures,
) -> str:
    try:
        with transaction.atomic():
            confirmation = FaceConfirmation.objects.create(
                id=uuid.uuid4(),
                cabinet_id=cabinet_id,
                burst_id=burst_id,
                identity_id=identity_id,
                expires_at=timezone.now() + timedelta(seconds=settings.FACE_CONFIRM_TTL_S),
            )
            confirmation.parcels.set(parcels)
            # Not a failure: it does not count toward the lockout; nothing opens yet.
            attempt_record(
                cabinet_id=cabinet_id,
                method=AttemptMethod.FACE,
                event_id=burst_id,
                purpose=protocol.ScanPurpose.PICKUP,
                success=True,
                outcome=Outcome.CONFIRM,
                detail=detail[:255],
                identity_id=identity_id,
                distance=figures.distance,
                second_distance=figures.second_distance,
                threshold=figures.threshold,
                margin=figures.margin,
            )
            _confirm_prompt(cabinet_id, burst_id, confirmation)
    except IntegrityError:
        if _confirm_asked_again(cabinet_id=cabinet_id, burst_id=burst_id):
            return "answered"
        raise
    return Outcome.CONFIRM


# --- the confirmation (in the transaction that stored face_confirm) -------------------------


def face_confirm_answer(*, confirm: FaceConfirm) -> str:
    """One try: the right digits open the matched person's doors; wrong ones lock face for
    those parcels (their pickup code still works). Checked against the matched person only."""
    from identity.models import Identity

    cabinet_id, event_id = confirm.cabinet_id, confirm.event_id
    confirmation = FaceConfirmation.objects.filter(
        pk=confirm.confirm_id, cabinet_id=cabinet_id
    ).first()

    def answer(outcome: str, message: str, *, success: bool, detail: str, **kw: object) -> str:
        attempt_record(
            cabinet_id=cabinet_id,
            method=AttemptMethod.FACE,
            event_id=event_id,
            purpose="confirm",
            success=success,
            outcome=outcome,
            detail=detail,
            identity_id=confirmation.identity_id if confirmation else None,
            **kw,  # type: ignore[arg-type]
        )
        return outcome

    if confirmation is None:
        _face_result_now(cabinet_id, event_id, Outcome.NO_MATCH, _(_REPLAYED))
        return answer(Outcome.NO_MATCH, _(_REPLAYED), success=False, detail="unknown_confirm")
    phone = Identity.objects.filter(pk=confirmation.identity_id).values_list("phone", flat=True)
    expected = (phone.first() or "")[-4:]
    right = len(expected) == 4 and hmac.compare_digest(expected, confirm.digits)
    expired = timezone.now() > confirmation.expires_at
    # Compare-and-set: one answer per confirmation, whoever sends it.
    claimed = FaceConfirmation.objects.filter(pk=confirmation.pk, answered_at__isnull=True).update(
        answered_at=timezone.now(),
        answer_event_id=event_id,
        success=right and not expired,
    )
    if claimed != 1:
        message = _with_code(_("This confirmation was already used."))
        _face_result_now(cabinet_id, event_id, Outcome.NO_MATCH, message)
        return answer(Outcome.NO_MATCH, message, success=False, detail="confirm_used")
    if expired:
        message = _with_code(_("That took too long."))
        _face_result_now(cabinet_id, event_id, Outcome.NO_MATCH, message)
        return answer(Outcome.NO_MATCH, message, success=False, detail="confirm_expired")
    if not right:
        message = _with_code(
            _("Those digits are not right: face pickup is locked for this parcel.")
        )
        _face_result_now(cabinet_id, event_id, Outcome.NO_MATCH, message)
        return answer(Outcome.NO_MATCH, message, success=False, detail="wrong_digits")
    released = parcels_release(
        parcels=list(confirmation.parcels.all()),
        actor=Actor(kind=ActorKind.RECIPIENT, label="face scan, confirmed"),
        reason="pickup",
    )
    opened = released.parcels
    message = (
        _("Compartment %(doors)s is opening.") % {"doors": doors(opened)}
        if opened
        else _("Your compartment is already opening.")
    )
    answer_then_open(
        cabinet_id,
        protocol.make_face_result(scan_id=event_id, outcome=Outcome.UNLOCKING, message=message),
        released.commands,
    )
    return answer(
        Outcome.UNLOCKING, message, success=True, detail="confirmed", parcels=opened or None
    )


def face_challenges_purge(*, before: datetime) -> int:
    """Forget frame hashes and challenges older than `before` (FACE_BURST_MEMORY_DAYS): a
    recorded burst is refused for that long, and nothing else of it is kept."""
    frames, _ = FaceFrameSeen.objects.filter(seen_at__lt=before).delete()
    challenges, _ = FaceChallenge.objects.filter(expires_at__lt=before).delete()
    return frames + challenges
