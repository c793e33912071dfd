from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.servers import platform_base_url
from identity.models import Identity
from identity.phones import phone_normalize_or_none
from identity.services import enrollment_link


class Command(BaseCommand):
    help = (
        "Print a single-use enrollment link for the person with this phone number (demo, "
        "support); redeeming it texts a login code to that phone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "phone", help="e.g. +8613800000001, or a national number: 13800000001 (+86 assumed)"
        )
        parser.add_argument(
            "--base-url",
            default=None,
            help="where the page is served (default: PUBLIC_BASE_URL, which is"
            " http://127.0.0.1:$PORT unless set; PORT defaults to 8000)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        phone = phone_normalize_or_none(options["phone"])
        identity = Identity.objects.filter(phone=phone).first() if phone else None
        if identity is None:
            raise CommandError(f"Nobody has the phone number {options['phone']}.")
        base_url = (options["base_url"] or platform_base_url()).rstrip("/")
        self.stdout.write(base_url + enrollment_link(identity=identity))
