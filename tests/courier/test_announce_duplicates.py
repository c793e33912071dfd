"""A carrier that announces a tracking number twice (a retry after a time-out) learns that the
first call went through: 409 with the existing parcel, never a 500, also when the two calls
race on PostgreSQL."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from core.actors import Actor
from courier.authentication import carrier_api_key_issue
from courier.models import Carrier, Parcel, ParcelEvent
from courier.services.parcels import parcel_announce
from tests.courier.test_concurrency import _race
from tests.factories import CarrierFactory, IdentityFactory

ANNOUNCE = {
    "tracking_number": "SF0000000042",
    "recipient": {"phone": "+8613800004242", "name": "Wang Fang"},
    "size": "S",
    "cabinet": "SH-FLOW-1",
}
PARCELS = "/api/v1/carrier/parcels/"


def _client(carrier: Carrier) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {carrier_api_key_issue(carrier=carrier)}")
    return client


@pytest.mark.django_db
def test_a_repeated_announce_answers_409_with_the_existing_parcel(carrier, cabinet) -> None:  # type: ignore[no-untyped-def]
    api = _client(carrier)
    first = api.post(PARCELS, ANNOUNCE, format="json")
    assert first.status_code == 201
    again = api.post(PARCELS, {**ANNOUNCE, "size": "L"}, format="json")
    assert again.status_code == 409
    body = again.json()
    assert body["error"] == "duplicate_tracking_number"
    assert body["details"]["parcel"] == first.json()
    assert Parcel.objects.count() == 1 and ParcelEvent.objects.count() == 1


@pytest.mark.django_db
def test_another_carrier_may_use_the_same_tracking_number(carrier, cabinet) -> None:  # type: ignore[no-untyped-def]
    assert _client(carrier).post(PARCELS, ANNOUNCE, format="json").status_code == 201
    other = _client(CarrierFactory()).post(PARCELS, ANNOUNCE, format="json")
    assert other.status_code == 201


def _waiting_on_a_lock(deadline_s: float = 30.0) -> bool:
    """Whether another backend waits for a lock (our second insert on the unique index)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0]:
                return True
        time.sleep(0.05)
    return False


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the insert race needs PostgreSQL (CI runs it)"
)
def test_a_duplicate_announce_racing_the_first_one_gets_409_not_500(carrier, cabinet) -> None:  # type: ignore[no-untyped-def]
    """The first announce has inserted but not committed when the second checks for the
    number: the second sees nothing, its insert waits on the unique index, and fails once
    the first commits. It must answer 409 with the first parcel."""
    recipient = IdentityFactory(phone="+8613800004242")
    inserted, release = threading.Event(), threading.Event()
    answers: dict[str, Any] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                parcel_announce(
                    carrier=carrier,
                    tracking_number=ANNOUNCE["tracking_number"],
                    recipient=recipient,
                    size="S",
                    cabinet=cabinet,
                    actor=Actor.system("first call"),
                )
                inserted.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    def second() -> None:
        try:
            answers["second"] = _client(carrier).post(PARCELS, ANNOUNCE, format="json")
        finally:
            connection.close()

    one = threading.Thread(target=first)
    one.start()
    assert inserted.wait(timeout=30)
    two = threading.Thread(target=second)
    two.start()
    try:
        assert _waiting_on_a_lock(), "the second announce never reached the unique index"
    finally:
        release.set()
        one.join(timeout=60)
        two.join(timeout=60)
    response = answers["second"]
    assert response.status_code == 409, response.content
    assert response.json()["details"]["parcel"]["tracking_number"] == ANNOUNCE["tracking_number"]
    assert Parcel.objects.filter(tracking_number=ANNOUNCE["tracking_number"]).count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the insert race needs PostgreSQL (CI runs it)"
)
def test_eight_simultaneous_announces_make_one_parcel_and_seven_409s(carrier, cabinet) -> None:  # type: ignore[no-untyped-def]
    n = 8
    key = carrier_api_key_issue(carrier=carrier)

    def announce(i: int) -> int:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return client.post(PARCELS, ANNOUNCE, format="json").status_code

    statuses = _race(n, announce)
    assert sorted(statuses) == [201] + [409] * (n - 1)
