"""Reads for identity. `face_candidates` and `identity_has_face` are what the parcel flows use."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext

from core.errors import NotFound
from identity.crypto import template_decrypt
from identity.matching import MAX_TEMPLATES_PER_PERSON, Candidate
from identity.models import (
    ENROLLMENT_OPEN_STATUSES,
    AccessToken,
    AccessTokenPurpose,
    BiometricConsent,
    ConsentStatus,
    EnrollmentPhoto,
    FaceEnrollment,
    FaceTemplate,
    Identity,
    PhotoStatus,
    RealIdCheck,
    TemplateStatus,
)
from identity.tokens import InvalidEnrollmentToken, token_hash


def _usable_templates() -> Any:
    # A template counts only while its owner's consent stands (withdrawal deletes the rows,
    # and this filter covers the moment in between) and only for a person who proved their
    # phone: a face scan may open only parcels for the number its owner has shown is theirs.
    return FaceTemplate.objects.filter(
        status=TemplateStatus.ACTIVE,
        identity__consents__status=ConsentStatus.GIVEN,
        identity__phone_verified_at__isnull=False,
    )


def face_candidates(*, identity_ids: Iterable[int]) -> list[Candidate]:
    """Decrypted active templates of the given people who have consented; key = identity id.
    People without usable templates are left out."""
    ids = {int(pk) for pk in identity_ids}
    if not ids:
        return []
    encodings: dict[int, list[np.ndarray]] = {}
    rows = (
        _usable_templates()
        .filter(identity_id__in=ids)
        .order_by("identity_id", "id")
        .values_list("identity_id", "embedding_encrypted")
    )
    for identity_id, token in rows:
        encodings.setdefault(identity_id, []).append(template_decrypt(token))
    return [Candidate(key=pk, encodings=found) for pk, found in encodings.items()]


def identity_has_face(*, identity: Identity) -> bool:
    return _usable_templates().filter(identity=identity).exists()


def consent_current(*, identity: Identity) -> BiometricConsent | None:
    return identity.consents.filter(status=ConsentStatus.GIVEN).first()


def consent_latest(*, identity: Identity) -> BiometricConsent | None:
    """The person's latest consent, given or withdrawn: what their admin page says."""
    return identity.consents.order_by("-given_at", "-pk").first()


def enrollment_current(*, identity: Identity) -> FaceEnrollment | None:
    return identity.enrollments.filter(status__in=ENROLLMENT_OPEN_STATUSES).first()


def identity_from_api_token(*, token: str) -> Identity:
    """The person an unexpired, unrevoked API token (from a phone login) belongs to."""
    row = (
        AccessToken.objects.select_related("identity")
        .filter(
            token_hash=token_hash(token),
            purpose=AccessTokenPurpose.API,
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
        )
        .first()
    )
    if row is None:
        raise InvalidEnrollmentToken(
            gettext("This token is not valid: log in with your phone again.")
        )
    return row.identity


@dataclass(frozen=True)
class PhotoView:
    id: int
    status: str
    refusal_code: str
    message: str
    created_at: str


@dataclass(frozen=True)
class EnrollmentOverview:
    """What the person may see about their own face data: statuses and reasons only."""

    name: str
    consent: bool
    policy_version: str
    status: str
    templates: int
    pending: int
    real_name_verified: bool
    photos: list[PhotoView] = field(default_factory=list)
    # How many selfies the page asks for, and why.
    photos_wanted: int = MAX_TEMPLATES_PER_PERSON
    photos_why: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "consent": self.consent,
            "policy_version": self.policy_version,
            "status": self.status,
            "templates": self.templates,
            "pending": self.pending,
            "real_name_verified": self.real_name_verified,
            "photos": [photo.__dict__ for photo in self.photos],
            "photos_wanted": self.photos_wanted,
            "photos_why": self.photos_why,
        }


def photo_view(photo: EnrollmentPhoto) -> PhotoView:
    return PhotoView(
        id=photo.pk,
        status=photo.status,
        refusal_code=photo.refusal_code,
        # Stored in English (the pipeline's text); shown in the reader's language.
        message=gettext(photo.refusal_message) if photo.refusal_message else "",
        created_at=photo.created_at.isoformat(),
    )


def enrollment_overview(*, identity: Identity) -> EnrollmentOverview:
    consent = consent_current(identity=identity)
    enrollment = enrollment_current(identity=identity)
    photos = list(enrollment.photos.defer("data")) if enrollment else []
    return EnrollmentOverview(
        name=identity.name,
        consent=consent is not None,
        policy_version=consent.policy_version if consent else "",
        status=enrollment.status if enrollment else "none",
        templates=_usable_templates().filter(identity=identity).count(),
        pending=sum(photo.status == PhotoStatus.PENDING for photo in photos),
        real_name_verified=identity.real_name_verified_at is not None,
        photos=[photo_view(photo) for photo in photos],
        **_photos_wanted(),
    )


def _photos_wanted() -> dict[str, Any]:
    wanted = min(max(settings.FACE_ENROLLMENT_PHOTOS, 1), MAX_TEMPLATES_PER_PERSON)
    if wanted == 1:
        return {"photos_wanted": 1, "photos_why": "Take one selfie, facing the camera."}
    # Measured on lfw-dev at 10 waiting: 85% of recipients got in with one template, 93%
    # with up to three (docs/face-calibration.md).
    why = (
        f"Take {wanted} selfies at different moments (another day, other light, with and "
        "without glasses): the locker compares your face with each of them, so it "
        "recognises you more often than from one photo."
    )
    return {"photos_wanted": wanted, "photos_why": why}


def enrollment_photo_get(*, identity: Identity, photo_id: int) -> EnrollmentPhoto:
    photo = (
        EnrollmentPhoto.objects.defer("data")
        .filter(pk=photo_id, enrollment__identity=identity)
        .first()
    )
    if photo is None:
        raise NotFound(gettext("No such photo."))
    return photo


def real_id_check_get(*, identity: Identity, check_id: int) -> RealIdCheck:
    check = RealIdCheck.objects.defer("portrait").filter(pk=check_id, identity=identity).first()
    if check is None:
        raise NotFound(gettext("No such check."))
    return check
