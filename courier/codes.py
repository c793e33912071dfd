"""Pickup codes: six digits for a person, stored as a keyed hash bound to the parcel."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings

CODE_LENGTH = 6


def pickup_code_generate() -> str:
    return f"{secrets.randbelow(10**CODE_LENGTH):0{CODE_LENGTH}d}"


def pickup_code_hash(*, parcel_id: int, code: str) -> str:
    # Keyed and bound to the parcel: a leaked table cannot be reversed by trying the
    # million codes without the key, and one code cannot be replayed on another parcel.
    key = hashlib.sha256(f"pickup-code:{settings.SECRET_KEY}".encode()).digest()
    return hmac.new(key, f"{parcel_id}:{code}".encode(), hashlib.sha256).hexdigest()


def pickup_code_matches(*, parcel_id: int, code: str, code_hash: str) -> bool:
    return bool(code_hash) and hmac.compare_digest(
        pickup_code_hash(parcel_id=parcel_id, code=code), code_hash
    )
