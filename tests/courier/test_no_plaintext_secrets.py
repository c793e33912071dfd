"""After a full flow (API key use, announce, courier deposit with a PIN, pickup with the code,
phone login with a texted code, face enrollment), no table, column or log line holds a secret
in clear: not the pickup code, the PIN, the login code, the enrollment token, the API key or
cabinet credential secret, nor the face embedding (as numbers or as bytes)."""

from __future__ import annotations

import io
import logging
import re
import secrets as real_secrets
from types import SimpleNamespace

import numpy as np
import pytest
from django.contrib.auth.hashers import make_password
from django.db import connection
from PIL import Image
from rest_framework.test import APIClient

from cabinet_agent import protocol
from cabinets.services.credentials import cabinet_credential_issue
from core.actors import Actor
from courier.authentication import carrier_api_key_issue
from courier.models import Parcel, ParcelStatus
from courier.services import deposits
from identity import services as identity_services
from identity.models import FaceTemplate, Identity
from tests.courier.conftest import cabinet_says, door, results, unlock_done, unlocks
from tests.factories import CourierFactory
from tests.identity.conftest import OBAMA
from tests.identity.faces import face_bytes, requires_faces
from tests.identity.fakes import FakeEncoder

pytestmark = [pytest.mark.django_db, requires_faces]

PICKUP_CODE = "908172"
PIN = "58203917"
LOGIN_CODE = 417263
TEXT_TYPES = {"CharField", "TextField", "JSONField", "BinaryField", "EmailField", "SlugField"}


def _text_columns() -> dict[str, list[str]]:
    """Every table of the database and its text or blob columns, from the database itself."""
    found: dict[str, list[str]] = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            columns = [
                column.name
                for column in connection.introspection.get_table_description(cursor, table)
                if connection.introspection.get_field_type(column.type_code, column) in TEXT_TYPES
            ]
            if columns:
                found[table] = columns
    return found


def _raw_values() -> list[tuple[str, str, bytes]]:
    values: list[tuple[str, str, bytes]] = []
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table, columns in _text_columns().items():
            cursor.execute(f"SELECT {', '.join(map(quote, columns))} FROM {quote(table)}")
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    if value is None:
                        continue
                    raw = (
                        bytes(value)
                        if isinstance(value, bytes | memoryview)
                        else str(value).encode()
                    )
                    values.append((table, column, raw))
    return values


def _secret_patterns(secrets_: dict[str, bytes]) -> dict[str, re.Pattern[bytes]]:
    # Digits count only as a whole number: "908172" inside a longer number is not the code.
    return {
        name: re.compile(
            rb"(?<![0-9])" + re.escape(value) + rb"(?![0-9])"
            if value.isdigit()
            else re.escape(value)
        )
        for name, value in secrets_.items()
    }


def test_no_secret_of_a_full_flow_is_stored_or_logged_in_clear(
    cabinet, carrier, pushes, sms, monkeypatch, caplog, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(deposits, "pickup_code_generate", lambda: PICKUP_CODE)
    monkeypatch.setattr(
        identity_services,
        "secrets",
        SimpleNamespace(
            randbelow=lambda n: LOGIN_CODE % n, token_urlsafe=real_secrets.token_urlsafe
        ),
    )
    encoder = FakeEncoder()
    monkeypatch.setattr(identity_services, "face_encoder", lambda: encoder)

    credential = cabinet_credential_issue(cabinet=cabinet, actor=Actor.system("test"))
    api_key = carrier_api_key_issue(carrier=carrier)
    CourierFactory(carrier=carrier, badge_number="C-0001", pin_hash=make_password(PIN))

    # A carrier announces over the API with its key.
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
    announced = api.post(
        "/api/v1/carrier/parcels/",
        {
            "tracking_number": "SF5550001",
            "recipient": {"phone": "+8613800007777", "name": "Chen Jie", "email": "c@example.com"},
            "size": "S",
            "cabinet": cabinet.serial,
        },
        format="json",
    )
    assert announced.status_code == 201

    with django_capture_on_commit_callbacks(execute=True):
        # The courier deposits with badge and PIN; the door closes: the code is issued.
        cabinet_says(
            cabinet,
            protocol.make_courier_request(
                badge="C-0001",
                pin=PIN,
                action="deposit",
                tracking_number="SF5550001",
                at=protocol.now_ms(),
                carrier=carrier.code,
            ),
        )
    [deposit] = unlocks(pushes)
    with django_capture_on_commit_callbacks(execute=True):
        unlock_done(deposit["id"])
        door(cabinet, deposit["compartment"], "opened")
        door(cabinet, deposit["compartment"], "closed")
    parcel = Parcel.objects.get(tracking_number="SF5550001")
    assert parcel.status == ParcelStatus.READY

    with django_capture_on_commit_callbacks(execute=True):
        # The recipient types the code; the door opens and closes.
        cabinet_says(
            cabinet, protocol.make_code_entry(code=PICKUP_CODE, entered_at=protocol.now_ms())
        )
    assert results(pushes, "code_result")[-1]["outcome"] == "unlocking"
    pickup = unlocks(pushes)[-1]
    with django_capture_on_commit_callbacks(execute=True):
        unlock_done(pickup["id"])
        door(cabinet, pickup["compartment"], "opened")
        door(cabinet, pickup["compartment"], "closed")
    assert Parcel.objects.get(pk=parcel.pk).status == ParcelStatus.PICKED_UP

    # Phone login with the texted code, then consent and a selfie through the fake encoder.
    person = Identity.objects.get(phone="+8613800007777")
    with django_capture_on_commit_callbacks(execute=True):
        identity_services.login_code_send(phone=person.phone, client_address="203.0.113.9")
    assert any(f"{LOGIN_CODE:06d}" in message.text for message in sms), sms
    identity_services.login_code_verify(
        phone=person.phone, code=f"{LOGIN_CODE:06d}", client_address="203.0.113.9"
    )
    token = identity_services.api_token_issue(identity=person)
    identity_services.consent_give(identity=person, source="test")
    selfie = face_bytes(OBAMA)
    with django_capture_on_commit_callbacks(execute=True):
        identity_services.enrollment_photo_submit(
            identity=person, data=selfie, actor=Actor(kind="recipient", label="test")
        )
    assert FaceTemplate.objects.filter(identity=person).count() == 1
    rgb = np.asarray(Image.open(io.BytesIO(selfie)).convert("RGB"))
    embedding = encoder.encode(rgb, encoder.locate(rgb)[0])

    secrets_: dict[str, bytes] = {
        "pickup code": PICKUP_CODE.encode(),
        "courier PIN": PIN.encode(),
        "login code": f"{LOGIN_CODE:06d}".encode(),
        "enrollment token": token.encode(),
        "API key secret": api_key.split(".", 1)[1].encode(),
        "cabinet credential secret": credential.credential.split(".")[-1].encode(),
        "embedding (float64 bytes)": np.asarray(embedding, dtype=np.float64).tobytes()[:24],
        "embedding (float32 bytes)": np.asarray(embedding, dtype=np.float32).tobytes()[:12],
        "embedding (numbers)": repr(float(embedding[0]))[:10].encode(),
    }
    patterns = _secret_patterns(secrets_)

    stored = _raw_values()
    assert len({table for table, _, _ in stored}) > 10  # the scan saw the schema
    leaks = [
        f"{name} in {table}.{column}"
        for table, column, raw in stored
        for name, pattern in patterns.items()
        if pattern.search(raw)
    ]
    assert leaks == []

    logged = [record.getMessage().encode() for record in caplog.records]
    assert logged  # the flow did log
    log_leaks = [
        name for line in logged for name, pattern in patterns.items() if pattern.search(line)
    ]
    assert log_leaks == []
