"""Enrolling the cast's faces for parcel-flow tests (real dlib on the shared photos)."""

from __future__ import annotations

from typing import Any

from core.actors import Actor
from identity.models import Identity
from identity.services import consent_give, enrollment_photo_submit, real_id_check_submit
from tests.identity.faces import face_bytes

# A valid resident ID number (ISO 7064 MOD 11-2 check digit X), used in public examples.
VALID_ID_NUMBER = "11010519491231002X"


def enroll(identity: Identity, *photos: str, capture: Any) -> Identity:
    consent_give(identity=identity)
    for photo in photos:
        with capture(execute=True):
            enrollment_photo_submit(
                identity=identity, data=face_bytes(photo), actor=Actor.system("test")
            )
    return identity


def verify_real_id(identity: Identity, portrait: str, *, capture: Any) -> Identity:
    with capture(execute=True):
        real_id_check_submit(
            identity=identity, id_number=VALID_ID_NUMBER, portrait=face_bytes(portrait)
        )
    identity.refresh_from_db()
    return identity
