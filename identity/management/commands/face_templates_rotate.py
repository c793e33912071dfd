from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from identity.services import face_templates_reencrypt


class Command(BaseCommand):
    help = (
        "Re-encrypt every face template with the first key of FACE_TEMPLATE_KEYS. Rotate by "
        "putting a new key first, running this, then removing the old key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args: Any, **options: Any) -> None:
        done = face_templates_reencrypt(batch_size=options["batch_size"])
        self.stdout.write(f"{done} face templates re-encrypted with the newest key.")
