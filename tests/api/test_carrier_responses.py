"""Real answers of every carrier operation, in the states a carrier meets them (created,
duplicate, listed, paged, followed, collected, cancelled, refused), each validated against
the served schema by schemathesis: status code documented, body as documented, content type
and headers as documented."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from cabinets.models import CabinetState, Compartment
from cabinets.services.lifecycle import compartments_create
from core.actors import Actor
from courier.authentication import carrier_api_key_issue
from courier.models import ParcelStatus
from courier.services.parcels import parcel_transition
from tests.api.openapi import schema, served_schema
from tests.factories import CabinetFactory, CarrierFactory, IdentityFactory, ParcelFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("connection_kept_open")]

ANNOUNCE = {
    "tracking_number": "SF7000001",
    "recipient": {"phone": "+8613800007001", "name": "Liu Yang", "email": "liu@example.com"},
    "size": "S",
    "cabinet": "SH-RSP-1",
}


@pytest.fixture
def auth() -> dict[str, str]:
    carrier = CarrierFactory(code="resp")
    cabinet = CabinetFactory(serial="SH-RSP-1", state=CabinetState.ACTIVE, city="Shanghai")
    compartments_create(cabinet=cabinet, layout=[("A01", "S"), ("B01", "M")])
    expired = ParcelFactory(carrier=carrier, cabinet=cabinet, recipient=IdentityFactory())
    parcel_transition(
        parcel_id=expired.pk,
        to_status=ParcelStatus.READY,
        actor=Actor.system("test"),
        changes={
            "compartment": Compartment.objects.get(cabinet=cabinet, label="B01"),
            "deposited_at": timezone.now(),
            "pickup_deadline": timezone.now(),
        },
    )
    parcel_transition(parcel_id=expired.pk, to_status=ParcelStatus.EXPIRED, actor=Actor.system("t"))
    return {"Authorization": f"Api-Key {carrier_api_key_issue(carrier=carrier)}"}


CALLED: set[tuple[str, str]] = set()


def _call(auth: dict[str, str], method: str, path: str, **case: Any) -> Any:
    CALLED.add((method, path))
    operation = schema[path][method]
    response = operation.Case(**case).call_and_validate(headers=auth)
    return response


def test_every_carrier_operation_answers_as_documented(auth: dict[str, str]) -> None:
    CALLED.clear()
    created = _call(auth, "POST", "/api/v1/carrier/parcels/", body=ANNOUNCE)
    assert created.status_code == 201
    duplicate = _call(auth, "POST", "/api/v1/carrier/parcels/", body=ANNOUNCE)
    assert duplicate.status_code == 409
    assert duplicate.json()["details"]["parcel"] == created.json()
    unknown_cabinet = _call(
        auth, "POST", "/api/v1/carrier/parcels/", body={**ANNOUNCE, "cabinet": "NOPE"}
    )
    assert unknown_cabinet.status_code == 404

    listed = _call(auth, "GET", "/api/v1/carrier/parcels/", query={"limit": 1})
    assert listed.status_code == 200 and listed.json()["count"] == 2
    assert listed.json()["next"] is not None and len(listed.json()["results"]) == 1
    assert (
        _call(auth, "GET", "/api/v1/carrier/parcels/", query={"status": "expired"}).json()["count"]
        == 1
    )
    assert _call(auth, "GET", "/api/v1/carrier/parcels/", query={"limit": 501}).status_code == 400

    path = "/api/v1/carrier/parcels/{tracking_number}/"
    detail = _call(auth, "GET", path, path_parameters={"tracking_number": "SF7000001"})
    assert detail.status_code == 200 and detail.json()["events"]
    missing = _call(auth, "GET", path, path_parameters={"tracking_number": "NOPE0001"})
    assert missing.status_code == 404

    changes = _call(auth, "GET", "/api/v1/carrier/changes/", query={"limit": 2})
    assert changes.status_code == 200 and len(changes.json()["results"]) == 2
    after = _call(
        auth, "GET", "/api/v1/carrier/changes/", query={"after": changes.json()["next_cursor"]}
    )
    assert after.status_code == 200 and len(after.json()["results"]) == 1
    forged = _call(auth, "GET", "/api/v1/carrier/changes/", query={"after": "forged"})
    assert forged.status_code == 400

    collections = _call(auth, "GET", "/api/v1/carrier/collections/")
    assert collections.status_code == 200
    assert collections.json()["cabinets"][0]["cabinet"] == "SH-RSP-1"

    cabinets = _call(auth, "GET", "/api/v1/carrier/cabinets/", query={"city": "Shanghai"})
    assert cabinets.status_code == 200 and cabinets.json()[0]["free"]["S"] == 1

    cancel = "/api/v1/carrier/parcels/{tracking_number}/cancel/"
    cancelled = _call(auth, "POST", cancel, path_parameters={"tracking_number": "SF7000001"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = _call(auth, "POST", cancel, path_parameters={"tracking_number": "SF7000001"})
    assert again.status_code == 409

    # every carrier operation the schema lists, so that a new one is not left out
    documented = {
        (method.upper(), path)
        for path, operations in served_schema()["paths"].items()
        if path.startswith("/api/v1/carrier/")
        for method in operations
    }
    assert documented == CALLED


def test_answers_without_a_key_are_documented_too() -> None:
    response = schema["/api/v1/carrier/parcels/"]["GET"].Case().call_and_validate()
    assert response.status_code == 401
