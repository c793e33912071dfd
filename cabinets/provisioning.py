"""Bulk provisioning: a CSV of cabinets (thousands of rows) upserted by serial.

Every row is validated on its own; a bad row is reported (row number, field, message) and
skipped, the good rows are applied together. Importing the same file twice changes nothing.
Each cabinet created by an import gets its link credential, returned once in the result and
never stored: only its hash is. The work is a fixed number of bulk statements per 1,000 rows,
never a query per row.
"""

from __future__ import annotations

import csv
import io
import re
import zoneinfo
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils.text import slugify
from django.utils.translation import gettext

from cabinets.models import (
    SERIAL_PATTERN,
    Cabinet,
    CabinetImport,
    CabinetState,
    CabinetTag,
    Compartment,
    CompartmentSize,
    serial_validator,
)
from cabinets.services.credentials import IssuedCredential, cabinet_credentials_issue_bulk
from core.actors import Actor
from core.errors import ApplicationError

REQUIRED_COLUMNS = (
    "serial",
    "name",
    "address",
    "city",
    "region",
    "latitude",
    "longitude",
    "hardware_model",
)
OPTIONAL_COLUMNS = ("time_zone", "compartments", "tags")
# The fields an import sets on a cabinet; state and link fields are never touched.
CABINET_FIELDS = (*REQUIRED_COLUMNS[1:], "time_zone")
# Compartment labels per size: "S:6,M:4,L:2" -> A01..A06 (S), B01..B04 (M), C01..C02 (L).
SIZE_ROW_LETTER = {CompartmentSize.S: "A", CompartmentSize.M: "B", CompartmentSize.L: "C"}
_LAYOUT_ITEM = re.compile(r"^(?P<size>[SML]):(?P<count>\d{1,2})$")
CHUNK = 1000

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RowError:
    row: int  # line in the file, the header being line 1
    field: str
    message: str
    serial: str = ""  # as written on the line (empty when the line has none)


@dataclass
class ImportResult:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    compartments_created: int = 0
    errors: list[RowError] = field(default_factory=list)
    # Shown once to the operator; never stored.
    credentials: list[IssuedCredential] = field(default_factory=list)
    audit_id: int | None = None
    dry_run: bool = False

    @property
    def error_rows(self) -> int:
        return len({e.row for e in self.errors})


@dataclass
class _Row:
    line: int
    values: dict[str, Any]
    layout: list[tuple[str, str]] | None
    tags: list[str]


def layout_parse(text: str) -> list[tuple[str, str]]:
    """ "S:6,M:4,L:2" -> [("A01", "S"), ..., ("C02", "L")]."""
    layout: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in (part.strip().upper() for part in text.split(",") if part.strip()):
        match = _LAYOUT_ITEM.match(item.replace(" ", ""))
        if match is None:
            raise ValueError(
                gettext("%(item)r is not SIZE:COUNT with SIZE one of S, M, L") % {"item": item}
            )
        size, count = match["size"], int(match["count"])
        if size in seen:
            raise ValueError(gettext("size %(size)s appears twice") % {"size": size})
        seen.add(size)
        letter = SIZE_ROW_LETTER[CompartmentSize(size)]
        layout.extend((f"{letter}{i:02d}", size) for i in range(1, count + 1))
    if not layout:
        raise ValueError(gettext("a layout needs at least one compartment"))
    return layout


def credentials_csv(credentials: Iterable[IssuedCredential]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["serial", "credential", "signing_key_hex"])
    for issued in credentials:
        writer.writerow([issued.serial, issued.credential, issued.signing_key_hex])
    return out.getvalue()


def import_errors_csv(errors: Iterable[RowError]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["line", "serial", "field", "message"])
    for error in errors:
        writer.writerow([error.row, error.serial, error.field, error.message])
    return out.getvalue()


def _validate(
    line: int, raw: dict[str, str], zones: set[str]
) -> tuple[_Row | None, list[RowError]]:
    errors: list[RowError] = []
    values: dict[str, Any] = {}
    written_serial = (raw.get("serial") or "").strip()[:64]

    def fail(name: str, message: str) -> None:
        errors.append(RowError(line, name, message, serial=written_serial))

    for name in REQUIRED_COLUMNS:
        value = (raw.get(name) or "").strip()
        if not value:
            fail(name, gettext("is required"))
        values[name] = value
    serial = values["serial"]
    if serial and not re.match(SERIAL_PATTERN, serial):
        fail("serial", str(serial_validator.message))
    for name, limit in (
        ("name", 120),
        ("address", 255),
        ("city", 80),
        ("region", 80),
        ("hardware_model", 64),
    ):
        if len(values[name]) > limit:
            fail(name, gettext("at most %(limit)d characters") % {"limit": limit})
    for name, bound in (("latitude", 90), ("longitude", 180)):
        if not values[name]:
            continue
        try:
            number = Decimal(values[name]).quantize(Decimal("0.000001"))
        except InvalidOperation:
            fail(name, gettext("is not a number"))
            continue
        if not -bound <= number <= bound:
            fail(name, gettext("must be between -%(bound)s and %(bound)s") % {"bound": bound})
        values[name] = number
    values["time_zone"] = (raw.get("time_zone") or "").strip() or "Asia/Shanghai"
    if values["time_zone"] not in zones:
        fail(
            "time_zone",
            gettext("%(zone)r is not a known IANA time zone") % {"zone": values["time_zone"]},
        )
    layout = None
    if (raw.get("compartments") or "").strip():
        try:
            layout = layout_parse(raw["compartments"])
        except ValueError as exc:
            fail("compartments", str(exc))
    tags = []
    for tag in (t.strip() for t in (raw.get("tags") or "").replace(";", ",").split(",")):
        if not tag:
            continue
        slug = slugify(tag)[:40]
        if not slug:
            fail("tags", gettext("%(tag)r is not a usable tag") % {"tag": tag})
        tags.append(slug)
    if errors:
        return None, errors
    return _Row(line=line, values=values, layout=layout, tags=tags), []


def _read(text: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    fieldnames = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in REQUIRED_COLUMNS if name not in fieldnames]
    if missing:
        raise ApplicationError(
            gettext("The CSV has no column %(columns)s.") % {"columns": ", ".join(missing)},
            code="invalid_csv",
            details={
                "missing_columns": missing,
                "expected": [*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS],
            },
        )
    reader.fieldnames = fieldnames
    for raw in reader:
        # line_num counts physical lines, so a quoted newline does not shift the numbers.
        yield reader.line_num, {k: v for k, v in raw.items() if isinstance(k, str)}


def cabinets_import(
    *,
    text: str,
    actor: Actor,
    filename: str = "",
    progress: Progress | None = None,
    dry_run: bool = False,
) -> ImportResult:
    """Upsert the file's cabinets. A dry run does all of it, counts and errors included, in
    a transaction it then rolls back: nothing is stored, no credential issued or shown, no
    audit row."""
    result = ImportResult(dry_run=dry_run)
    zones = zoneinfo.available_timezones()
    rows: dict[str, _Row] = {}
    for line, raw in _read(text):
        result.rows += 1
        if result.rows > settings.CABINET_IMPORT_MAX_ROWS:
            raise ApplicationError(
                gettext("At most %(count)d rows per import.")
                % {"count": settings.CABINET_IMPORT_MAX_ROWS},
                code="too_many_rows",
            )
        row, errors = _validate(line, raw, zones)
        if row is None:
            result.errors.extend(errors)
            continue
        serial = row.values["serial"]
        if serial in rows:
            result.errors.append(
                RowError(
                    line,
                    "serial",
                    gettext("%(serial)s is already on line %(line)d")
                    % {"serial": serial, "line": rows[serial].line},
                    serial,
                )
            )
            continue
        rows[serial] = row

    with transaction.atomic():
        good = list(rows.values())
        for start in range(0, len(good), CHUNK):
            _apply_chunk(good[start : start + CHUNK], result=result, actor=actor)
            if progress:
                progress(min(start + CHUNK, len(good)), len(good))
        result.errors.sort(key=lambda e: e.row)
        audit = CabinetImport.objects.create(
            filename=filename[:255],
            rows=result.rows,
            created=result.created,
            updated=result.updated,
            unchanged=result.unchanged,
            errors=result.error_rows,
            **actor.event_fields(),
        )
        result.audit_id = audit.pk
        if dry_run:
            transaction.set_rollback(True)
            result.credentials, result.audit_id = [], None
    if progress and not good:
        progress(0, 0)
    return result


def _apply_chunk(chunk: list[_Row], *, result: ImportResult, actor: Actor) -> None:
    by_serial = {row.values["serial"]: row for row in chunk}
    existing = {c.serial: c for c in Cabinet.objects.filter(serial__in=by_serial)}
    existing_layouts: dict[int, dict[str, str]] = {}
    for cabinet_id, label, size in Compartment.objects.filter(
        cabinet_id__in=[c.pk for c in existing.values()]
    ).values_list("cabinet_id", "label", "size"):
        existing_layouts.setdefault(cabinet_id, {})[label] = size

    to_create: list[Cabinet] = []
    to_update: list[Cabinet] = []
    layouts: list[tuple[Cabinet, list[tuple[str, str]]]] = []
    for serial, row in by_serial.items():
        cabinet = existing.get(serial)
        if cabinet is None:
            cabinet = Cabinet(serial=serial, state=CabinetState.PROVISIONING)
            for name in CABINET_FIELDS:
                setattr(cabinet, name, row.values[name])
            to_create.append(cabinet)
            if row.layout:
                layouts.append((cabinet, row.layout))
            continue
        current = existing_layouts.get(cabinet.pk, {})
        missing: list[tuple[str, str]] = []
        if row.layout:
            wanted = dict(row.layout)
            conflicts = sorted(
                label
                for label, size in current.items()
                if label not in wanted or wanted[label] != size
            )
            if conflicts:
                # Compartments may hold parcels: an import never removes or resizes one.
                result.errors.append(
                    RowError(
                        row.line,
                        "compartments",
                        gettext(
                            "would remove or resize existing compartments %(labels)s;"
                            " change them in the admin"
                        )
                        % {
                            "labels": ", ".join(conflicts[:5]) + ("…" if len(conflicts) > 5 else "")
                        },
                        serial,
                    )
                )
                continue
            missing = [(label, size) for label, size in row.layout if label not in current]
        changed = [name for name in CABINET_FIELDS if getattr(cabinet, name) != row.values[name]]
        for name in changed:
            setattr(cabinet, name, row.values[name])
        if changed:
            to_update.append(cabinet)
        if missing:
            layouts.append((cabinet, missing))
        if changed or missing:
            result.updated += 1
        else:
            result.unchanged += 1

    Cabinet.objects.bulk_create(to_create)
    if to_update:
        Cabinet.objects.bulk_update(to_update, [*CABINET_FIELDS, "updated_at"])
    result.created += len(to_create)

    compartments = []
    for cabinet, layout in layouts:
        for label, size in layout:
            compartment = Compartment(cabinet=cabinet, label=label, size=size)
            compartment.apply_size_spec()
            compartments.append(compartment)
    Compartment.objects.bulk_create(compartments, batch_size=2000)
    result.compartments_created += len(compartments)

    _tag(chunk, {**existing, **{c.serial: c for c in to_create}})
    result.credentials.extend(cabinet_credentials_issue_bulk(cabinets=to_create, actor=actor))


def _tag(chunk: list[_Row], cabinets: dict[str, Cabinet]) -> None:
    names = sorted({tag for row in chunk for tag in row.tags})
    if not names:
        return
    CabinetTag.objects.bulk_create([CabinetTag(name=name) for name in names], ignore_conflicts=True)
    tag_ids = dict(CabinetTag.objects.filter(name__in=names).values_list("name", "pk"))
    through = CabinetTag.cabinets.through
    links = [
        through(cabinettag_id=tag_ids[tag], cabinet_id=cabinets[row.values["serial"]].pk)
        for row in chunk
        if row.values["serial"] in cabinets
        for tag in row.tags
    ]
    # Tags are only added: a tag given by hand in the admin survives a re-import.
    through.objects.bulk_create(links, ignore_conflicts=True)
