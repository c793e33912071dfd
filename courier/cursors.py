"""Opaque, per-carrier cursors for the changes feed.

A change's id in the feed is its ParcelEvent id encrypted together with the carrier's id
(one AES block under a key derived from SECRET_KEY for this purpose only): platform-wide
event ids would tell a carrier how much every other carrier ships between two polls. The
same event always gives the same cursor (a carrier can deduplicate on it); a cursor from
another carrier, or a forged one, is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from django.conf import settings
from django.utils.translation import gettext

from core.errors import ApplicationError

_MAGIC = b"chg1"
_BLOCK = struct.Struct(">4sIQ")  # magic, carrier id, event id: one 16-byte block
# What a cursor looks like: one block in unpadded URL-safe base64, or nothing (the start).
CHANGE_CURSOR_PATTERN = r"^([A-Za-z0-9_-]{22})?$"


class InvalidCursor(ApplicationError):
    code = "invalid_cursor"


def _cipher() -> Cipher[modes.ECB]:
    key = hmac.new(settings.SECRET_KEY.encode(), b"changes-feed-cursor", hashlib.sha256).digest()
    # ECB over exactly one block is AES used as a pseudo-random permutation: deterministic
    # on purpose, and every plaintext block is distinct (it holds the event id).
    return Cipher(algorithms.AES(key), modes.ECB())


def change_cursor_encode(*, carrier_id: int, event_id: int) -> str:
    encryptor = _cipher().encryptor()
    block = encryptor.update(_BLOCK.pack(_MAGIC, carrier_id, event_id)) + encryptor.finalize()
    return base64.urlsafe_b64encode(block).rstrip(b"=").decode()


def change_cursor_decode(*, carrier_id: int, cursor: str) -> int:
    """The event id behind `cursor`; an empty cursor is the start of the feed."""
    if not cursor:
        return 0
    refused = InvalidCursor(
        gettext("Unknown cursor: pass a next_cursor this feed returned, or none to start over."),
        details={"after": [gettext("Not a cursor of this feed.")]},
    )
    try:
        block = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError) as exc:
        raise refused from exc
    if len(block) != _BLOCK.size:
        raise refused
    decryptor = _cipher().decryptor()
    magic, owner, event_id = _BLOCK.unpack(decryptor.update(block) + decryptor.finalize())
    if magic != _MAGIC or owner != carrier_id:
        raise refused
    return event_id
