"""Cabinet credentials and command-signing keys."""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet
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


def _sealing_fernet() -> Fernet:
    key = hmac.new(_master_key(), b"cabinet-command-seal", hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def secret_seal(plaintext: str) -> str:
    """Encrypt a secret kept in a command payload until the cabinet has it (a new credential):
    the command table never holds it in plaintext."""
    return _sealing_fernet().encrypt(plaintext.encode()).decode()


def secret_unseal(token: str) -> str:
    return _sealing_fernet().decrypt(token.encode()).decode()
