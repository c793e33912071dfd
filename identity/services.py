"""Writes for identity: consent, enrollment and its photos, login codes, real-ID checks, and
the face operations the parcel flows call (`face_probe`, `face_identify`, `face_verify`,
`enrollment_link`), and `identity_for_phone` for the carrier API."""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from core.actors import Actor
from core.errors import ApplicationError, Conflict, PermissionDenied, RateLimited
from core.ratelimit import Limit, throttle
from core.transitions import check_transition
from identity.crypto import keyed_hash, template_encrypt, template_reencrypt
from identity.embeddings import FaceEncoder, get_default_encoder
from identity.face_pipeline import (
    FaceRefused,
    FaceResult,
    PhotoLimits,
    QualityPolicy,
    inspect_photo,
    process_photo,
)
from identity.id_numbers import id_number_hash
from identity.liveness import LandmarkEncoder, get_default_landmark_encoder
from identity.matching import (
    MAX_TEMPLATES_PER_PERSON,
    MatchDecision,
    VerifyDecision,
    face_distances,
    match_probe,
    verify_one_to_one,
)
from identity.models import (
    ENROLLMENT_OPEN_STATUSES,
    ENROLLMENT_TRANSITIONS,
    AccessToken,
    AccessTokenPurpose,
    BiometricConsent,
    ConsentStatus,
    EnrollmentEvent,
    EnrollmentPhoto,
    EnrollmentStatus,
    FaceEnrollment,
    FacePhotoReceipt,
    FaceTemplate,
    Identity,
    OneTimeCode,
    PhotoStatus,
    RealIdCheck,
    RealIdDecision,
)
from identity.phones import phone_normalize, phone_normalize_or_none
from identity.selectors import consent_current, face_candidates, identity_has_face
from identity.tasks import (
    enrollment_photo_process_task,
    real_id_check_process_task,
    sms_send_task,
)
from identity.tokens import InvalidEnrollmentToken, token_hash, token_new

logger = logging.getLogger(__name__)

WORKER = Actor.system("face worker")


class PhotoRefused(ApplicationError):
    """A photo refused before it reached a worker; `code` is the pipeline's refusal code."""

    @classmethod
    def of(cls, refusal: FaceRefused) -> PhotoRefused:
        return cls(gettext(refusal.message), code=refusal.code, details=refusal.details)


class ConsentRequired(PermissionDenied):
    code = "consent_required"


class PhoneNotProven(PermissionDenied):
    code = "phone_not_proven"


# --- The face operations -----------------------------------------------------------------


def photo_limits() -> PhotoLimits:
    return PhotoLimits(
        max_bytes=settings.FACE_PHOTO_MAX_BYTES,
        max_pixels=settings.FACE_PHOTO_MAX_PIXELS,
        decode_max_side=settings.FACE_DECODE_MAX_SIDE,
    )


def face_encoder() -> FaceEncoder:
    return get_default_encoder(num_jitters=settings.FACE_ENCODER_JITTERS)


def liveness_encoder() -> LandmarkEncoder:
    """Detection, 68 landmarks and encodings for liveness bursts (identity.liveness)."""
    return get_default_landmark_encoder()


def face_probe(*, image: bytes) -> FaceResult:
    """The one face in a photo (an enrollment selfie, a cabinet's scan, an ID portrait), or
    `FaceRefused` with a code and a message for the person. Slow (~0.2 s): never call it
    inside a transaction."""
    return process_photo(
        image, encoder=face_encoder(), limits=photo_limits(), quality=QualityPolicy()
    )


def face_identify(*, probe: np.ndarray, identity_ids: Iterable[int]) -> MatchDecision:
    """Who among `identity_ids` (e.g. the recipients with parcels in this cabinet) is in
    `probe`, under the settings' threshold and margin."""
    decision = match_probe(
        probe,
        face_candidates(identity_ids=identity_ids),
        threshold=settings.FACE_MATCH_THRESHOLD,
        margin=settings.FACE_MATCH_MARGIN,
    )
    logger.info("face identify: %s; nearest identity %s", decision.explain(), decision.nearest_key)
    return decision


def face_verify(*, probe: np.ndarray, identity: Identity) -> VerifyDecision:
    """Is `probe` this person (1:1, the stricter verify threshold)?"""
    encodings = [
        encoding
        for candidate in face_candidates(identity_ids=[identity.pk])
        for encoding in candidate.encodings
    ]
    decision = verify_one_to_one(probe, encodings, threshold=settings.FACE_VERIFY_THRESHOLD)
    logger.info("face verify identity %s: %s", identity.pk, decision.explain())
    return decision


def identity_for_phone(*, phone: str) -> Identity:
    """The person with this phone number, created bare if new. For carriers: nothing they
    send besides the number reaches this shared row (their contact data stays on the
    parcel), and a number is trusted only once its owner proves it with a texted code."""
    person, _ = Identity.objects.get_or_create(phone=phone)
    return person


# --- Links and tokens ----------------------------------------------------------------------


def _token_issue(*, identity: Identity, purpose: str, ttl_s: int) -> str:
    token = token_new()
    AccessToken.objects.create(
        identity=identity,
        purpose=purpose,
        token_hash=token_hash(token),
        expires_at=timezone.now() + timedelta(seconds=ttl_s),
    )
    return token


def enrollment_link(*, identity: Identity) -> str:
    """Path of the enrollment page with a single-use token for this person in the fragment
    (`/enroll/link/#<token>`): browsers never send a fragment, so the token stays out of
    access logs; the page's script posts it. Valid ENROLLMENT_LINK_MAX_AGE_S. Redeeming it
    texts a login code to the person's phone: the link alone enrolls nobody."""
    token = _token_issue(
        identity=identity,
        purpose=AccessTokenPurpose.LINK,
        ttl_s=settings.ENROLLMENT_LINK_MAX_AGE_S,
    )
    return reverse("identity:enroll-link") + "#" + token


def enrollment_link_redeem(*, token: str) -> Identity:
    """Use up a link token (once: a compare-and-set on `used_at`) and return its person."""
    now = timezone.now()
    hashed = token_hash(token.strip())
    row = AccessToken.objects.filter(token_hash=hashed, purpose=AccessTokenPurpose.LINK).first()
    used = (
        AccessToken.objects.filter(
            token_hash=hashed,
            purpose=AccessTokenPurpose.LINK,
            used_at__isnull=True,
            revoked_at__isnull=True,
            expires_at__gt=now,
        ).update(used_at=now)
        if row is not None
        else 0
    )
    if row is None or used != 1:
        raise InvalidEnrollmentToken(
            gettext(
                "This enrollment link is not valid any more (links work once and expire): "
                "log in with your phone number instead."
            )
        )
    return row.identity


def api_token_issue(*, identity: Identity) -> str:
    """The API credential after a phone login, valid ENROLLMENT_API_TOKEN_TTL_S."""
    return _token_issue(
        identity=identity,
        purpose=AccessTokenPurpose.API,
        ttl_s=settings.ENROLLMENT_API_TOKEN_TTL_S,
    )


def access_tokens_purge(*, now: Any = None) -> int:
    """Delete link and API token rows that expired more than a week ago: past expiry they
    open nothing, and a week keeps them for support questions."""
    cutoff = (now or timezone.now()) - timedelta(days=7)
    deleted, _ = AccessToken.objects.filter(expires_at__lt=cutoff).delete()
    return deleted


def tokens_revoke(*, identity: Identity) -> int:
    """Revoke every outstanding link and API token of this person (logout, withdrawal)."""
    return AccessToken.objects.filter(identity=identity, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def photo_read(*, upload: UploadedFile) -> bytes:
    """The bytes of an uploaded photo, refusing an oversized one before reading it."""
    if upload.size is not None and upload.size > settings.FACE_PHOTO_MAX_BYTES:
        raise PhotoRefused.of(
            FaceRefused(
                "too_large",
                details={"bytes": upload.size, "max_bytes": settings.FACE_PHOTO_MAX_BYTES},
            )
        )
    return upload.read()


def _photo_precheck(data: bytes) -> str:
    try:
        return inspect_photo(data, limits=photo_limits())
    except FaceRefused as refusal:
        raise PhotoRefused.of(refusal) from refusal


def _lock_identity(identity_id: int) -> Identity:
    # Every write to one person's face data locks their identity row first, then
    # enrollments, then photos: one order, so a worker storing a template and the person
    # withdrawing consent cannot deadlock, and the second to arrive sees the first's result.
    return Identity.objects.select_for_update().get(pk=identity_id)


# --- Consent -------------------------------------------------------------------------------


def identity_language_remember(*, identity: Identity, language: str) -> bool:
    """The language of the page a person logs in, consents or sends a photo on (the page's
    switch or their browser) becomes theirs for texts and emails (`Identity.language`).
    Only the person's own requests call this; a carrier never sets it. Unsupported codes are
    ignored. True when it changed."""
    code = language.lower()
    if code not in dict(settings.LANGUAGES) or identity.language == code:
        return False
    changed = Identity.objects.filter(pk=identity.pk).exclude(language=code).update(language=code)
    identity.language = code
    return changed == 1


def consent_give(*, identity: Identity, source: str = "web") -> BiometricConsent:
    """Idempotent: a person who has consented keeps their consent row. Needs a proven phone."""
    with transaction.atomic():
        _phone_proven_required(_lock_identity(identity.pk))
        existing = consent_current(identity=identity)
        if existing is not None:
            return existing
        return BiometricConsent.objects.create(
            identity=identity,
            status=ConsentStatus.GIVEN,
            policy_version=settings.BIOMETRIC_POLICY_VERSION,
            given_at=timezone.now(),
            source=source[:16],
        )


def consent_withdraw(*, identity: Identity, actor: Actor) -> int:
    """Withdraw consent and delete every template and photo at once. Returns the number of
    templates deleted."""
    with transaction.atomic():
        _lock_identity(identity.pk)
        deleted = _face_data_delete_locked(
            identity_id=identity.pk, actor=actor, reason="consent withdrawn"
        )
        BiometricConsent.objects.filter(identity=identity, status=ConsentStatus.GIVEN).update(
            status=ConsentStatus.WITHDRAWN, withdrawn_at=timezone.now()
        )
        tokens_revoke(identity=identity)
    logger.info("identity %s withdrew consent; %s templates deleted", identity.pk, deleted)
    return deleted


def face_data_delete(*, identity: Identity, actor: Actor, reason: str = "") -> int:
    """Delete templates, photos and pending ID portraits now; consent stays as it is."""
    with transaction.atomic():
        _lock_identity(identity.pk)
        deleted = _face_data_delete_locked(
            identity_id=identity.pk, actor=actor, reason=reason or "face data deleted"
        )
    logger.info("identity %s: face data deleted, %s templates", identity.pk, deleted)
    return deleted


def _face_data_delete_locked(*, identity_id: int, actor: Actor, reason: str) -> int:
    enrollments = FaceEnrollment.objects.select_for_update().filter(
        identity_id=identity_id, status__in=ENROLLMENT_OPEN_STATUSES
    )
    for enrollment in enrollments.order_by("pk"):
        _enrollment_move(enrollment, EnrollmentStatus.DELETED, actor=actor, reason=reason)
    EnrollmentPhoto.objects.filter(enrollment__identity_id=identity_id).delete()
    RealIdCheck.objects.filter(identity_id=identity_id, decision=RealIdDecision.PENDING).delete()
    _, per_model = FaceTemplate.objects.filter(identity_id=identity_id).delete()
    return per_model.get(FaceTemplate._meta.label, 0)


# --- Enrollment ----------------------------------------------------------------------------


def _enrollment_move(
    enrollment: FaceEnrollment,
    to_status: str,
    *,
    actor: Actor,
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    """Move a row the caller has locked, and record the event."""
    from_status = enrollment.status
    check_transition(
        ENROLLMENT_TRANSITIONS, kind="face enrollment", current=from_status, target=to_status
    )
    enrollment.status = to_status
    enrollment.save(update_fields=["status", "updated_at"])
    EnrollmentEvent.objects.create(
        enrollment=enrollment,
        from_status=from_status,
        to_status=to_status,
        reason=reason[:255],
        data=data or {},
        **actor.event_fields(),
    )


def enrollment_transition(
    *,
    enrollment_id: int,
    to_status: str,
    actor: Actor,
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> FaceEnrollment:
    """The one way an enrollment changes status: lock, check the map, save, audit."""
    with transaction.atomic():
        # Locked so that two moves of one enrollment are checked against the map in turn.
        enrollment = FaceEnrollment.objects.select_for_update().get(pk=enrollment_id)
        _enrollment_move(enrollment, to_status, actor=actor, reason=reason, data=data)
    return enrollment


def _phone_proven_required(identity: Identity) -> None:
    if identity.phone_verified_at is None:
        raise PhoneNotProven(
            gettext("Confirm your phone number with the code we text you before enrolling a face.")
        )


def _consent_required(identity: Identity) -> BiometricConsent:
    consent = consent_current(identity=identity)
    if consent is None:
        raise ConsentRequired(
            gettext(
                "Give consent to biometric processing before sending photos; "
                "your pickup code works either way."
            )
        )
    return consent


def enrollment_start(*, identity: Identity, actor: Actor) -> FaceEnrollment:
    """The person's open enrollment, or a new one. Needs a proven phone and consent."""
    with transaction.atomic():
        _phone_proven_required(_lock_identity(identity.pk))
        consent = _consent_required(identity)
        enrollment = (
            FaceEnrollment.objects.select_for_update()
            .filter(identity=identity, status__in=ENROLLMENT_OPEN_STATUSES)
            .first()
        )
        if enrollment is not None:
            return enrollment
        enrollment = FaceEnrollment.objects.create(
            identity=identity, consent=consent, status=EnrollmentStatus.PENDING
        )
        EnrollmentEvent.objects.create(
            enrollment=enrollment, to_status=EnrollmentStatus.PENDING, **actor.event_fields()
        )
    return enrollment


def enrollment_photo_submit(*, identity: Identity, data: bytes, actor: Actor) -> EnrollmentPhoto:
    """Queue a selfie for a worker. Only cheap checks here (bytes, type, header, pixel count,
    completeness); detection and encoding happen in `enrollment_photo_process`."""
    _consent_required(identity)
    fmt = _photo_precheck(data)
    with transaction.atomic():
        # enrollment_start locks the identity row: the receipts below are counted and
        # added under that lock, so parallel uploads cannot each pass the last free slot.
        enrollment = enrollment_start(identity=identity, actor=actor)
        received = FacePhotoReceipt.objects.filter(
            identity=identity, at__gte=timezone.now() - timedelta(days=1)
        ).count()
        if received >= settings.FACE_PHOTOS_PER_DAY:
            raise RateLimited(
                gettext("You sent %(count)d photos in the last 24 hours: try again tomorrow.")
                % {"count": received},
                code="too_many_photos",
            )
        photos = enrollment.photos.all()
        if photos.count() >= settings.FACE_PHOTOS_PER_ENROLLMENT:
            raise RateLimited(
                gettext(
                    "Too many photos for one enrollment: delete your face data and start again."
                ),
                code="too_many_photos",
            )
        if (
            photos.filter(status__in=[PhotoStatus.PENDING, PhotoStatus.ACCEPTED]).count()
            >= MAX_TEMPLATES_PER_PERSON
        ):
            raise Conflict(
                gettext("You already sent %(n)s good photos: that is enough.")
                % {"n": MAX_TEMPLATES_PER_PERSON},
                code="enough_photos",
            )
        photo = EnrollmentPhoto.objects.create(
            enrollment=enrollment, data=data, content_type=fmt.lower(), size_bytes=len(data)
        )
        FacePhotoReceipt.objects.create(identity=identity)
        if enrollment.status != EnrollmentStatus.PROCESSING:
            _enrollment_move(
                enrollment, EnrollmentStatus.PROCESSING, actor=actor, reason="photo received"
            )
        # After commit: a worker that picked the id up earlier would not find the row.
        enrollment_photo_process_task.delay_on_commit(photo.pk)
    return photo


def enrollment_photo_process(*, photo_id: int) -> str:
    """Turn one pending photo into a template or a refusal, then settle the enrollment.
    Idempotent: a photo that is no longer pending is left alone. Returns the outcome."""
    photo = (
        EnrollmentPhoto.objects.select_related("enrollment")
        .filter(pk=photo_id, status=PhotoStatus.PENDING)
        .first()
    )
    if photo is None or photo.data is None:
        return "skipped"
    # Deliberately outside a transaction: detection and encoding take a few hundred ms and
    # must not hold the person's row locks.
    result, refusal = _probe_or_refusal(bytes(photo.data), what=f"photo {photo_id}")

    with transaction.atomic():
        _lock_identity(photo.enrollment.identity_id)
        enrollment = FaceEnrollment.objects.select_for_update().get(pk=photo.enrollment_id)
        locked = (
            EnrollmentPhoto.objects.select_for_update()
            .filter(pk=photo_id, status=PhotoStatus.PENDING)
            .first()
        )
        if locked is None:
            return "skipped"
        if (
            enrollment.status == EnrollmentStatus.DELETED
            or consent_current(identity=enrollment.identity) is None
        ):
            locked.delete()
            return "discarded"

        fields = ["status", "processed_at", "quality"]
        if result is not None:
            refusal = enrollment_template_spread_check(
                identity_id=enrollment.identity_id, encoding=result.encoding
            )
            result = None if refusal is not None else result
        if result is not None:
            locked.template = FaceTemplate.objects.create(
                identity_id=enrollment.identity_id,
                enrollment=enrollment,
                model_name=result.model_name,
                model_version=result.model_version,
                embedding_encrypted=template_encrypt(result.encoding),
                quality=result.quality,
            )
            locked.status = PhotoStatus.ACCEPTED
            locked.quality = result.quality
            fields.append("template")
        else:
            assert refusal is not None
            locked.status = PhotoStatus.REFUSED
            locked.refusal_code = refusal.code
            locked.refusal_message = refusal.message[:255]
            locked.quality = _plain(refusal.details)
            fields += ["refusal_code", "refusal_message"]
        locked.processed_at = timezone.now()
        if settings.FACE_PHOTO_RETENTION_S <= 0:
            locked.data = None
            fields.append("data")
        locked.save(update_fields=fields)
        _enrollment_settle(enrollment)
    logger.info(
        "photo %s of enrollment %s: %s %s",
        photo_id,
        enrollment.pk,
        locked.status,
        locked.refusal_code,
    )
    return str(locked.status)


def enrollment_template_spread_check(
    *, identity_id: int, encoding: np.ndarray
) -> FaceRefused | None:
    """A `too_similar` refusal when a new template is within FACE_TEMPLATE_MIN_SPREAD of one
    the person already has: photos from one moment (a burst, the same selfie again) add
    nothing a door could use, so the person is asked for one from another moment instead.
    The caller holds the person's lock, so two photos processed at once are compared."""
    existing = [
        known
        for candidate in face_candidates(identity_ids=[identity_id])
        for known in candidate.encodings
    ]
    if not existing:
        return None
    nearest = float(face_distances(existing, encoding).min())
    floor = settings.FACE_TEMPLATE_MIN_SPREAD
    if nearest >= floor:
        return None
    return FaceRefused(
        "too_similar",
        details={"distance": round(nearest, 3), "min_distance": floor},
    )


def _plain(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in details.items() if isinstance(v, int | float | str | bool | list)}


def _probe_or_refusal(data: bytes, *, what: str) -> tuple[FaceResult | None, FaceRefused | None]:
    try:
        return face_probe(image=data), None
    except FaceRefused as refusal:
        return None, refusal
    except Exception:
        # A bug or a broken file that slipped past the checks must still end in an answer
        # for the person, not in a photo that stays "processing" for ever.
        logger.exception("%s: the face pipeline failed", what)
        return None, FaceRefused("processing_error")


def _enrollment_settle(enrollment: FaceEnrollment) -> None:
    """Enrolled once a photo is accepted, failed when every photo was refused; the caller
    holds the enrollment's lock."""
    if enrollment.status != EnrollmentStatus.PROCESSING:
        return
    photos = enrollment.photos.all()
    if photos.filter(status=PhotoStatus.PENDING).exists():
        return
    if photos.filter(status=PhotoStatus.ACCEPTED).exists():
        _enrollment_move(enrollment, EnrollmentStatus.ENROLLED, actor=WORKER, reason="accepted")
        return
    codes = sorted(set(photos.values_list("refusal_code", flat=True)))
    _enrollment_move(
        enrollment,
        EnrollmentStatus.FAILED,
        actor=WORKER,
        reason="every photo refused: " + ", ".join(codes),
        data={"refusal_codes": codes},
    )


def enrollment_photos_purge(*, now: Any = None) -> int:
    """Drop raw bytes of processed photos older than FACE_PHOTO_RETENTION_S."""
    cutoff = (now or timezone.now()) - timedelta(seconds=max(settings.FACE_PHOTO_RETENTION_S, 0))
    return (
        EnrollmentPhoto.objects.exclude(status=PhotoStatus.PENDING)
        .filter(data__isnull=False, processed_at__lte=cutoff)
        .update(data=None)
    )


def face_templates_reencrypt(*, batch_size: int = 500) -> int:
    """Re-encrypt every template under the newest FACE_TEMPLATE_KEYS key (key rotation)."""
    done = 0
    last_pk = 0
    while True:
        with transaction.atomic():
            # Locked batch by batch: a deletion racing the rotation either happens first (the
            # row is gone) or waits; nobody reads a half-written template.
            batch = list(
                FaceTemplate.objects.select_for_update()
                .filter(pk__gt=last_pk)
                .order_by("pk")
                .only("pk", "embedding_encrypted")[:batch_size]
            )
            for template in batch:
                template.embedding_encrypted = template_reencrypt(template.embedding_encrypted)
                template.save(update_fields=["embedding_encrypted"])
        if not batch:
            return done
        done += len(batch)
        last_pk = batch[-1].pk


# --- Phone login ---------------------------------------------------------------------------


def _code_hash(identity_id: int, code: str) -> str:
    return keyed_hash(purpose="login-code", value=f"{identity_id}:{code}")


def _phone_clean(phone: str) -> str:
    try:
        return phone_normalize(phone)
    except ValidationError as exc:
        raise ApplicationError(exc.messages[0], code="invalid_phone") from exc


def _login_limits(kind: str) -> tuple[Limit, Limit, Limit]:
    per = settings.OTP_THROTTLE[kind]
    return (
        Limit(f"otp-{kind}-address", per["address"], 3600),
        Limit(f"otp-{kind}-phone", per["phone"], 3600),
        Limit(f"otp-{kind}-global", per["global"], 3600),
    )


def _login_throttle(*, kind: str, phone: str, client_address: str) -> None:
    """Per client address, per number and for the whole platform, counted alike for known
    and unknown numbers: the answer says nothing about who is registered."""
    by_address, by_phone, overall = _login_limits(kind)
    throttle(
        [(by_address, client_address), (by_phone, phone), (overall, "all")],
        message=gettext("Too many attempts: wait an hour and try again."),
    )


def login_code_send(*, phone: str, client_address: str) -> None:
    """Text a 6-digit login code to a known number. Unknown numbers take the same path up to
    the row insert and get the same answer, throttles included, so the page does not tell
    who has parcels here; the SMS itself goes out from a worker, off the request's clock."""
    phone = _phone_clean(phone)
    _login_throttle(kind="send", phone=phone, client_address=client_address)
    identity = Identity.objects.filter(phone=phone).first()
    code = f"{secrets.randbelow(10**6):06d}"
    hashed = _code_hash(identity.pk if identity else 0, code)
    if identity is None:
        logger.info("login code requested for an unknown number")
        return
    with transaction.atomic():
        OneTimeCode.objects.create(
            identity=identity,
            code_hash=hashed,
            expires_at=timezone.now() + timedelta(seconds=settings.OTP_TTL_S),
        )
        minutes = max(1, settings.OTP_TTL_S // 60)
        # Not worded like a pickup code: this one logs in to the face-pickup page and opens
        # no locker. In the language of the page that asked for it.
        text = gettext(
            "%(code)s is your login code for the face-pickup web page (valid %(minutes)s min)."
            " It is not a pickup code and opens no locker. Never share it."
        ) % {"code": code, "minutes": minutes}
        # After commit: a code that was rolled back must never reach the phone.
        sms_send_task.delay_on_commit(identity.phone, text)


def login_code_verify(*, phone: str, code: str, client_address: str) -> Identity:
    """The person whose newest unexpired code this is; each wrong guess uses up an attempt,
    and guesses are throttled like sends. Success proves the phone."""
    invalid = ApplicationError(gettext("The code is wrong or has expired."), code="invalid_code")
    phone = phone_normalize_or_none(phone) or "".join(phone.split())
    _login_throttle(kind="verify", phone=phone, client_address=client_address)
    identity = Identity.objects.filter(phone=phone).first()
    code = code.strip()
    if not code.isdigit():
        raise invalid
    now = timezone.now()
    with transaction.atomic():
        # Locked: concurrent guesses each count against the attempt limit. An unknown
        # number runs the same query (finding nothing) and the same hash, so the time to
        # answer does not tell it apart.
        row = (
            OneTimeCode.objects.select_for_update()
            .filter(identity=identity, used_at__isnull=True)
            .order_by("-created_at", "-id")
            .first()
        )
        expected = _code_hash(identity.pk if identity else 0, code)
        if row is None or row.expires_at <= now or row.attempts >= settings.OTP_MAX_ATTEMPTS:
            ok = False
        else:
            ok = hmac.compare_digest(row.code_hash, expected)
            row.attempts += 1
            row.used_at = now if ok else None
            row.save(update_fields=["attempts", "used_at"])
        if ok and identity is not None and identity.phone_verified_at is None:
            Identity.objects.filter(pk=identity.pk, phone_verified_at__isnull=True).update(
                phone_verified_at=now
            )
            identity.phone_verified_at = now
    if not ok or identity is None:
        raise invalid
    return identity


def login_revoke(*, identity: Identity) -> int:
    """Logout: outstanding links, API tokens and unused login codes stop working."""
    with transaction.atomic():
        OneTimeCode.objects.filter(identity=identity, used_at__isnull=True).update(
            expires_at=timezone.now()
        )
        return tokens_revoke(identity=identity)


# --- Real-name verification ------------------------------------------------------------------


def real_id_check_submit(*, identity: Identity, id_number: str, portrait: bytes) -> RealIdCheck:
    """Validate the ID number now; compare the ID portrait with the enrolled face in a worker."""
    number_hash = id_number_hash(id_number)
    _photo_precheck(portrait)
    # The face first: whether a number is registered is told only to someone who has
    # consented and enrolled, never to anyone with a login who is probing numbers.
    if not identity_has_face(identity=identity):
        raise Conflict(
            gettext("Enroll your face first: the ID photo is compared with it."),
            code="no_enrolled_face",
        )
    if Identity.objects.filter(id_number_hash=number_hash).exclude(pk=identity.pk).exists():
        raise Conflict(
            gettext("This ID number is registered to another person."), code="id_number_taken"
        )
    with transaction.atomic():
        check = RealIdCheck.objects.create(
            identity=identity, id_number_hash=number_hash, portrait=portrait
        )
        # After commit, like every task: the worker must find the row.
        real_id_check_process_task.delay_on_commit(check.pk)
    return check


def real_id_check_process(*, check_id: int) -> str:
    """Match the ID portrait 1:1 with the person's templates at FACE_VERIFY_THRESHOLD; on
    success mark the identity real-name verified. Idempotent."""
    check = (
        RealIdCheck.objects.select_related("identity")
        .filter(pk=check_id, decision=RealIdDecision.PENDING)
        .first()
    )
    if check is None or check.portrait is None:
        return "skipped"
    # Outside a transaction, as for enrollment photos.
    result, refusal = _probe_or_refusal(bytes(check.portrait), what=f"real-ID check {check_id}")
    verdict = face_verify(probe=result.encoding, identity=check.identity) if result else None

    with transaction.atomic():
        identity = _lock_identity(check.identity_id)
        locked = (
            RealIdCheck.objects.select_for_update()
            .filter(pk=check_id, decision=RealIdDecision.PENDING)
            .first()
        )
        if locked is None:
            return "skipped"
        now = timezone.now()
        locked.portrait = None
        locked.decided_at = now
        if verdict is None:
            assert refusal is not None
            locked.decision = RealIdDecision.REFUSED
            locked.refusal_code, locked.refusal_message = refusal.code, refusal.message[:255]
        else:
            locked.distance, locked.threshold = verdict.distance, verdict.threshold
            if verdict.distance is None:
                locked.decision = RealIdDecision.NO_REFERENCE
            elif not verdict.verified:
                locked.decision = RealIdDecision.NOT_VERIFIED
            elif (
                Identity.objects.filter(id_number_hash=locked.id_number_hash)
                .exclude(pk=identity.pk)
                .exists()
            ):
                locked.decision = RealIdDecision.REFUSED
                locked.refusal_code = "id_number_taken"
                locked.refusal_message = "This ID number is registered to another person."
            else:
                locked.decision = RealIdDecision.VERIFIED
                identity.id_number_hash = locked.id_number_hash
                identity.real_name_verified_at = now
                identity.save(update_fields=["id_number_hash", "real_name_verified_at"])
        locked.save()
    logger.info(
        "real-ID check %s of identity %s: %s (%s)",
        check_id,
        identity.pk,
        locked.decision,
        verdict.explain() if verdict else refusal.code if refusal else "",
    )
    return str(locked.decision)
