from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from identity.door_eval import (
    DEFAULT_CABINETS,
    DEFAULT_SEED,
    DEFAULT_WAITING,
    evaluate_doors,
    format_door_report,
)
from identity.door_policy import DOOR_MODES, DoorPolicy
from identity.face_eval import evaluate_directory, format_report
from identity.services import face_encoder, photo_limits


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise CommandError(f"--waiting takes whole numbers separated by commas: {text}") from exc
    if not counts or min(counts) < 1:
        raise CommandError(f"--waiting takes counts of at least 1: {text}")
    return counts


class Command(BaseCommand):
    help = (
        "Calibrate face matching on labelled photos (DIR/<person>/<photo>) through the "
        "production pipeline and policy, then at the door: simulated cabinets through the "
        "door policy. Progress goes to stderr, the report to stdout."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory")
        parser.add_argument("--threshold", type=float, default=settings.FACE_MATCH_THRESHOLD)
        parser.add_argument("--margin", type=float, default=settings.FACE_MATCH_MARGIN)
        parser.add_argument(
            "--cache",
            help="JSON file of encodings to reuse and fill (face data: keep it under var/)",
        )
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
        parser.add_argument(
            "--cabinets", type=int, default=DEFAULT_CABINETS, help="per waiting count"
        )
        parser.add_argument(
            "--waiting", default=",".join(str(n) for n in DEFAULT_WAITING), type=str
        )
        parser.add_argument("--no-door", action="store_true", help="skip the door simulation")
        parser.add_argument("--door-mode", choices=DOOR_MODES)
        parser.add_argument("--door-open-threshold", type=float)
        parser.add_argument("--door-confirm-threshold", type=float)

    def handle(self, *args: Any, **options: Any) -> None:
        def progress(done: int, total: int, name: str) -> None:
            self.stderr.write(f"[{done}/{total}] {name}")
            self.stderr.flush()

        waiting = _counts(options["waiting"])
        if options["cabinets"] < 1:
            raise CommandError("--cabinets must be at least 1")
        policy = self._policy(options)
        try:
            report = evaluate_directory(
                options["directory"],
                encoder=face_encoder(),
                threshold=options["threshold"],
                margin=options["margin"],
                limits=photo_limits(),
                progress=progress if options["verbosity"] > 0 else None,
                cache=options["cache"],
            )
        except NotADirectoryError as exc:
            raise CommandError(f"Not a directory: {exc}") from exc
        self.stdout.write(format_report(report), ending="")
        if options["no_door"]:
            return
        doors = evaluate_doors(
            report.photos,
            policy=policy,
            match_threshold=options["threshold"],
            match_margin=options["margin"],
            waiting_counts=waiting,
            cabinets=options["cabinets"],
            seed=options["seed"],
        )
        self.stdout.write("\n" + format_door_report(doors), ending="")

    def _policy(self, options: dict[str, Any]) -> DoorPolicy:
        policy = DoorPolicy.from_settings()
        changes: dict[str, Any] = {}
        if options["door_mode"]:
            changes["mode"] = options["door_mode"]
        if options["door_open_threshold"] is not None:
            changes["open_threshold"] = options["door_open_threshold"]
        if options["door_confirm_threshold"] is not None:
            changes["confirm_threshold"] = options["door_confirm_threshold"]
        try:
            return replace(policy, **changes)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
