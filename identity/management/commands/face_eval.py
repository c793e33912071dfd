from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from identity.face_eval import evaluate_directory, format_report
from identity.services import face_encoder, photo_limits


class Command(BaseCommand):
    help = (
        "Calibrate face matching on labelled photos (DIR/<person>/<photo>) through the "
        "production pipeline and policy. Progress goes to stderr, the report to stdout."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory")
        parser.add_argument("--threshold", type=float, default=settings.FACE_MATCH_THRESHOLD)
        parser.add_argument("--margin", type=float, default=settings.FACE_MATCH_MARGIN)

    def handle(self, *args: Any, **options: Any) -> None:
        def progress(done: int, total: int, name: str) -> None:
            self.stderr.write(f"[{done}/{total}] {name}")
            self.stderr.flush()

        try:
            report = evaluate_directory(
                options["directory"],
                encoder=face_encoder(),
                threshold=options["threshold"],
                margin=options["margin"],
                limits=photo_limits(),
                progress=progress if options["verbosity"] > 0 else None,
            )
        except NotADirectoryError as exc:
            raise CommandError(f"Not a directory: {exc}") from exc
        self.stdout.write(format_report(report), ending="")
