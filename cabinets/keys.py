"""Cabinet credentials and command-signing keys."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings


def _master_key() -> bytes:
    configured = settings.CABINET_SIGNING_MASTER_KEY
    if configured:
        return configured.encode()
    # Development and tests only: production refuses to start without the setting.
    return hashlib.sha256(f"cabinet-signing:{settings.SECRET_KEY}".encode()).digest()


def signing_key_for(key_id: str) -> bytes:
    """Each credential has its own signing key, derived rather than stored: rotating the
    credential rotates the key, and a database leak reveals no signing key."""
    return hmac.new(
        _master_key(), f"cabinet-signing-key:{key_id}".encode(), hashlib.sha256
    ).digest()
