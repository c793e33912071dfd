"""`manage.py import_cabinets FILE`: upsert cabinets from a CSV, with a progress bar."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cabinets.provisioning import cabinets_import, credentials_csv
from core.actors import Actor
from core.errors import ApplicationError


def progress_bar(stream: Any, width: int = 40) -> Any:
    def show(done: int, total: int) -> None:
        filled = width * done // total if total else width
        pct = 100 * done // total if total else 100
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {pct:3d}% {done}/{total}")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show


class Command(BaseCommand):
    help = (
        "Import cabinets from a CSV (columns serial,name,address,city,region,latitude,"
        "longitude,hardware_model[,time_zone,compartments,tags]); upserts by serial. "
        "Credentials of new cabinets are written once to --credentials-out (or stdout)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--credentials-out",
            type=Path,
            help="CSV file for the new cabinets' credentials (created with mode 0600; "
            "must not exist). Default: standard output.",
        )
        parser.add_argument("--actor", default="import_cabinets", help="Name in the audit row.")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Check the file and count what it would change; store nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        out: Path | None = options["credentials_out"]
        if out is not None and out.exists():
            raise CommandError(f"{out} exists: credentials are written once, to a new file.")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {path}: {exc}") from exc
        self.stderr.write(f"Importing {path}…")
        try:
            result = cabinets_import(
                text=text,
                actor=Actor.system(options["actor"]),
                filename=path.name,
                progress=progress_bar(sys.stderr),
                dry_run=options["dry_run"],
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        for error in result.errors:
            serial = f" ({error.serial})" if error.serial else ""
            self.stderr.write(f"line {error.row}{serial}: {error.field}: {error.message}")
        self.stderr.write(
            f"{result.rows} rows: {result.created} created, {result.updated} updated, "
            f"{result.unchanged} unchanged, {result.error_rows} with errors; "
            f"{result.compartments_created} compartments created."
        )
        if result.dry_run:
            self.stderr.write("Dry run: nothing was stored.")
            return
        if not result.credentials:
            return
        csv_text = credentials_csv(result.credentials)
        if out is None:
            self.stdout.write(csv_text, ending="")
        else:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(csv_text)
            self.stderr.write(
                f"{len(result.credentials)} credentials written to {out}: hand them to the "
                "installers and delete the file; they cannot be shown again."
            )
