"""Pickup codes: six digits for a person, stored as a keyed hash bound to the parcel."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

CODE_LENGTH = 6


def pickup_code_generate() -> str:
    return f"{secrets.randbelow(10**CODE_LENGTH):0{CODE_LENGTH}d}"


def _keys() -> list[bytes]:
    # Their own keys, not SECRET_KEY: rotating the session secret must not void every code
    # waiting in a cabinet, and a leaked SECRET_KEY alone does not open the code table.
    keys = settings.PICKUP_CODE_KEYS
    if not keys:
        raise ImproperlyConfigured("PICKUP_CODE_KEYS must name at least one key.")
    return [hashlib.sha256(f"pickup-code:{key}".encode()).digest() for key in keys]


def _digest(key: bytes, parcel_id: int, code: str) -> str:
    return hmac.new(key, f"{parcel_id}:{code}".encode(), hashlib.sha256).hexdigest()


def pickup_code_hash(*, parcel_id: int, code: str) -> str:
    """Under the newest key. Keyed and bound to the parcel: a leaked table cannot be
    reversed by trying the million codes without the key, and one code cannot be replayed
    on another parcel."""
    return _digest(_keys()[0], parcel_id, code)


def pickup_code_matches(*, parcel_id: int, code: str, code_hash: str) -> bool:
    """Against every key in PICKUP_CODE_KEYS: codes issued before a rotation keep working
    until the older key is removed (after the longest pickup period)."""
    if not code_hash:
        return False
    return any(hmac.compare_digest(_digest(key, parcel_id, code), code_hash) for key in _keys())
