"""The live rollout page: counts per wave that add up and come from the commands, the targets
before Start, no 100% for cancelled waves, Abort confirmed first (the browser test with a
simulated fleet is in tests/cabinets/test_admin_browser.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.template import Context, Template
from django.test import Client
from django.urls import reverse

from cabinets.models import (
    CabinetCommand,
    CabinetState,
    Rollout,
    RolloutKind,
    RolloutState,
)
from cabinets.rollouts.driver import rollout_advance
from cabinets.rollouts.selectors import WaveCounts
from cabinets.rollouts.services import rollout_create, rollout_start
from cabinets.services.commands import command_receipt_record
from core.actors import Actor
from tests.cabinets.answers import command_answer
from tests.factories import CabinetFactory, CarrierStaffFactory

pytestmark = pytest.mark.django_db
OPERATOR = Actor.system("test operator")


def draft(n: int, plan: str = "4,100%") -> Rollout:
    CabinetFactory.create_batch(n, firmware_version="1.0.0")
    return rollout_create(
        name="fw 2", kind=RolloutKind.FIRMWARE, version="2.0.0", wave_plan=plan, actor=OPERATOR
    )


def running(n: int, plan: str = "4,100%") -> Rollout:
    rollout = draft(n, plan)
    rollout_start(rollout_id=rollout.pk, actor=OPERATOR)
    rollout_advance(rollout_id=rollout.pk)  # as the worker would: plan, send wave 1
    rollout.refresh_from_db()
    return rollout


def progress(client: Client, rollout: Rollout) -> dict[str, Any]:
    response = client.get(reverse("admin:cabinets_rollout_progress", args=[rollout.pk]))
    assert response.status_code == 200, response.content
    return response.json()


def page_cells(client: Client, rollout: Rollout, wave: int) -> dict[str, str]:
    html = client.get(reverse("admin:cabinets_rollout_change", args=[rollout.pk])).content.decode()
    row = re.search(rf'<tr data-wave="{wave}">(.*?)</tr>', html, re.S)
    assert row is not None, html
    return dict(re.findall(r'data-state="(\w+)">\s*([\d%]+)', row.group(1)))


def test_wave_counts_are_not_hidden_from_templates() -> None:
    counts = WaveCounts({"sent": 3, "succeeded": 2})
    rendered = Template("{{ c.by_state.sent }} {{ c.sent }} {{ c.total }} {{ c.failed }}").render(
        Context({"c": counts})
    )
    assert rendered == "3 3 5 0"
    with pytest.raises(KeyError):
        counts["by_state"]


def test_the_page_shows_counts_from_the_commands_that_add_up(admin_client) -> None:  # type: ignore[no-untyped-def]
    rollout = running(10)
    sent = list(CabinetCommand.objects.order_by("issued_at", "pk"))
    assert len(sent) == 4
    command_answer(sent[0], "succeeded")
    command_answer(sent[1], "succeeded")
    command_answer(sent[2], "failed")
    command_receipt_record(cabinet_id=sent[3].cabinet_id, command_id=str(sent[3].pk))
    # No driver tick since: the targets' own states still say "sent"; the page reads commands.

    data = progress(admin_client, rollout)
    first, second = data["waves"]
    assert first["counts"] == {
        "scheduled": 0,
        "sent": 0,
        "received": 1,
        "succeeded": 2,
        "failed": 1,
        "timed_out": 0,
        "skipped": 0,
        "cancelled": 0,
    }
    assert first["total"] == first["size"] == 4 == sum(first["counts"].values())
    assert first["done_pct"] == 75.0
    assert (second["total"], second["counts"]["scheduled"], second["done_pct"]) == (6, 6, 0.0)
    assert data["totals"]["total"] == 10 and data["totals"]["counts"]["succeeded"] == 2

    cells = page_cells(admin_client, rollout, 1)
    assert (cells["succeeded"], cells["failed"], cells["received"], cells["total"]) == (
        "2",
        "1",
        "1",
        "4",
    )
    assert cells["done"] == "75%"


def test_after_an_abort_undelivered_waves_are_not_shown_done(admin_client) -> None:  # type: ignore[no-untyped-def]
    rollout = running(10)
    for command in CabinetCommand.objects.all():
        command_answer(command, "succeeded")
    url = reverse("admin:cabinets_rollout_operation", args=[rollout.pk, "abort"])
    admin_client.post(url, {"confirm": "yes", "reason": "bad build"})
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.ABORTED

    first, second = progress(admin_client, rollout)["waves"]
    assert first["done_pct"] == 100.0
    assert second["counts"]["cancelled"] == 6 and second["done_pct"] == 0.0
    assert page_cells(admin_client, rollout, 2)["done"] == "0%"


def test_the_draft_page_shows_the_targets_before_start(admin_client) -> None:  # type: ignore[no-untyped-def]
    rollout = draft(7, plan="2,50%,100%")
    CabinetFactory(state=CabinetState.PROVISIONING)  # not a target
    html = admin_client.get(reverse("admin:cabinets_rollout_change", args=[rollout.pk]))
    text = html.content.decode()
    assert re.search(r'id="rollout-target-count">7<', text)
    assert "in waves of 2, 2, 3" in text


def test_abort_asks_for_confirmation_with_what_it_cancels(admin_client) -> None:  # type: ignore[no-untyped-def]
    rollout = running(10)
    url = reverse("admin:cabinets_rollout_operation", args=[rollout.pk, "abort"])
    first = admin_client.post(url, {"reason": "bad build"})
    assert first.status_code == 200
    text = first.content.decode()
    assert 'id="abort-unsent">6<' in text and 'id="abort-in-flight">4<' in text
    assert 'value="bad build"' in text
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.RUNNING

    admin_client.post(url, {"reason": "bad build", "confirm": "yes"})
    rollout.refresh_from_db()
    assert (rollout.state, rollout.state_reason) == (RolloutState.ABORTED, "bad build")


def test_the_bulk_abort_asks_for_confirmation(admin_client) -> None:  # type: ignore[no-untyped-def]
    rollout = running(5)
    changelist = reverse("admin:cabinets_rollout_changelist")
    chosen = {"action": "abort_selected", "_selected_action": [rollout.pk]}
    page = admin_client.post(changelist, chosen)
    assert page.status_code == 200 and "Abort 1 rollout(s)?" in page.content.decode()
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.RUNNING
    admin_client.post(changelist, {**chosen, "confirm": "True"})
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.ABORTED


def test_carrier_staff_get_no_rollout_progress(client: Client) -> None:
    rollout = draft(2)
    staff = CarrierStaffFactory()
    staff.user.user_permissions.add(*Permission.objects.filter(codename="view_rollout"))
    client.force_login(staff.user)
    response = client.get(reverse("admin:cabinets_rollout_progress", args=[rollout.pk]))
    assert response.status_code == 404
    assert set(response.json()) == {"error", "message", "details"}


def test_progress_costs_the_same_queries_for_any_rollout_size(
    admin_client, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    small = running(5, plan="100%")
    large = running(60, plan="10,100%")
    progress(admin_client, small)
    with django_assert_max_num_queries(8):
        assert progress(admin_client, large)["totals"]["total"] == 65
