"""The carrier REST API: announce, follow, cancel; each carrier sees only its own parcels."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from core.actors import Actor
from courier.authentication import carrier_api_key_issue
from courier.models import Parcel, ParcelStatus
from courier.services.parcels import parcel_transition
from tests.factories import CarrierFactory

pytestmark = pytest.mark.django_db

ANNOUNCE = {
    "tracking_number": "SF1234567890",
    "recipient": {"phone": "+8613800001111", "name": "Li Wei"},
    "size": "M",
    "cabinet": "SH-FLOW-1",
}


@pytest.fixture
def api(carrier) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {carrier_api_key_issue(carrier=carrier)}")
    return client


def test_it_refuses_calls_without_a_valid_key(cabinet) -> None:  # type: ignore[no-untyped-def]
    anonymous = APIClient().post("/api/v1/carrier/parcels/", ANNOUNCE, format="json")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "not_authenticated"
    forged = APIClient()
    forged.credentials(HTTP_AUTHORIZATION="Api-Key abcdef.not-the-secret")
    response = forged.get("/api/v1/carrier/parcels/")
    assert response.status_code == 401
    assert set(response.json()) == {"error", "message", "details"}


def test_a_carrier_announces_a_parcel_and_reads_its_history(api, cabinet) -> None:  # type: ignore[no-untyped-def]
    created = api.post("/api/v1/carrier/parcels/", ANNOUNCE, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["status"] == "announced" and created.json()["cabinet"] == "SH-FLOW-1"
    detail = api.get("/api/v1/carrier/parcels/SF1234567890/").json()
    assert [e["to_status"] for e in detail["events"]] == ["announced"]
    assert detail["events"][0]["actor"] == "carrier"
    listed = api.get("/api/v1/carrier/parcels/?status=announced").json()
    assert [p["tracking_number"] for p in listed["results"]] == ["SF1234567890"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"size": "XL"}, "size"),
        ({"recipient": {"phone": "12345", "name": "x"}}, "recipient"),
        ({"tracking_number": "a b"}, "tracking_number"),
    ],
)
def test_invalid_announcements_get_a_reason_per_field(api, cabinet, change, field) -> None:  # type: ignore[no-untyped-def]
    response = api.post("/api/v1/carrier/parcels/", {**ANNOUNCE, **change}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_error" and field in body["details"]
    assert not Parcel.objects.exists()


def test_an_unknown_cabinet_and_a_duplicate_are_clear_errors(api, cabinet) -> None:  # type: ignore[no-untyped-def]
    unknown = api.post("/api/v1/carrier/parcels/", {**ANNOUNCE, "cabinet": "NOPE"}, format="json")
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_cabinet"
    assert api.post("/api/v1/carrier/parcels/", ANNOUNCE, format="json").status_code == 201
    duplicate = api.post("/api/v1/carrier/parcels/", ANNOUNCE, format="json")
    assert duplicate.status_code == 409 and duplicate.json()["error"] == "duplicate_tracking_number"


def test_a_carrier_never_sees_another_carriers_parcel(api, cabinet) -> None:  # type: ignore[no-untyped-def]
    other = APIClient()
    other.credentials(
        HTTP_AUTHORIZATION=f"Api-Key {carrier_api_key_issue(carrier=CarrierFactory())}"
    )
    assert other.post("/api/v1/carrier/parcels/", ANNOUNCE, format="json").status_code == 201
    assert api.get("/api/v1/carrier/parcels/SF1234567890/").status_code == 404
    assert api.post("/api/v1/carrier/parcels/SF1234567890/cancel/").status_code == 404
    assert api.get("/api/v1/carrier/parcels/").json()["results"] == []
    assert api.get("/api/v1/carrier/changes/").json()["results"] == []


def test_a_parcel_can_be_cancelled_before_deposit_only(api, cabinet) -> None:  # type: ignore[no-untyped-def]
    api.post("/api/v1/carrier/parcels/", ANNOUNCE, format="json")
    assert api.post("/api/v1/carrier/parcels/SF1234567890/cancel/").json()["status"] == "cancelled"
    again = api.post("/api/v1/carrier/parcels/SF1234567890/cancel/")
    assert again.status_code == 409 and again.json()["error"] == "invalid_transition"


def test_the_changes_feed_pages_with_a_cursor(api, cabinet) -> None:  # type: ignore[no-untyped-def]
    for n in range(3):
        api.post(
            "/api/v1/carrier/parcels/", {**ANNOUNCE, "tracking_number": f"SF{n:04d}"}, format="json"
        )
    first = api.get("/api/v1/carrier/changes/?limit=2").json()
    assert [c["tracking_number"] for c in first["results"]] == ["SF0000", "SF0001"]
    parcel = Parcel.objects.get(tracking_number="SF0000")
    parcel_transition(
        parcel_id=parcel.pk, to_status=ParcelStatus.CANCELLED, actor=Actor.system("t")
    )
    rest = api.get(f"/api/v1/carrier/changes/?after={first['next_cursor']}").json()
    assert [(c["tracking_number"], c["to_status"]) for c in rest["results"]] == [
        ("SF0002", "announced"),
        ("SF0000", "cancelled"),
    ]
    assert api.get("/api/v1/carrier/changes/?after=-1").status_code == 400


def test_carriers_see_cabinets_with_free_compartments(api, cabinet) -> None:  # type: ignore[no-untyped-def]
    [entry] = api.get("/api/v1/carrier/cabinets/").json()
    assert entry["serial"] == "SH-FLOW-1" and entry["free"] == {"S": 2, "M": 1, "L": 1}


def test_the_openapi_schema_documents_the_carrier_api(admin_client) -> None:  # type: ignore[no-untyped-def]
    response = admin_client.get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/v1/carrier/parcels/" in response.content
    assert b"/api/v1/carrier/changes/" in response.content
