"""The changes feed's cursor is opaque and per carrier: it tells a carrier nothing about how
much other carriers ship, and one carrier's cursor is refused on another's feed."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from courier.authentication import carrier_api_key_issue
from courier.cursors import change_cursor_decode, change_cursor_encode
from courier.models import Carrier, ParcelEvent
from tests.factories import CarrierFactory

pytestmark = pytest.mark.django_db
CHANGES = "/api/v1/carrier/changes/"


def _client(carrier: Carrier) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {carrier_api_key_issue(carrier=carrier)}")
    return client


def _announce(api: APIClient, tracking_number: str) -> None:
    body = {
        "tracking_number": tracking_number,
        "recipient": {"phone": "+8613800005555", "name": "Zhao Min"},
        "size": "S",
        "cabinet": "SH-FLOW-1",
    }
    assert api.post("/api/v1/carrier/parcels/", body, format="json").status_code == 201


def test_cursors_reveal_no_platform_wide_event_ids(carrier, cabinet) -> None:  # type: ignore[no-untyped-def]
    mine, theirs = _client(carrier), _client(CarrierFactory())
    _announce(mine, "MINE-0001")
    for n in range(5):
        _announce(theirs, f"THEIRS-{n:04d}")
    _announce(mine, "MINE-0002")
    page = mine.get(CHANGES).json()
    ids = [change["id"] for change in page["results"]]
    event_ids = {str(pk) for pk in ParcelEvent.objects.values_list("pk", flat=True)}
    assert len(ids) == 2 and page["next_cursor"] == ids[-1]
    for cursor in ids:
        assert not cursor.isdigit() and cursor not in event_ids
        assert not any(event_id in cursor for event_id in event_ids if len(event_id) > 1)
    # The same change always has the same id, so a carrier can deduplicate on it.
    assert [c["id"] for c in mine.get(CHANGES).json()["results"]] == ids


def test_the_cursor_pages_through_the_feed(carrier, cabinet) -> None:  # type: ignore[no-untyped-def]
    api = _client(carrier)
    for n in range(3):
        _announce(api, f"PAGE-{n:04d}")
    first = api.get(f"{CHANGES}?limit=2").json()
    rest = api.get(CHANGES, {"after": first["next_cursor"]}).json()
    assert [c["tracking_number"] for c in rest["results"]] == ["PAGE-0002"]
    empty = api.get(CHANGES, {"after": rest["next_cursor"]}).json()
    assert empty == {"results": [], "next_cursor": rest["next_cursor"]}


def test_another_carriers_cursor_is_refused(carrier, cabinet) -> None:  # type: ignore[no-untyped-def]
    other = CarrierFactory()
    _announce(_client(other), "OTHER-0001")
    their_cursor = _client(other).get(CHANGES).json()["next_cursor"]
    response = _client(carrier).get(CHANGES, {"after": their_cursor})
    assert response.status_code == 400 and response.json()["error"] == "invalid_cursor"


@pytest.mark.parametrize("cursor", ["17", "-1", "AAAAAAAAAAAAAAAAAAAAAA", "not a cursor", "é" * 10])
def test_forged_cursors_are_a_400(carrier, cursor: str) -> None:  # type: ignore[no-untyped-def]
    response = _client(carrier).get(CHANGES, {"after": cursor})
    assert response.status_code == 400
    assert response.json()["error"] in {"invalid_cursor", "validation_error"}


def test_a_cursor_altered_by_one_character_is_refused(carrier) -> None:  # type: ignore[no-untyped-def]
    cursor = change_cursor_encode(carrier_id=carrier.pk, event_id=41)
    assert change_cursor_decode(carrier_id=carrier.pk, cursor=cursor) == 41
    flipped = cursor[:5] + ("A" if cursor[5] != "A" else "B") + cursor[6:]
    response = _client(carrier).get(CHANGES, {"after": flipped})
    assert response.status_code == 400 and response.json()["error"] == "invalid_cursor"
