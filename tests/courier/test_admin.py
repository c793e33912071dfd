from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.hashers import check_password
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from courier.admin import PARCEL_OPERATIONS
from courier.models import (
    PARCEL_EXTENDABLE,
    PARCEL_TRANSITIONS,
    CarrierApiKey,
    CarrierStaff,
    Courier,
    Parcel,
    ParcelEvent,
    ParcelStatus,
)
from tests.factories import CarrierFactory, CompartmentFactory, CourierFactory, ParcelFactory

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


def _ready_parcel(**fields: object) -> Parcel:
    deposited = timezone.now()
    return ParcelFactory(  # type: ignore[no-any-return]
        compartment=CompartmentFactory(),
        status=ParcelStatus.READY,
        deposited_at=deposited,
        pickup_deadline=deposited + timedelta(days=3),
        **fields,
    )


def _offered(client: Client, query: str = "") -> set[str]:
    page = client.get("/admin/courier/parcel/" + query).content.decode()
    return set(re.findall(r'<option value="(\w+)"', page)) - {"delete_selected"}


def test_the_cancel_operation_asks_with_the_count_it_cancels_and_leaves_the_others(
    admin_client: Client,
) -> None:
    announced = ParcelFactory()
    done = ParcelFactory(status=ParcelStatus.CANCELLED)
    picked_up = ParcelFactory(status=ParcelStatus.PICKED_UP, picked_up_at=timezone.now())
    selected = {"action": "cancel", "_selected_action": [announced.pk, done.pk, picked_up.pk]}
    asked = admin_client.post("/admin/courier/parcel/", selected).content.decode()
    # asked first, with the count of the parcels it will cancel
    assert "Cancel 1 parcel(s)?" in asked and "Confirm for 1" in asked
    assert picked_up.tracking_number not in asked and "cannot be deposited any more" in asked
    assert Parcel.objects.get(pk=announced.pk).status == ParcelStatus.ANNOUNCED
    response = admin_client.post(
        "/admin/courier/parcel/", {**selected, "confirm": "1"}, follow=True
    )
    assert Parcel.objects.get(pk=announced.pk).status == ParcelStatus.CANCELLED
    assert Parcel.objects.get(pk=picked_up.pk).status == ParcelStatus.PICKED_UP
    text = _messages(response)
    # the others are refused in the transition map's words, one message per status
    assert "Left as they are: 1. A parcel cannot go from 'Picked up' to 'Cancelled'." in text
    assert "Left as they are: 1. A parcel cannot go from 'Cancelled' to 'Cancelled'." in text
    event = announced.events.last()
    assert (event.actor_kind, event.reason) == ("staff", "cancelled in the admin")
    # a reload of the confirming post finds nothing left to cancel: no page, no event
    events = ParcelEvent.objects.count()
    again = admin_client.post("/admin/courier/parcel/", {**selected, "confirm": "1"})
    assert again.status_code == 302 and ParcelEvent.objects.count() == events


def test_extend_acts_in_place_on_ready_parcels_once_and_refuses_the_rest(
    admin_client: Client,
) -> None:
    ready = _ready_parcel()
    extended = _ready_parcel(extension_count=1)
    announced = ParcelFactory()
    before = Parcel.objects.get(pk=ready.pk).pickup_deadline
    selected = {"action": "extend", "_selected_action": [ready.pk, extended.pk, announced.pk]}
    # not destructive: no confirmation page, it runs on the first post
    response = admin_client.post("/admin/courier/parcel/", selected, follow=True)
    ready.refresh_from_db()
    assert ready.status == ParcelStatus.READY and ready.extension_count == 1
    assert ready.pickup_deadline == before + timedelta(days=2)
    event = ready.events.last()
    assert (event.from_status, event.to_status) == (ParcelStatus.READY, ParcelStatus.READY)
    text = _messages(response)
    assert f"{extended}: The pickup deadline has already been extended once." in text
    assert (
        "Left as they are: 1. “Extend the pickup deadline (once)” is for a parcel in "
        "'Deposited, ready for pickup', not 'Announced'."
    ) in text
    assert Parcel.objects.get(pk=announced.pk).extension_count == 0

    again = admin_client.post("/admin/courier/parcel/", selected, follow=True)
    assert f"{ready}: The pickup deadline has already been extended once." in _messages(again)
    assert Parcel.objects.get(pk=ready.pk).pickup_deadline == before + timedelta(days=2)


def test_the_parcel_operations_come_from_the_transition_map(admin_client: Client) -> None:
    moves = {(s, t) for s, targets in PARCEL_TRANSITIONS.items() for t in targets}
    cancel, extend = PARCEL_OPERATIONS["cancel"], PARCEL_OPERATIONS["extend"]
    assert PARCEL_OPERATIONS.moves(cancel) | PARCEL_OPERATIONS.automatic == moves
    assert not PARCEL_OPERATIONS.moves(cancel) & PARCEL_OPERATIONS.automatic
    assert PARCEL_OPERATIONS.offered_in(cancel) == {ParcelStatus.ANNOUNCED}
    assert not PARCEL_OPERATIONS.moves(extend)  # in place: no target state
    assert PARCEL_OPERATIONS.offered_in(extend) == PARCEL_EXTENDABLE

    ParcelFactory()
    assert _offered(admin_client) == {"cancel", "extend"}  # generated from the table
    assert _offered(admin_client, "?status__exact=announced") == {"cancel"}
    assert _offered(admin_client, "?status__exact=ready") == {"extend"}
    assert _offered(admin_client, "?status__exact=picked_up") == set()


def test_a_parcels_page_offers_the_operations_of_its_status_and_runs_them(
    admin_client: Client,
) -> None:
    def offered(parcel: Parcel) -> set[str]:
        page = admin_client.get(f"/admin/courier/parcel/{parcel.pk}/change/").content.decode()
        return set(re.findall(r'id="operation-(\w+)"', page))

    ready = _ready_parcel()
    assert offered(ParcelFactory()) == {"cancel"}
    assert offered(ready) == {"extend"}
    assert (
        offered(ParcelFactory(status=ParcelStatus.PICKED_UP, picked_up_at=timezone.now())) == set()
    )
    page = admin_client.get(f"/admin/courier/parcel/{ready.pk}/change/").content.decode()
    form = re.search(r'<form method="post" action="([^"]+)">(.*?)</form>', page, re.S)
    assert form is not None
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form.group(2)))
    admin_client.post(form.group(1), fields)
    ready.refresh_from_db()
    assert ready.extension_count == 1 and ready.status == ParcelStatus.READY


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
