from __future__ import annotations

import re

import pytest
from django.contrib.auth.hashers import check_password
from django.contrib.auth.models import User
from django.test import Client

from courier.models import CarrierApiKey, CarrierStaff, Courier, Parcel, ParcelStatus
from tests.factories import CarrierFactory, CourierFactory, ParcelFactory

pytestmark = pytest.mark.django_db


def _messages(response) -> str:  # type: ignore[no-untyped-def]
    return " ".join(str(m) for m in response.context["messages"]) if response.context else ""


def test_staff_issue_a_carrier_api_key_that_is_shown_once_and_works(admin_client: Client) -> None:
    carrier = CarrierFactory()
    response = admin_client.post(
        "/admin/courier/carrier/",
        {"action": "issue_api_key", "_selected_action": [carrier.pk]},
        follow=True,
    )
    assert response.redirect_chain and "no-store" in response["Cache-Control"]
    key = re.search(r"<code>(\w+\.[\w-]+)</code>", response.content.decode()).group(1)  # type: ignore[union-attr]
    assert key not in _messages(response)
    assert "messages" not in admin_client.cookies  # never in the (signed, readable) cookie
    reloaded = admin_client.get(response.redirect_chain[-1][0]).content.decode()
    assert key not in reloaded and "already shown" in reloaded
    assert CarrierApiKey.objects.filter(carrier=carrier).count() == 1
    stored = CarrierApiKey.objects.get(carrier=carrier)
    assert key.startswith(stored.prefix + ".") and key.split(".", 1)[1] not in stored.secret_hash
    api = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert api.get("/api/v1/carrier/parcels/").status_code == 200
    page = admin_client.get(f"/admin/courier/carrierapikey/{stored.pk}/change/")
    assert stored.secret_hash.encode() not in page.content
    admin_client.post(
        "/admin/courier/carrierapikey/", {"action": "revoke", "_selected_action": [stored.pk]}
    )
    assert api.get("/api/v1/carrier/parcels/").status_code == 401


def test_staff_set_a_courier_pin_shown_once_and_never_displayed(admin_client: Client) -> None:
    courier = CourierFactory()
    response = admin_client.post(
        "/admin/courier/courier/",
        {"action": "reset_pin", "_selected_action": [courier.pk]},
        follow=True,
    )
    assert response.redirect_chain and "no-store" in response["Cache-Control"]
    body = response.content.decode()
    pin = re.search(
        rf"<code>{courier.badge_number}</code></td><td><code>(\d{{4}})</code>", body
    ).group(1)  # type: ignore[union-attr]
    courier = Courier.objects.get(pk=courier.pk)
    assert check_password(pin, courier.pin_hash)
    page = admin_client.get(f"/admin/courier/courier/{courier.pk}/change/")
    assert courier.pin_hash.encode() not in page.content


def test_the_cancel_action_cancels_announced_parcels_and_explains_the_others(
    admin_client: Client,
) -> None:
    announced = ParcelFactory()
    done = ParcelFactory(status=ParcelStatus.CANCELLED)
    selected = {"action": "cancel", "_selected_action": [announced.pk, done.pk]}
    asked = admin_client.post("/admin/courier/parcel/", selected)
    assert "Cancel 2 parcel(s)?" in asked.content.decode()  # asked first, with the count
    assert Parcel.objects.get(pk=announced.pk).status == ParcelStatus.ANNOUNCED
    response = admin_client.post(
        "/admin/courier/parcel/", {**selected, "confirm": "1"}, follow=True
    )
    assert Parcel.objects.get(pk=announced.pk).status == ParcelStatus.CANCELLED
    assert f"{done.tracking_number}: " in _messages(response)
    assert announced.events.last().actor_kind == "staff"


def test_carrier_staff_see_only_their_own_attempts_and_not_other_carriers_keys(
    client: Client,
) -> None:
    carrier = CarrierFactory()
    user = User.objects.create_user("ops", password="pw-123456", is_staff=True)
    from django.contrib.auth.models import Permission

    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    CarrierStaff.objects.create(user=user, carrier=carrier)
    other_key = CarrierApiKey.objects.create(
        carrier=CarrierFactory(), prefix="abc123", secret_hash="x" * 64
    )
    client.force_login(user)
    attempts = client.get("/admin/courier/accessattempt/")  # none on this carrier's parcels
    assert attempts.status_code == 200 and not attempts.context["cl"].result_list
    listing = client.get("/admin/courier/carrierapikey/")
    assert listing.status_code == 200 and b"abc123" not in listing.content
    assert client.get(f"/admin/courier/carrierapikey/{other_key.pk}/change/").status_code in (
        302,
        403,
        404,
    )


# --- Services own a parcel's place, owner and deadline (issue 13, item 4) ---------------------


def test_a_deposited_parcel_cannot_be_moved_or_reassigned_from_its_change_form(
    admin_client: Client,
) -> None:
    from django.utils import timezone

    from tests.factories import CabinetFactory, CompartmentFactory, IdentityFactory

    compartment = CompartmentFactory()
    deadline = timezone.now() + timezone.timedelta(days=3)
    parcel = ParcelFactory(
        cabinet=compartment.cabinet,
        compartment=compartment,
        status=ParcelStatus.READY,
        deposited_at=timezone.now(),
        pickup_deadline=deadline,
    )
    elsewhere = CompartmentFactory(cabinet=CabinetFactory())
    before = Parcel.objects.values().get(pk=parcel.pk)
    url = f"/admin/courier/parcel/{parcel.pk}/change/"
    form = admin_client.get(url).content.decode()
    for field in ("cabinet", "compartment", "recipient", "carrier", "tracking_number"):
        assert f'name="{field}"' not in form, field
    assert 'name="pickup_deadline_0"' not in form and 'name="_save"' not in form

    admin_client.post(
        url,
        {
            "cabinet": elsewhere.cabinet_id,
            "compartment": elsewhere.pk,
            "recipient": IdentityFactory().pk,
            "carrier": CarrierFactory(code="other").pk,
            "tracking_number": "MOVED-1",
            "pickup_deadline_0": "2030-01-01",
            "pickup_deadline_1": "00:00:00",
            "status": ParcelStatus.PICKED_UP,
            "_save": "Save",
        },
    )
    after = Parcel.objects.values().get(pk=parcel.pk)
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }
    assert not parcel.events.exists()


def test_parcels_are_neither_added_nor_deleted_in_the_admin(admin_client: Client) -> None:
    parcel = ParcelFactory()
    assert admin_client.get("/admin/courier/parcel/add/").status_code == 403
    delete = f"/admin/courier/parcel/{parcel.pk}/delete/"
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    admin_client.post(
        "/admin/courier/parcel/", {"action": "delete_selected", "_selected_action": [parcel.pk]}
    )
    assert Parcel.objects.filter(pk=parcel.pk).exists()
