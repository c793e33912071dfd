"""Signed, expiring enrollment tokens: in the link of a notification, and as the API's
credential after a phone login. They carry the identity id and nothing else."""

from __future__ import annotations

from django.conf import settings
from django.core import signing

from core.errors import PermissionDenied

_SALT = "identity.enrollment-token"


class InvalidEnrollmentToken(PermissionDenied):
    code = "invalid_token"


def enrollment_token_make(*, identity_id: int) -> str:
    return signing.TimestampSigner(salt=_SALT).sign(str(identity_id))


def enrollment_token_read(*, token: str) -> int:
    signer = signing.TimestampSigner(salt=_SALT)
    try:
        value = signer.unsign(token, max_age=settings.ENROLLMENT_LINK_MAX_AGE_S)
    except signing.SignatureExpired as exc:
        raise InvalidEnrollmentToken(
            "This enrollment link has expired: ask for a new one or log in with your phone.",
            code="expired_token",
        ) from exc
    except signing.BadSignature as exc:
        raise InvalidEnrollmentToken("This enrollment link is not valid.") from exc
    return int(value)
