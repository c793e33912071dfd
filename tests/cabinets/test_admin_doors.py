"""The door grid on a cabinet's change page: the JSON it polls, the Open it posts, and who may
do either (tests/cabinets/test_admin_browser.py drives it in a browser)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from cabinets.models import CabinetCommand, CommandAction, Compartment, DoorState
from cabinets.services.messages import door_event_apply
from courier.models import Parcel, ParcelStatus
from tests.factories import (
    CabinetFactory,
    CarrierStaffFactory,
    CompartmentFactory,
    ParcelFactory,
)

pytestmark = pytest.mark.django_db


def doors_of(client: Client, cabinet_id: int) -> dict[str, dict]:  # type: ignore[type-arg]
    response = client.get(reverse("admin:cabinets_cabinet_doors", args=[cabinet_id]))
    assert response.status_code == 200, response.content
    return {door["label"]: door for door in response.json()["doors"]}


def deposited(compartment: Compartment, **fields: Any) -> Parcel:
    return ParcelFactory(
        cabinet=compartment.cabinet,
        compartment=compartment,
        status=ParcelStatus.READY,
        deposited_at=timezone.now(),
        pickup_deadline=timezone.now() + timedelta(days=2),
        **fields,
    )


def open_url(cabinet_id: int, compartment_id: int) -> str:
    return reverse("admin:cabinets_cabinet_door_open", args=[cabinet_id, compartment_id])


def test_the_grid_lists_every_door_with_its_parcel_and_state(admin_client) -> None:  # type: ignore[no-untyped-def]
    cabinet = CabinetFactory()
    a01 = CompartmentFactory(cabinet=cabinet, label="A01", door_state=DoorState.CLOSED)
    CompartmentFactory(cabinet=cabinet, label="A02", service_state="out_of_service")
    deposited(a01, tracking_number="DX-1")
    ParcelFactory(
        cabinet=cabinet,
        status=ParcelStatus.PICKED_UP,
        tracking_number="OLD-1",
        deposited_at=timezone.now(),
        picked_up_at=timezone.now(),
    )

    doors = doors_of(admin_client, cabinet.pk)

    assert list(doors) == ["A01", "A02"]
    assert doors["A01"]["tracking_number"] == "DX-1"
    assert (doors["A01"]["door_state"], doors["A01"]["door_label"]) == ("closed", "Closed")
    assert doors["A02"]["tracking_number"] is None
    assert doors["A02"]["service_label"] == "Out of service"
    page = admin_client.get(reverse("admin:cabinets_cabinet_change", args=[cabinet.pk]))
    assert b'id="door-grid"' in page.content and b"cabinets/doors.js" in page.content


def test_a_door_event_shows_in_the_next_poll_with_its_time(admin_client) -> None:  # type: ignore[no-untyped-def]
    cabinet = CabinetFactory()
    CompartmentFactory(cabinet=cabinet, label="B01", door_state=DoorState.CLOSED)
    before = doors_of(admin_client, cabinet.pk)["B01"]["last_event_at"]
    with transaction.atomic():
        door_event_apply(cabinet_id=cabinet.pk, label="B01", event="opened", at=None)
    door = doors_of(admin_client, cabinet.pk)["B01"]
    assert door["door_state"] == "open"
    assert door["last_event_at"] is not None and door["last_event_at"] != before


def test_open_asks_a_reason_and_issues_an_audited_unlock(admin_client, admin_user) -> None:  # type: ignore[no-untyped-def]
    compartment = CompartmentFactory(label="C01")
    url = open_url(compartment.cabinet_id, compartment.pk)

    refused = admin_client.post(url, {"reason": "  "})
    assert refused.status_code == 400
    assert set(refused.json()) == {"error", "message", "details"}
    assert not CabinetCommand.objects.exists()

    answer = admin_client.post(url, {"reason": "recipient called, code lost"})
    assert answer.status_code == 200
    command = CabinetCommand.objects.get()
    assert str(command.pk) == answer.json()["command"]
    assert (command.action, command.compartment_id) == (CommandAction.UNLOCK, compartment.pk)
    assert (command.reason, command.actor_user_id) == ("recipient called, code lost", admin_user.pk)
    assert doors_of(admin_client, compartment.cabinet_id)["C01"]["opening"] is True


def test_open_is_post_only_and_refuses_a_door_of_another_cabinet(admin_client) -> None:  # type: ignore[no-untyped-def]
    here, elsewhere = CompartmentFactory(), CompartmentFactory()
    assert admin_client.get(open_url(here.cabinet_id, here.pk)).status_code == 405
    wrong = admin_client.post(open_url(here.cabinet_id, elsewhere.pk), {"reason": "x"})
    assert wrong.status_code == 404 and wrong.json()["error"] == "not_found"
    missing = admin_client.get(reverse("admin:cabinets_cabinet_doors", args=[999999]))
    assert missing.status_code == 404 and set(missing.json()) == {"error", "message", "details"}
    assert not CabinetCommand.objects.exists()


def test_carrier_staff_see_no_doors_and_open_none(client: Client) -> None:
    compartment = CompartmentFactory()
    staff = CarrierStaffFactory()
    staff.user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_cabinet", "change_cabinet"])
    )
    client.force_login(staff.user)
    doors = client.get(reverse("admin:cabinets_cabinet_doors", args=[compartment.cabinet_id]))
    assert doors.status_code == 404
    opened = client.post(open_url(compartment.cabinet_id, compartment.pk), {"reason": "let me"})
    assert opened.status_code == 404
    assert not CabinetCommand.objects.exists()


def test_platform_staff_who_only_view_cabinets_cannot_open(client: Client) -> None:
    compartment = CompartmentFactory(label="D01")
    user = User.objects.create_user("viewer", password="pw-123456789", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_cabinet"))
    user.groups.add(Group.objects.get_or_create(name="Platform staff")[0])
    client.force_login(user)
    assert "D01" in doors_of(client, compartment.cabinet_id)
    opened = client.post(open_url(compartment.cabinet_id, compartment.pk), {"reason": "curious"})
    assert opened.status_code == 403 and opened.json()["error"] == "permission_denied"
    assert not CabinetCommand.objects.exists()


def test_the_grid_costs_the_same_queries_for_any_cabinet_size(
    admin_client, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    small, large = CabinetFactory(), CabinetFactory()
    CompartmentFactory.create_batch(2, cabinet=small)
    for compartment in CompartmentFactory.create_batch(40, cabinet=large):
        deposited(compartment)
    doors_of(admin_client, small.pk)
    with django_assert_max_num_queries(8):
        assert len(doors_of(admin_client, large.pk)) == 40
