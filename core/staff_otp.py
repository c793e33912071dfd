"""The staff second factor (django_otp, TOTP): the admin login asks for an authenticator code
from everyone who has a device, and operations that issue or revoke credentials refuse a
session that did not log in with one. Devices are enrolled with `manage.py staff_totp_enroll`
(shell access), never from the admin: a stolen password must not be able to add a device."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.db import transaction
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from core.staff import staff_is_verified

OTP_REQUIRED_MESSAGE = (
    "Issuing or revoking credentials needs your second factor: log out and log in again with "
    "the code from your authenticator app (no device yet? an operator runs "
    "`manage.py staff_totp_enroll <username>`)."
)


def staff_totp_device(user: Any) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


def staff_totp_enroll(*, user: Any, name: str = "authenticator") -> TOTPDevice:
    """One TOTP device per staff user: enrolling again replaces the old one (a lost phone)."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        return TOTPDevice.objects.create(user=user, name=name, confirmed=True)


class StaffAuthenticationForm(AdminAuthenticationForm):
    otp_token = forms.CharField(
        required=False,
        max_length=12,
        label=_("Authenticator code"),
        help_text=_("Required once a device is enrolled for you."),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        user = self.get_user()
        device = staff_totp_device(user) if user is not None else None
        if device is None:
            return cleaned
        token = (cleaned.get("otp_token") or "").strip()
        allowed, _ = device.verify_is_allowed()
        if not allowed:
            raise forms.ValidationError(
                "Too many wrong authenticator codes: wait a little and try again.",
                code="otp_throttled",
            )
        # verify_token records failures (throttling with backoff) and refuses a code reused.
        if not token or not device.verify_token(token):
            raise forms.ValidationError(
                "Enter the current code from your authenticator app.", code="otp_invalid"
            )
        # django_otp's user_logged_in hook marks the session verified with this device.
        user.otp_device = device  # type: ignore[union-attr,attr-defined]
        return cleaned


def otp_refused(request: HttpRequest) -> bool:
    """True (with a message for the page) when this session did not pass the second factor."""
    if staff_is_verified(request):
        return False
    messages.error(request, OTP_REQUIRED_MESSAGE)
    return True


def otp_required(action: Callable[..., Any]) -> Callable[..., Any]:
    """For admin actions that issue or revoke credentials: an unverified session gets the
    message on the changelist and nothing happens."""

    @wraps(action)
    def checked(model_admin: Any, request: HttpRequest, queryset: Any) -> Any:
        return None if otp_refused(request) else action(model_admin, request, queryset)

    return checked
