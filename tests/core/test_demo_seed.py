from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.http import HttpRequest
from django.test import Client
from django.utils import timezone

from cabinets.models import Cabinet, Compartment
from courier.codes import pickup_code_matches
from courier.models import Parcel, ParcelEvent, ParcelStatus
from courier.selectors import compartment_use
from identity.models import Identity

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _var_dir(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path


def _counts() -> tuple[int, ...]:
    return (
        Cabinet.objects.count(),
        Compartment.objects.count(),
        Parcel.objects.count(),
        ParcelEvent.objects.count(),
        Identity.objects.count(),
    )


def test_seeding_twice_creates_nothing_the_second_time() -> None:
    call_command("seed_demo", stdout=StringIO())
    first = _counts()
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert _counts() == first
    assert first[0] >= 3 and first[2] >= 3
    assert "created: 0 cabinets" in out.getvalue()


def test_seeded_ready_parcels_occupy_their_compartments_and_their_codes_work() -> None:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    ready = list(Parcel.objects.filter(status=ParcelStatus.READY).select_related("compartment"))
    assert ready
    for parcel in ready:
        assert parcel.compartment is not None
        assert compartment_use(compartment_id=parcel.compartment.pk) == "occupied"
        code = out.getvalue().split(f"parcel {parcel.tracking_number}: pickup code ")[1][:6]
        assert pickup_code_matches(
            parcel_id=parcel.pk, code=code, code_hash=parcel.pickup_code_hash
        )
        assert not pickup_code_matches(
            parcel_id=parcel.pk,
            code="000000" if code != "000000" else "111111",
            code_hash=parcel.pickup_code_hash,
        )


def test_every_seed_prints_a_working_code_for_each_waiting_parcel_and_the_old_one_stops() -> None:
    def codes() -> dict[str, str]:
        out = StringIO()
        call_command("seed_demo", stdout=out)
        found = re.findall(r"parcel (\w+): pickup code (\d{6})", out.getvalue())
        return dict(found)

    first = codes()
    second = codes()
    assert first and second.keys() == first.keys()
    for tracking, code in second.items():
        parcel = Parcel.objects.get(tracking_number=tracking)
        assert parcel.status == ParcelStatus.READY
        assert pickup_code_matches(
            parcel_id=parcel.pk, code=code, code_hash=parcel.pickup_code_hash
        )
        if first[tracking] != code:
            assert not pickup_code_matches(
                parcel_id=parcel.pk, code=first[tracking], code_hash=parcel.pickup_code_hash
            )


def test_a_picked_up_parcel_gets_no_new_code() -> None:
    call_command("seed_demo", stdout=StringIO())
    Parcel.objects.filter(tracking_number="DX100000001").update(
        status=ParcelStatus.PICKED_UP, picked_up_at=timezone.now()
    )
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert "DX100000001" not in out.getvalue()
    assert "parcel DX100000002: pickup code" in out.getvalue()


def test_the_printed_staff_login_opens_the_admin_and_lists_the_seeded_data() -> None:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    username, password = out.getvalue().split("Staff login: ")[1].split()[0::2]
    client = Client()
    # django-axes checks every login against its lockouts and needs the request for it.
    assert client.login(request=HttpRequest(), username=username, password=password)
    cabinets = client.get("/admin/cabinets/cabinet/")
    assert cabinets.status_code == 200
    assert b"SH-XH-0001" in cabinets.content
    compartments = client.get("/admin/cabinets/compartment/")
    assert b"SH-XH-0001/A01" in compartments.content
    parcels = client.get("/admin/courier/parcel/")
    assert b"DX100000001" in parcels.content
    # the stored code hash is never rendered
    parcel = Parcel.objects.get(tracking_number="DX100000001")
    page = client.get(f"/admin/courier/parcel/{parcel.pk}/change/")
    assert page.status_code == 200
    assert parcel.pickup_code_hash.encode() not in page.content


def test_the_printed_courier_pin_and_carrier_key_work_and_stay_the_same() -> None:
    from django.contrib.auth.hashers import check_password
    from rest_framework.test import APIClient

    from courier.models import Courier

    first, second = StringIO(), StringIO()
    call_command("seed_demo", stdout=first)
    call_command("seed_demo", stdout=second)
    text = first.getvalue()
    pin = text.split(" PIN ")[1].split()[0]
    key = text.split("carrier API key (Demo Express): ")[1].split()[0]
    assert pin in second.getvalue() and key in second.getvalue()
    assert check_password(pin, Courier.objects.get(badge_number="C-0001").pin_hash)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    response = client.get("/api/v1/carrier/parcels/")
    assert response.status_code == 200
    assert {p["tracking_number"] for p in response.json()["results"]} >= {"DX100000001"}
