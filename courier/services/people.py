"""Courier PINs and carrier API keys."""

from __future__ import annotations

import secrets

from django.contrib.auth.hashers import make_password
from django.utils import timezone

from courier.models import CarrierApiKey, Courier


def courier_pin_reset(*, courier: Courier) -> str:
    """A new 4-digit PIN for the cabinet screen, returned in clear once."""
    pin = f"{secrets.randbelow(10**4):04d}"
    courier.pin_hash = make_password(pin)
    courier.save(update_fields=["pin_hash"])
    return pin


def carrier_api_key_revoke(*, key: CarrierApiKey) -> None:
    CarrierApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
