"""Face templates encrypted at rest, and keyed hashes of resident ID numbers.

Templates use MultiFernet over FACE_TEMPLATE_KEYS: the first key encrypts, every key
decrypts, so a new key can be put in front and old rows re-encrypted at leisure
(`manage.py face_templates_rotate`). Outside production, where the setting is required,
an empty setting means a key derived from SECRET_KEY.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

import numpy as np
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from identity.embeddings import ENCODING_SIZE

_DTYPE = np.dtype("<f8")


class TemplateKeyError(Exception):
    """A stored template cannot be decrypted with any configured key."""


def _derived(purpose: str) -> bytes:
    return hashlib.sha256(f"{purpose}:{settings.SECRET_KEY}".encode()).digest()


def _template_keys() -> tuple[str, ...]:
    keys = tuple(key.strip() for key in settings.FACE_TEMPLATE_KEYS if key.strip())
    if keys:
        return keys
    return (base64.urlsafe_b64encode(_derived("face-templates")).decode(),)


@lru_cache(maxsize=4)
def _multi_fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def _fernet() -> MultiFernet:
    return _multi_fernet(_template_keys())


def template_encrypt(encoding: np.ndarray) -> bytes:
    vector = np.asarray(encoding, dtype=_DTYPE).reshape(-1)
    if vector.shape != (ENCODING_SIZE,):
        raise ValueError(f"expected a ({ENCODING_SIZE},) encoding, got {vector.shape}")
    return _fernet().encrypt(vector.tobytes())


def template_decrypt(token: bytes | memoryview) -> np.ndarray:
    try:
        raw = _fernet().decrypt(bytes(token))
    except InvalidToken as exc:
        raise TemplateKeyError("no configured key decrypts this template") from exc
    return np.frombuffer(raw, dtype=_DTYPE).astype(np.float64)


def template_reencrypt(token: bytes | memoryview) -> bytes:
    """The same template under the newest key (a no-op in meaning, a new token in bytes)."""
    try:
        return _fernet().rotate(bytes(token))
    except InvalidToken as exc:
        raise TemplateKeyError("no configured key decrypts this template") from exc


def template_uses_newest_key(token: bytes | memoryview) -> bool:
    try:
        Fernet(_template_keys()[0].encode()).decrypt(bytes(token))
    except InvalidToken:
        return False
    return True


def keyed_hash(*, purpose: str, value: str) -> str:
    """HMAC-SHA256 under ID_NUMBER_HASH_KEY (or a SECRET_KEY-derived key outside production)."""
    configured = settings.ID_NUMBER_HASH_KEY
    key = configured.encode() if configured else _derived("id-number-hash")
    return hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()
