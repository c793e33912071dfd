"""Bearer tokens for people: random, stored only as a keyed hash in `AccessToken`, so they
expire, are used once (links) and can be revoked. The plain token exists only in the message
or response that carries it."""

from __future__ import annotations

import secrets

from core.errors import PermissionDenied
from identity.crypto import keyed_hash


class InvalidEnrollmentToken(PermissionDenied):
    code = "invalid_token"


def token_new() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return keyed_hash(purpose="access-token", value=token)
