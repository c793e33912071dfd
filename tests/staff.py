"""Staff logins for admin tests: a session verified with the second factor, as a TOTP code
typed at the admin login would leave it (core/staff_otp.py)."""

from __future__ import annotations

from typing import Any

from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from core.staff_otp import staff_totp_enroll


def totp_token(device: TOTPDevice) -> str:
    """The code an authenticator app would show now (django_otp's own TOTP)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


def verified_client(client: Client, user: Any) -> Client:
    """Log `user` in on `client` with a session that passed the second factor."""
    device = staff_totp_enroll(user=user)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    # As after the login page's redirect: the first staff request fixes the session's end
    # (core/middleware.py), so later requests cost only their own queries.
    client.get("/admin/")
    return client
