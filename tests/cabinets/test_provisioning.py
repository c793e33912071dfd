"""CSV import of cabinets: good rows applied, bad rows reported per row, re-import idempotent,
credentials of new cabinets returned once and stored only as hashes."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cabinet_agent import protocol
from cabinets.models import Cabinet, CabinetCredential, CabinetImport, CabinetTag, Compartment
from cabinets.provisioning import RowError, cabinets_import, layout_parse
from core.actors import Actor

pytestmark = pytest.mark.django_db
HEADER = "serial,name,address,city,region,latitude,longitude,hardware_model,time_zone,compartments,tags\n"
ACTOR = Actor.system("test import")


def row(serial: str, **overrides: str) -> str:
    values = {
        "serial": serial,
        "name": f"Cabinet {serial}",
        "address": "1 Road",
        "city": "Hangzhou",
        "region": "Zhejiang",
        "latitude": "30.25",
        "longitude": "120.15",
        "hardware_model": "CB-12",
        "time_zone": "Asia/Shanghai",
        "compartments": "S:2,M:1",
        "tags": "pilot",
    }
    values.update(overrides)
    out = io.StringIO()
    csv.writer(out).writerow(values.values())
    return out.getvalue()


def test_layouts_are_parsed_into_labels() -> None:
    assert layout_parse("S:2, L:1") == [("A01", "S"), ("A02", "S"), ("C01", "L")]
    for bad in ("X:3", "S:2,S:1", "", "S2"):
        with pytest.raises(ValueError):
            layout_parse(bad)


def test_good_rows_are_applied_and_bad_rows_reported_per_row() -> None:
    text = (
        HEADER
        + row("ZJ-0001")
        + row("ZJ-0002", latitude="north")
        + row("ZJ-0003", compartments="S:2,Q:1", time_zone="Mars/Base")
        + row("ZJ-0004", name="")
        + row("ZJ-0001", name="dup")
        + row("ZJ-0005", tags="pilot, mall")
    )
    result = cabinets_import(text=text, actor=ACTOR, filename="fleet.csv")

    assert (result.rows, result.created, result.error_rows) == (6, 2, 4)
    assert result.errors == [
        RowError(3, "latitude", "is not a number", "ZJ-0002"),
        RowError(4, "time_zone", "'Mars/Base' is not a known IANA time zone", "ZJ-0003"),
        RowError(4, "compartments", "'Q:1' is not SIZE:COUNT with SIZE one of S, M, L", "ZJ-0003"),
        RowError(5, "name", "is required", "ZJ-0004"),
        RowError(6, "serial", "ZJ-0001 is already on line 2", "ZJ-0001"),
    ]
    assert set(Cabinet.objects.values_list("serial", flat=True)) == {"ZJ-0001", "ZJ-0005"}
    cabinet = Cabinet.objects.get(serial="ZJ-0005")
    assert cabinet.state == "provisioning"
    assert list(cabinet.compartments.values_list("label", "size")) == [
        ("A01", "S"),
        ("A02", "S"),
        ("B01", "M"),
    ]
    assert set(cabinet.tags.values_list("name", flat=True)) == {"pilot", "mall"}
    audit = CabinetImport.objects.get()
    assert (audit.filename, audit.created, audit.errors, audit.actor_label) == (
        "fleet.csv",
        2,
        4,
        "test import",
    )


def test_new_cabinets_get_credentials_returned_once_and_stored_as_hashes() -> None:
    result = cabinets_import(text=HEADER + row("ZJ-0001") + row("ZJ-0002"), actor=ACTOR)
    assert [c.serial for c in result.credentials] == ["ZJ-0001", "ZJ-0002"]
    for issued in result.credentials:
        stored = CabinetCredential.objects.get(cabinet_id=issued.cabinet_id)
        key_id, secret = issued.credential.split(".", 1)
        assert stored.key_id == key_id and secret not in stored.secret_hash
        assert protocol.secret_matches(secret, stored.secret_hash)
        assert len(issued.signing_key_hex) == 64


def test_a_reimport_is_idempotent_and_updates_only_what_changed() -> None:
    text = HEADER + row("ZJ-0001") + row("ZJ-0002")
    cabinets_import(text=text, actor=ACTOR)
    again = cabinets_import(text=text, actor=ACTOR)
    assert (again.created, again.updated, again.unchanged, again.credentials) == (0, 0, 2, [])
    assert Cabinet.objects.count() == 2 and Compartment.objects.count() == 6
    assert CabinetCredential.objects.count() == 2

    changed = HEADER + row("ZJ-0001", name="Renamed", compartments="S:3,M:1") + row("ZJ-0002")
    result = cabinets_import(text=changed, actor=ACTOR)
    assert (result.created, result.updated, result.unchanged) == (0, 1, 1)
    cabinet = Cabinet.objects.get(serial="ZJ-0001")
    assert cabinet.name == "Renamed" and cabinet.compartments.count() == 4

    shrink = HEADER + row("ZJ-0001", compartments="S:1")
    refused = cabinets_import(text=shrink, actor=ACTOR)
    assert [(e.row, e.field) for e in refused.errors] == [(2, "compartments")]
    assert cabinet.compartments.count() == 4


def test_ten_thousand_rows_take_a_bounded_number_of_queries() -> None:
    lines = [HEADER] + [
        row(f"BULK-{i:05d}", region=f"R{i % 7}", tags="pilot" if i < 5 else "", compartments="S:4")
        for i in range(10_000)
    ]
    with CaptureQueriesContext(connection) as ctx:
        result = cabinets_import(text="".join(lines), actor=ACTOR)
    assert (result.created, result.error_rows) == (10_000, 0)
    assert Compartment.objects.count() == 40_000
    assert CabinetTag.objects.get(name="pilot").cabinets.count() == 5
    # Bulk statements, not one per row: about a hundred on PostgreSQL; SQLite splits each
    # insert at 999 parameters, so there the bound is one statement per ten rows.
    bound = 120 if connection.vendor == "postgresql" else 1_000
    assert len(ctx.captured_queries) < bound, len(ctx.captured_queries)


def test_the_command_writes_credentials_once_with_a_progress_bar(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "fleet.csv"
    source.write_text(HEADER + row("ZJ-0001") + row("ZJ-0002", latitude="x"))
    out = tmp_path / "credentials.csv"
    call_command("import_cabinets", str(source), "--credentials-out", str(out))
    captured = capsys.readouterr()
    assert "100% 1/1" in captured.err
    assert "line 3 (ZJ-0002): latitude: is not a number" in captured.err
    assert out.stat().st_mode & 0o777 == 0o600
    lines = out.read_text().splitlines()
    assert lines[0] == "serial,credential,signing_key_hex" and lines[1].startswith("ZJ-0001,")
    with pytest.raises(Exception, match="exists"):
        call_command("import_cabinets", str(source), "--credentials-out", str(out))


def test_the_admin_upload_reports_errors_and_shows_credentials(admin_client) -> None:  # type: ignore[no-untyped-def]
    upload = SimpleUploadedFile(
        "fleet.csv", (HEADER + row("ZJ-0001") + row("ZJ-0002", longitude="999")).encode()
    )
    response = admin_client.post(reverse("admin:cabinets_cabinet_import"), {"file": upload})
    body = response.content.decode()
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert "must be between -180 and 180" in body
    credential = CabinetCredential.objects.get(cabinet__serial="ZJ-0001")
    assert f"{credential.key_id}." in body
    assert 'download="cabinet-credentials.csv"' in body
    # once: the import page shown again holds no credential
    assert (
        f"{credential.key_id}."
        not in admin_client.get(reverse("admin:cabinets_cabinet_import")).content.decode()
    )


def test_a_file_without_the_required_columns_is_refused(admin_client) -> None:  # type: ignore[no-untyped-def]
    upload = SimpleUploadedFile("x.csv", b"serial,name\nA,B\n")
    response = admin_client.post(reverse("admin:cabinets_cabinet_import"), {"file": upload})
    assert "has no column address" in response.content.decode()
    assert not Cabinet.objects.exists()


def test_a_dry_run_counts_and_reports_but_stores_nothing() -> None:
    cabinets_import(text=HEADER + row("ZJ-0001"), actor=ACTOR)
    text = HEADER + row("ZJ-0001", name="Renamed") + row("ZJ-0002") + row("ZJ-0003", latitude="x")
    credentials, audits = CabinetCredential.objects.count(), CabinetImport.objects.count()

    trial = cabinets_import(text=text, actor=ACTOR, dry_run=True)

    assert (trial.dry_run, trial.created, trial.updated, trial.error_rows) == (True, 1, 1, 1)
    assert trial.errors == [RowError(4, "latitude", "is not a number", "ZJ-0003")]
    assert trial.credentials == [] and trial.audit_id is None
    assert set(Cabinet.objects.values_list("serial", "name")) == {("ZJ-0001", "Cabinet ZJ-0001")}
    assert CabinetCredential.objects.count() == credentials
    assert CabinetImport.objects.count() == audits


def test_the_admin_dry_run_and_errors_name_the_serial(admin_client) -> None:  # type: ignore[no-untyped-def]
    upload = SimpleUploadedFile(
        "fleet.csv", (HEADER + row("ZJ-0001") + row("ZJ-0002", longitude="999")).encode()
    )
    response = admin_client.post(
        reverse("admin:cabinets_cabinet_import"), {"file": upload, "dry_run": "on"}
    )
    body = response.content.decode()
    assert "Dry run: nothing was stored" in body
    assert re.search(r"<td>3</td><td>ZJ-0002</td><td>longitude</td>", body)
    assert "line%2Cserial%2Cfield%2Cmessage" in body  # the errors CSV names the serial too
    assert not Cabinet.objects.exists() and not CabinetCredential.objects.exists()
    assert 'download="cabinet-credentials.csv"' not in body


def test_the_command_has_a_dry_run(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "fleet.csv"
    source.write_text(HEADER + row("ZJ-0001"))
    call_command("import_cabinets", str(source), "--dry-run")
    captured = capsys.readouterr()
    assert "Dry run: nothing was stored." in captured.err and captured.out == ""
    assert not Cabinet.objects.exists()


def test_row_errors_speak_the_readers_language() -> None:
    from django.utils import translation

    text = HEADER + row("ZJ-0002", latitude="north") + row("ZJ-0004", name="")
    with translation.override("zh-hans"):
        result = cabinets_import(text=text, actor=ACTOR, filename="fleet.csv", dry_run=True)
    assert result.errors == [
        RowError(2, "latitude", "不是数字", "ZJ-0002"),
        RowError(3, "name", "为必填项", "ZJ-0004"),
    ]
