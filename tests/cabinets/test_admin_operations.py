"""The one operations mechanism (core/admin_operations.py) over the cabinets' tables
(cabinets/admin/operations.py): the admin's lifecycle, service and rollout actions are
generated from the transition maps, offered where the map allows the move, refused in the
map's words, and destructive ones state the count before they run."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.urls import reverse

from cabinets.admin.operations import CABINET_LIFECYCLE, COMPARTMENT_SERVICE, ROLLOUT_CONTROL
from cabinets.models import (
    Cabinet,
    CabinetEvent,
    CabinetState,
    Compartment,
    Rollout,
    RolloutKind,
    RolloutState,
    ServiceState,
)
from cabinets.rollouts.services import rollout_create
from core.actors import Actor
from core.admin_operations import OperationTable
from tests.factories import CabinetFactory, CompartmentFactory

TABLES = [CABINET_LIFECYCLE, COMPARTMENT_SERVICE, ROLLOUT_CONTROL]


def draft_rollout() -> Rollout:
    CabinetFactory.create_batch(2, firmware_version="1.0.0")
    return rollout_create(
        name="fw 2",
        kind=RolloutKind.FIRMWARE,
        version="2.0.0",
        wave_plan="1,100%",
        actor=Actor.system("test"),
    )


def map_moves(table: OperationTable) -> set[tuple[str, str]]:
    return {(s, t) for s, targets in table.transitions.items() for t in targets}


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.kind)
def test_every_transition_has_an_operation_and_no_operation_lacks_one(
    table: OperationTable,
) -> None:
    moves = map_moves(table)
    offered = set().union(*(table.moves(op) for op in table.operations))
    assert offered | table.automatic == moves
    assert not offered & table.automatic  # the driver's moves are not offered to operators
    for op in table.operations:
        assert table.moves(op), f"{op.name} moves nothing the map allows"
        assert {(s, op.to_state) for s in op.from_states} <= moves, op.name


@pytest.mark.parametrize(
    ("model", "table", "extra"),
    [
        (Cabinet, CABINET_LIFECYCLE, {"rotate_credentials", "revoke_credentials"}),
        (Compartment, COMPARTMENT_SERVICE, set()),
        (Rollout, ROLLOUT_CONTROL, set()),
    ],
    ids=["cabinet", "compartment", "rollout"],
)
@pytest.mark.django_db
def test_the_changelist_offers_exactly_the_generated_actions(
    admin_client, model, table, extra
) -> None:  # type: ignore[no-untyped-def]
    meta = model._meta
    page = admin_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
    offered = set(re.findall(r'<option value="(\w+)"', page.content.decode())) - {"delete_selected"}
    generated = {op.name + table.suffix for op in table.operations}
    assert offered == generated | extra
    assert {a.__name__ for a in table.actions()} == generated
    assert all(
        name in admin.site._registry[model].get_actions(page.wsgi_request) for name in generated
    )


def retire_selection() -> tuple[list[Cabinet], Cabinet, str, dict[str, object]]:
    """Two active cabinets and a retired one, all selected for Retire on the changelist."""
    live = CabinetFactory.create_batch(2, state=CabinetState.ACTIVE)
    gone = CabinetFactory(state=CabinetState.RETIRED)
    changelist = reverse("admin:cabinets_cabinet_changelist")
    return (
        live,
        gone,
        changelist,
        {"action": "retire", "_selected_action": [c.pk for c in [*live, gone]]},
    )


@pytest.mark.django_db
def test_bulk_retire_states_the_count_asks_a_reason_and_leaves_the_retired_alone(
    admin_client,
) -> None:  # type: ignore[no-untyped-def]
    live, gone, changelist, chosen = retire_selection()
    page = admin_client.post(changelist, chosen).content.decode()
    assert "Retire 2 cabinet(s)?" in page and 'name="reason"' in page
    assert "Confirm for 2" in page and gone.serial not in page
    assert not CabinetEvent.objects.exists()
    admin_client.post(changelist, {**chosen, "reason": ""})  # a blank reason is refused
    assert not CabinetEvent.objects.exists()
    done = admin_client.post(changelist, {**chosen, "reason": "site closed"}, follow=True)
    assert set(CabinetEvent.objects.values_list("cabinet_id", "to_state", "reason")) == {
        (c.pk, CabinetState.RETIRED, "site closed") for c in live
    }
    text = " ".join(str(m) for m in done.context["messages"])
    assert "Left as they are: 1. A cabinet cannot go from 'Retired' to 'Retired'." in text


@pytest.mark.django_db
def test_an_operation_no_selected_state_allows_is_refused_without_a_page(admin_client) -> None:  # type: ignore[no-untyped-def]
    cabinet = CabinetFactory(state=CabinetState.PROVISIONING)
    response = admin_client.post(
        reverse("admin:cabinets_cabinet_changelist"),
        {"action": "maintenance_off", "_selected_action": [cabinet.pk]},
        follow=True,
    )
    text = " ".join(str(m) for m in response.context["messages"])
    # The map allows provisioning → active, but that move is Activate's, not this one's.
    assert "“Back from maintenance” is for a cabinet in 'Maintenance', not 'Provisioning'" in text
    cabinet.refresh_from_db()
    assert cabinet.state == CabinetState.PROVISIONING and not CabinetEvent.objects.exists()


@pytest.mark.django_db
def test_the_change_pages_offer_the_operations_the_map_allows(admin_client) -> None:  # type: ignore[no-untyped-def]
    def links(url: str) -> set[str]:
        return set(re.findall(r'id="operation-(\w+)"', admin_client.get(url).content.decode()))

    def buttons(url: str) -> set[str]:
        return set(re.findall(r'id="rollout-(\w+)"', admin_client.get(url).content.decode()))

    cabinet = CabinetFactory(state=CabinetState.MAINTENANCE)
    assert links(reverse("admin:cabinets_cabinet_change", args=[cabinet.pk])) == {
        "maintenance_off",
        "retire",
    }
    compartment = CompartmentFactory(service_state=ServiceState.OUT_OF_SERVICE)
    assert links(reverse("admin:cabinets_compartment_change", args=[compartment.pk])) == {
        "back_in_service"
    }

    rollout = draft_rollout()
    change = reverse("admin:cabinets_rollout_change", args=[rollout.pk])
    assert {"start", "abort"} <= buttons(change) and not {"pause", "resume"} & buttons(change)
    for state, offered in [
        (RolloutState.COMPLETED, {"retry_failed"}),
        (RolloutState.PAUSED, {"resume", "abort", "retry_failed"}),
        (RolloutState.ABORTED, set()),
    ]:
        Rollout.objects.filter(pk=rollout.pk).update(state=state)
        names = {op.name for op in ROLLOUT_CONTROL.operations}
        assert buttons(change) & names == offered, state


@pytest.mark.django_db
def test_the_bulk_abort_records_the_reason_given_on_its_confirmation(admin_client) -> None:  # type: ignore[no-untyped-def]
    rollout = draft_rollout()
    changelist = reverse("admin:cabinets_rollout_changelist")
    chosen = {"action": "abort_selected", "_selected_action": [rollout.pk]}
    page = admin_client.post(changelist, chosen).content.decode()
    assert "Abort 1 rollout(s)?" in page and 'name="reason"' in page
    admin_client.post(changelist, {**chosen, "confirm": "True", "reason": "wrong build"})
    rollout.refresh_from_db()
    assert (rollout.state, rollout.state_reason) == (RolloutState.ABORTED, "wrong build")


@pytest.mark.django_db
def test_a_cabinets_serial_and_states_are_not_editable_in_its_change_form(admin_client) -> None:  # type: ignore[no-untyped-def]
    cabinet = CabinetFactory(serial="SH-RO-0001", state=CabinetState.ACTIVE)
    change = admin_client.get(reverse("admin:cabinets_cabinet_change", args=[cabinet.pk]))
    fields = set(
        re.findall(r'<(?:input|select|textarea)[^>]* name="(\w+)"', change.content.decode())
    )
    assert "name" in fields  # the form is there
    assert not {"serial", "state", "connection_state", "firmware_version"} & fields
    added = admin_client.get(reverse("admin:cabinets_cabinet_add")).content.decode()
    assert 'name="serial"' in added


@pytest.mark.django_db
def test_a_changelist_filtered_on_a_state_offers_only_the_moves_from_it(admin_client) -> None:  # type: ignore[no-untyped-def]
    def offered(query: str) -> set[str]:
        page = admin_client.get(reverse("admin:cabinets_cabinet_changelist") + query)
        return set(re.findall(r'<option value="(\w+)"', page.content.decode()))

    CabinetFactory(state=CabinetState.MAINTENANCE)
    lifecycle = {op.name for op in CABINET_LIFECYCLE.operations}
    assert offered("?state__exact=maintenance") & lifecycle == {"maintenance_off", "retire"}
    assert offered("?state__exact=retired") & lifecycle == set()
    assert offered("") & lifecycle == lifecycle  # unfiltered: the selection decides
    # Credential actions are not lifecycle moves: still offered.
    assert "revoke_credentials" in offered("?state__exact=retired")
