"""The fleet admin: changelists at scale (bounded queries), operations through services,
credentials shown once, carrier staff limited to their own parcels."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cabinet_agent import protocol
from cabinets.models import (
    CabinetCommand,
    CabinetCredential,
    CabinetEvent,
    CabinetState,
    CommandAction,
    CompartmentEvent,
    Rollout,
    RolloutEvent,
    RolloutState,
    ServiceState,
)
from cabinets.services.credentials import cabinet_credential_issue
from core.actors import Actor
from courier.models import Parcel
from tests.cabinets.bulk import bulk_fleet, bulk_parcels
from tests.factories import (
    CabinetFactory,
    CarrierFactory,
    CarrierStaffFactory,
    CompartmentFactory,
    ParcelFactory,
)

pytestmark = pytest.mark.django_db


def queries_for(client: Any, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(ctx.captured_queries)


CHANGELISTS = [
    "admin:cabinets_cabinet_changelist",
    "admin:cabinets_compartment_changelist",
    "admin:cabinets_cabinetcommand_changelist",
    "admin:cabinets_cabinetcredential_changelist",
    "admin:cabinets_cabinetmessage_changelist",
    "admin:cabinets_rollout_changelist",
    "admin:courier_parcel_changelist",
]


def test_changelists_cost_the_same_queries_for_ten_or_thousands_of_rows(admin_client) -> None:  # type: ignore[no-untyped-def]
    small = bulk_fleet(10, compartments=2, prefix="SMALL")
    carrier = CarrierFactory()
    bulk_parcels(10, carriers=[carrier], cabinets=small)
    before = {name: queries_for(admin_client, reverse(name)) for name in CHANGELISTS}

    big = bulk_fleet(2500, compartments=8, prefix="BIG")
    bulk_parcels(3000, carriers=[carrier, CarrierFactory()], cabinets=big)
    for cabinet in big[:150]:
        cabinet_credential_issue(cabinet=cabinet, actor=Actor.system("test"))
    after = {name: queries_for(admin_client, reverse(name)) for name in CHANGELISTS}

    assert after == before
    assert max(after.values()) <= 15, after


def test_the_cabinet_changelist_with_filters_and_search_stays_bounded(
    admin_client,
    django_assert_max_num_queries,  # type: ignore[no-untyped-def]
) -> None:
    bulk_fleet(2000, compartments=6)
    url = reverse("admin:cabinets_cabinet_changelist")
    for query in (
        "?region=Zhejiang&state=active",
        "?connection_state=offline&firmware_version=1.0.0",
        "?q=Cabinet+1",
        "?o=10",
    ):
        with django_assert_max_num_queries(15):
            response = admin_client.get(url + query)
        assert response.status_code == 200
    assert b"/ 6" in response.content  # free / all compartments column


def test_the_cabinet_page_shows_compartments_telemetry_and_command_log(admin_client) -> None:  # type: ignore[no-untyped-def]
    cabinet = CabinetFactory(telemetry={"temperature_c": 21.5, "power": "mains"})
    compartment = CompartmentFactory(cabinet=cabinet, label="A01")
    CabinetCommand.objects.create(
        id="7056113a-0ad5-45c1-b427-c70329bc54b4",
        cabinet=cabinet,
        compartment=compartment,
        action=CommandAction.UNLOCK,
        issued_at="2026-01-01T00:00:00Z",
        expires_at="2026-01-01T00:01:00Z",
        actor_kind="staff",
        actor_label="ops",
        reason="stuck door",
    )
    issued = cabinet_credential_issue(cabinet=cabinet, actor=Actor.system("test"))
    response = admin_client.get(reverse("admin:cabinets_cabinet_change", args=[cabinet.pk]))
    body = response.content.decode()
    assert "&quot;temperature_c&quot;: 21.5" in body
    assert "stuck door" in body and "A01" in body
    secret_hash = CabinetCredential.objects.get(cabinet=cabinet).secret_hash
    assert secret_hash not in body and issued.credential not in body
    credential_page = admin_client.get(
        reverse(
            "admin:cabinets_cabinetcredential_change",
            args=[CabinetCredential.objects.get(cabinet=cabinet).pk],
        )
    )
    assert secret_hash not in credential_page.content.decode()


def test_maintenance_goes_through_the_service_and_is_audited(admin_client, admin_user) -> None:  # type: ignore[no-untyped-def]
    cabinet = CabinetFactory()
    url = reverse("admin:cabinets_cabinet_operation", args=[cabinet.pk, "maintenance_on"])
    response = admin_client.post(url, {"reason": "screen replaced"})
    assert response.status_code == 302
    cabinet.refresh_from_db()
    assert cabinet.state == CabinetState.MAINTENANCE
    event = CabinetEvent.objects.get(cabinet=cabinet)
    assert (event.actor_user_id, event.reason) == (admin_user.pk, "screen replaced")

    admin_client.post(
        reverse("admin:cabinets_cabinet_changelist"),
        {"action": "maintenance_off", "_selected_action": [cabinet.pk]},
    )
    cabinet.refresh_from_db()
    assert cabinet.state == CabinetState.ACTIVE


def test_the_state_cannot_be_edited_in_the_form(admin_client) -> None:  # type: ignore[no-untyped-def]
    cabinet = CabinetFactory(state=CabinetState.ACTIVE)
    page = admin_client.get(reverse("admin:cabinets_cabinet_change", args=[cabinet.pk]))
    assert 'name="state"' not in page.content.decode()


def test_issuing_a_credential_by_hand_shows_the_new_one_once(admin_client) -> None:  # type: ignore[no-untyped-def]
    cabinet = CabinetFactory()
    old = cabinet_credential_issue(cabinet=cabinet, actor=Actor.system("test"))
    url = reverse("admin:cabinets_cabinet_operation", args=[cabinet.pk, "reissue_credential"])
    response = admin_client.post(url, {"reason": "technician left"}, follow=True)
    body = response.content.decode()
    assert response.redirect_chain, "post-redirect-get: reloading cannot rotate again"
    assert "no-store" in response["Cache-Control"]
    active = CabinetCredential.objects.get(cabinet=cabinet, revoked_at__isnull=True)
    assert active.key_id != old.credential.split(".")[0]
    shown = re.search(rf"{active.key_id}\.[A-Za-z0-9_-]{{20,}}", body)
    assert shown, "the new credential is on the page"
    assert protocol.secret_matches(shown[0].split(".", 1)[1], active.secret_hash)
    # Nowhere else afterwards: the cabinet page never shows it, nor the result page reloaded.
    again = admin_client.get(reverse("admin:cabinets_cabinet_change", args=[cabinet.pk]))
    assert shown[0] not in again.content.decode()
    reloaded = admin_client.get(response.redirect_chain[-1][0]).content.decode()
    assert shown[0] not in reloaded and "already shown" in reloaded
    assert CabinetCredential.objects.filter(cabinet=cabinet).count() == 2


def test_rotating_a_credential_delivers_it_over_the_link_and_shows_no_secret(admin_client) -> None:  # type: ignore[no-untyped-def]
    cabinet = CabinetFactory()
    old = cabinet_credential_issue(cabinet=cabinet, actor=Actor.system("test"))
    url = reverse("admin:cabinets_cabinet_operation", args=[cabinet.pk, "rotate_credential"])
    response = admin_client.post(url, {"reason": "yearly rotation"}, follow=True)
    body = response.content.decode()
    assert response.redirect_chain and "Rotation started for 1 cabinet(s)" in body
    new = CabinetCredential.objects.get(cabinet=cabinet, expires_at__isnull=True)
    assert not re.search(rf"{new.key_id}\.[A-Za-z0-9_-]{{20,}}", body)
    # Both valid during the overlap; the command that carries the new one is pending.
    assert CabinetCredential.objects.filter(cabinet=cabinet, revoked_at__isnull=True).count() == 2
    old_key_id = old.credential.split(".")[0]
    assert CabinetCommand.objects.get(cabinet=cabinet).payload["previous_key_id"] == old_key_id
    page = admin_client.get(reverse("admin:cabinets_cabinet_change", args=[cabinet.pk]))
    assert f"active: {new.key_id}" in page.content.decode()
    assert f"rotating from {old_key_id}, accepted until" in page.content.decode()


def test_revoking_asks_for_a_reason_and_revokes(admin_client) -> None:  # type: ignore[no-untyped-def]
    cabinet = CabinetFactory()
    cabinet_credential_issue(cabinet=cabinet, actor=Actor.system("test"))
    changelist = reverse("admin:cabinets_cabinet_changelist")
    form = admin_client.post(
        changelist, {"action": "revoke_credentials", "_selected_action": [cabinet.pk]}
    )
    assert b'name="reason"' in form.content
    admin_client.post(
        changelist,
        {"action": "revoke_credentials", "_selected_action": [cabinet.pk], "reason": "stolen"},
    )
    credential = CabinetCredential.objects.get(cabinet=cabinet)
    assert credential.revoked_at is not None and credential.revoked_reason == "stolen"


def test_remote_open_issues_an_audited_unlock(admin_client, admin_user) -> None:  # type: ignore[no-untyped-def]
    compartment = CompartmentFactory()
    url = reverse("admin:cabinets_compartment_operation", args=[compartment.pk, "remote_open"])
    assert admin_client.post(url, {"reason": ""}).status_code == 200  # a reason is required
    assert not CabinetCommand.objects.exists()
    admin_client.post(url, {"reason": "recipient locked out, called support"})
    command = CabinetCommand.objects.get()
    assert (command.action, command.compartment_id) == (CommandAction.UNLOCK, compartment.pk)
    assert command.reason == "recipient locked out, called support"
    assert (command.actor_kind, command.actor_user_id) == ("staff", admin_user.pk)


def test_out_of_service_and_back(admin_client) -> None:  # type: ignore[no-untyped-def]
    compartment = CompartmentFactory()
    out = reverse("admin:cabinets_compartment_operation", args=[compartment.pk, "out_of_service"])
    admin_client.post(out, {"reason": "broken hinge"})
    compartment.refresh_from_db()
    assert compartment.service_state == ServiceState.OUT_OF_SERVICE
    assert compartment.service_reason == "broken hinge"
    back = reverse("admin:cabinets_compartment_operation", args=[compartment.pk, "back_in_service"])
    admin_client.post(back, {"reason": "hinge fixed"})
    compartment.refresh_from_db()
    assert compartment.service_state == ServiceState.IN_SERVICE
    assert list(
        CompartmentEvent.objects.filter(compartment=compartment)
        .order_by("at", "id")
        .values_list("reason", flat=True)
    ) == ["broken hinge", "hinge fixed"]


def test_rollouts_are_created_started_and_paused_from_the_admin(admin_client, admin_user) -> None:  # type: ignore[no-untyped-def]
    CabinetFactory.create_batch(3)
    response = admin_client.post(
        reverse("admin:cabinets_rollout_add"),
        {
            "name": "fw 2",
            "kind": "firmware",
            "version": "2.0.0",
            "payload": "{}",
            "wave_plan": "1, 100%",
            "success_threshold_pct": 95,
            "error_threshold_pct": 20,
            "min_sample": 1,
            "command_ttl_s": 3600,
        },
    )
    assert response.status_code == 302, response.content[:2000]
    rollout = Rollout.objects.get()
    change = reverse("admin:cabinets_rollout_change", args=[rollout.pk])
    assert b'id="rollout-start"' in admin_client.get(change).content

    admin_client.post(reverse("admin:cabinets_rollout_operation", args=[rollout.pk, "start"]))
    admin_client.post(
        reverse("admin:cabinets_rollout_operation", args=[rollout.pk, "pause"]),
        {"reason": "lunch"},
    )
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.PAUSED
    assert list(
        RolloutEvent.objects.filter(rollout=rollout, actor_user=admin_user)
        .order_by("at", "id")
        .values_list("action", flat=True)
    ) == ["created", "started", "paused"]
    page = admin_client.get(change).content.decode()
    assert 'id="rollout-resume"' in page and "lunch" in page
    # operations are POST only
    get = admin_client.get(reverse("admin:cabinets_rollout_operation", args=[rollout.pk, "abort"]))
    assert get.status_code == 403


# --- Carrier staff ---------------------------------------------------------------------------


@pytest.fixture
def carrier_staff_client(client):  # type: ignore[no-untyped-def]
    staff = CarrierStaffFactory(carrier=CarrierFactory(code="own"))
    staff.user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_parcel", "change_parcel", "view_parcelevent", "view_carrier"]
        )
    )
    client.force_login(staff.user)
    client.get("/admin/")  # the first staff request fixes the session's end (one write)
    client.carrier = staff.carrier
    return client


def test_carrier_staff_see_only_their_carriers_parcels(carrier_staff_client) -> None:  # type: ignore[no-untyped-def]
    own = ParcelFactory(carrier=carrier_staff_client.carrier, tracking_number="OWN-1")
    other = ParcelFactory(
        carrier=CarrierFactory(code="rival", name="Rival Express"), tracking_number="RIVAL-1"
    )

    listing = carrier_staff_client.get(reverse("admin:courier_parcel_changelist")).content.decode()
    assert "OWN-1" in listing and "RIVAL-1" not in listing
    assert "Rival Express" not in listing  # not even in a filter
    assert (
        carrier_staff_client.get(reverse("admin:courier_parcel_change", args=[own.pk])).status_code
        == 200
    )
    # another carrier's parcel does not exist for them
    response = carrier_staff_client.get(reverse("admin:courier_parcel_change", args=[other.pk]))
    assert response.status_code == 302  # redirected to the index: "doesn't exist"
    carriers = carrier_staff_client.get(
        reverse("admin:courier_carrier_changelist")
    ).content.decode()
    assert "Rival Express" not in carriers
    events = carrier_staff_client.get(reverse("admin:courier_parcelevent_changelist"))
    assert events.status_code == 200


def test_carrier_staff_cannot_change_or_add_parcels(carrier_staff_client) -> None:  # type: ignore[no-untyped-def]
    own = ParcelFactory(carrier=carrier_staff_client.carrier)
    response = carrier_staff_client.post(
        reverse("admin:courier_parcel_change", args=[own.pk]), {"size": "L"}
    )
    own.refresh_from_db()
    assert own.size == "S"
    assert response.status_code in (302, 403)
    assert carrier_staff_client.get(reverse("admin:courier_parcel_add")).status_code == 403


def test_carrier_staff_see_nothing_of_the_fleet_admin(carrier_staff_client) -> None:  # type: ignore[no-untyped-def]
    for name in (
        "admin:cabinets_fleet_dashboard",
        "admin:cabinets_cabinet_changelist",
        "admin:cabinets_rollout_changelist",
        "admin:cabinets_cabinet_import",
        "admin:courier_carrierstaff_changelist",
    ):
        assert carrier_staff_client.get(reverse(name)).status_code == 403, name


def test_the_parcel_changelist_for_carrier_staff_is_bounded(carrier_staff_client) -> None:  # type: ignore[no-untyped-def]
    cabinets = bulk_fleet(50, compartments=1)
    bulk_parcels(10, carriers=[carrier_staff_client.carrier], cabinets=cabinets)
    url = reverse("admin:courier_parcel_changelist")
    small = queries_for(carrier_staff_client, url)
    bulk_parcels(2000, carriers=[carrier_staff_client.carrier, CarrierFactory()], cabinets=cabinets)
    assert Parcel.objects.count() == 2010
    assert queries_for(carrier_staff_client, url) == small


# --- Bulk operations: confirmation, reasons, labels (issue 13, item 1) -----------------------


def test_bulk_rotation_asks_for_confirmation_stating_the_count_and_a_reload_rotates_nothing(
    admin_client,  # type: ignore[no-untyped-def]
) -> None:
    cabinets = CabinetFactory.create_batch(3)
    for cabinet in cabinets:
        cabinet_credential_issue(cabinet=cabinet, actor=Actor.system("test"))
    changelist = reverse("admin:cabinets_cabinet_changelist")
    selected = {"action": "rotate_credentials", "_selected_action": [c.pk for c in cabinets]}

    confirm = admin_client.post(changelist, selected)
    page = confirm.content.decode()
    assert confirm.status_code == 200 and "Rotate the credentials of 3 cabinet(s)?" in page
    assert "stays online" in page and 'name="confirm"' in page
    assert CabinetCredential.objects.count() == 3  # nothing rotated yet

    done = admin_client.post(changelist, {**selected, "confirm": "on"}, follow=True)
    assert done.redirect_chain, "post-redirect-get: reloading cannot rotate again"
    assert "Rotation started for 3 cabinet(s)" in done.content.decode()
    # The old credentials stay valid beside the new ones until each cabinet switches.
    assert CabinetCredential.objects.filter(revoked_at__isnull=True).count() == 6
    assert CabinetCommand.objects.filter(action="credential_rotate").count() == 3

    admin_client.get(done.redirect_chain[-1][0])
    assert CabinetCredential.objects.count() == 6


def test_bulk_maintenance_asks_for_a_reason_like_the_single_button(admin_client) -> None:  # type: ignore[no-untyped-def]
    cabinets = CabinetFactory.create_batch(2, state=CabinetState.ACTIVE)
    changelist = reverse("admin:cabinets_cabinet_changelist")
    selected = {"action": "maintenance_on", "_selected_action": [c.pk for c in cabinets]}
    form = admin_client.post(changelist, selected)
    assert b'name="reason"' in form.content and b"2 cabinets" in form.content
    assert not CabinetEvent.objects.exists()
    admin_client.post(changelist, {**selected, "reason": ""})  # a blank reason is refused
    assert not CabinetEvent.objects.exists()
    admin_client.post(changelist, {**selected, "reason": "typhoon warning"})
    assert set(CabinetEvent.objects.values_list("to_state", "reason")) == {
        ("maintenance", "typhoon warning")
    }


def test_a_refused_transition_reads_in_state_labels(admin_client) -> None:  # type: ignore[no-untyped-def]
    cabinet = CabinetFactory(state=CabinetState.MAINTENANCE)
    response = admin_client.post(
        reverse("admin:cabinets_cabinet_changelist"),
        {"action": "maintenance_on", "_selected_action": [cabinet.pk], "reason": "again"},
        follow=True,
    )
    text = " ".join(str(m) for m in response.context["messages"])
    assert "cannot go from 'Maintenance' to 'Maintenance'" in text
    assert "CabinetState" not in text


def test_a_selection_across_pages_is_kept_through_the_confirmation(admin_client) -> None:  # type: ignore[no-untyped-def]
    cabinets = CabinetFactory.create_batch(3, state=CabinetState.ACTIVE)
    changelist = reverse("admin:cabinets_cabinet_changelist")
    # "Select all 3" with only the first row's box on the page ticked.
    selected = {
        "action": "maintenance_on",
        "_selected_action": [cabinets[0].pk],
        "select_across": "1",
    }
    form = admin_client.post(changelist, selected)
    assert b'name="select_across" value="1"' in form.content and b"3 cabinets" in form.content
    admin_client.post(changelist, {**selected, "reason": "depot move"})
    assert CabinetEvent.objects.filter(reason="depot move").count() == 3


def test_compartments_are_neither_added_nor_deleted_nor_moved_in_the_admin(admin_client) -> None:  # type: ignore[no-untyped-def]
    compartment = CompartmentFactory(label="A01")
    other = CabinetFactory()
    assert admin_client.get(reverse("admin:cabinets_compartment_add")).status_code == 403
    delete = reverse("admin:cabinets_compartment_delete", args=[compartment.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    change = reverse("admin:cabinets_compartment_change", args=[compartment.pk])
    admin_client.post(change, {"cabinet": other.pk, "label": "Z99", "size": "L"})
    compartment.refresh_from_db()
    assert (compartment.cabinet_id, compartment.label) != (other.pk, "Z99")
    assert compartment.label == "A01"
    listing = admin_client.get(reverse("admin:cabinets_compartment_changelist")).content.decode()
    assert "delete_selected" not in listing
