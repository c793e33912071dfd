"""Enroll a staff user's TOTP device and print what the authenticator app needs, once."""

from __future__ import annotations

from base64 import b32encode
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.staff_otp import staff_totp_enroll


class Command(BaseCommand):
    help = (
        "Enroll (or replace) a staff user's TOTP authenticator and print its otpauth:// URI and "
        "secret. The admin then asks for a code at login; credential operations need it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="authenticator", help="Device name shown in lists.")

    def handle(self, *args: Any, username: str, name: str, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username, is_staff=True).first()
        if user is None:
            raise CommandError(f"No staff user {username!r}.")
        device = staff_totp_enroll(user=user, name=name)
        self.stdout.write(f"otpauth URI: {device.config_url}")
        self.stdout.write(f"secret (base32): {b32encode(device.bin_key).decode()}")
        self.stdout.write(
            "Add it to the authenticator app now (or scan the URI as a QR code); it is not "
            "shown again. Enrolling again replaces this device."
        )
