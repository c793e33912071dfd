"""Carrier API keys: `Authorization: Api-Key <prefix>.<secret>`; only a hash is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from courier.models import Carrier, CarrierApiKey

KEYWORD = "Api-Key"


def _hash(secret: str) -> str:
    # 256 random bits, not a password: a fast hash suffices and keeps every request cheap.
    return hashlib.sha256(secret.encode()).hexdigest()


def carrier_api_key_issue(*, carrier: Carrier, name: str = "default") -> str:
    """Create a key and return it in clear, once."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    CarrierApiKey.objects.create(
        carrier=carrier, name=name, prefix=prefix, secret_hash=_hash(secret)
    )
    return f"{prefix}.{secret}"


@dataclass(frozen=True)
class CarrierClient:
    """request.user for a carrier's API call."""

    carrier: Carrier
    key_prefix: str
    is_authenticated: bool = True
    is_staff: bool = False
    is_active: bool = True

    def __str__(self) -> str:
        return f"carrier:{self.carrier.code}"


class CarrierApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[CarrierClient, CarrierApiKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        keyword, _, credential = header.partition(" ")
        if keyword != KEYWORD:
            return None
        prefix, dot, secret = credential.strip().partition(".")
        if not dot:
            raise exceptions.AuthenticationFailed(gettext("Malformed API key."))
        key = (
            CarrierApiKey.objects.select_related("carrier")
            .filter(prefix=prefix, revoked_at__isnull=True, carrier__is_active=True)
            .first()
        )
        if key is None or not hmac.compare_digest(_hash(secret), key.secret_hash):
            raise exceptions.AuthenticationFailed(gettext("Unknown or revoked API key."))
        return CarrierClient(carrier=key.carrier, key_prefix=prefix), key

    def authenticate_header(self, request: Any) -> str:
        return KEYWORD
