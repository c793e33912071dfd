from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from identity.models import Identity
from identity.services import enrollment_link


class Command(BaseCommand):
    help = (
        "Print a single-use enrollment link for the person with this phone number (demo, "
        "support); redeeming it texts a login code to that phone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("phone", help="International form, e.g. +8613800000001")
        parser.add_argument(
            "--base-url", default=getattr(settings, "PUBLIC_BASE_URL", "http://127.0.0.1:8000")
        )

    def handle(self, *args: Any, **options: Any) -> None:
        identity = Identity.objects.filter(phone=options["phone"]).first()
        if identity is None:
            raise CommandError(f"Nobody has the phone number {options['phone']}.")
        self.stdout.write(options["base_url"].rstrip("/") + enrollment_link(identity=identity))
