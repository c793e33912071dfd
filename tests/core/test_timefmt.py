"""One time-zone policy: every time an operator reads is in TIME_ZONE, in one format with its
offset, and the headers say which zone."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import translation

from cabinets.models import Compartment, RolloutKind
from cabinets.rollouts.services import rollout_create, rollout_start
from cabinets.services.commands import compartment_unlock
from cabinets.services.credentials import cabinet_credential_issue
from cabinets.services.lifecycle import compartments_create
from cabinets.services.liveness import cabinet_telemetry_record
from core.actors import Actor
from core.timefmt import admin_time, time_zone_label
from tests.factories import CabinetFactory

SHOWN = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}")
OPERATOR = Actor.system("test")


def test_a_time_is_shown_in_the_operators_zone_with_its_offset(settings) -> None:  # type: ignore[no-untyped-def]
    moment = datetime(2026, 12, 2, 13, 38, 20, tzinfo=UTC)
    settings.TIME_ZONE = "Asia/Shanghai"
    assert admin_time(moment) == "2026-12-02 21:38:20 +0800"
    assert time_zone_label(moment) == "UTC+08:00"
    with translation.override("zh-hans"):
        assert admin_time(moment) == "2026-12-02 21:38:20 +0800"  # one format in every language
    settings.TIME_ZONE = "America/St_Johns"  # a half-hour offset, behind UTC
    assert admin_time(moment) == "2026-12-02 10:08:20 -0330"
    assert time_zone_label(moment) == "UTC-03:30"
    assert admin_time(None) == "—"


def _shown(html: str, after: str) -> datetime:
    """The first time shown after `after` in the page."""
    found = SHOWN.search(html, html.index(after))
    assert found, f"no time after {after!r}"
    return datetime.strptime(found.group(0)[:19], "%Y-%m-%d %H:%M:%S")


@pytest.mark.django_db
def test_an_unlock_and_the_telemetry_it_caused_read_in_order_in_one_zone(admin_client) -> None:  # type: ignore[no-untyped-def]
    cabinet = CabinetFactory(state="active")
    compartments_create(cabinet=cabinet, layout=[("A01", "S")])
    cabinet_credential_issue(cabinet=cabinet, actor=OPERATOR)
    compartment = Compartment.objects.get(cabinet=cabinet, label="A01")
    compartment_unlock(compartment=compartment, actor=OPERATOR, reason="parcel stuck")
    # the door it opened, in the next heartbeat
    cabinet_telemetry_record(cabinet_id=cabinet.pk, telemetry={"doors": {"A01": "open"}})

    page = admin_client.get(reverse("admin:cabinets_cabinet_change", args=[cabinet.pk]))
    html = page.content.decode()
    zone = f"({time_zone_label()})"
    assert f"issued {zone}" in html and f"Telemetry at {zone}" in html, re.findall(
        r".{40}UTC.{20}", html
    )
    # every time on the page (status, telemetry, command log, compartments) in one zone
    offsets = {m.group(0)[-5:] for m in SHOWN.finditer(html)}
    assert offsets == {"+0800"}, offsets
    issued = _shown(html, f"issued {zone}</th>")
    telemetry = _shown(html, f"Telemetry at {zone}")
    # the unlock comes first, and not eight hours before what it caused
    assert timedelta(0) <= telemetry - issued < timedelta(minutes=1)
    # and every admin page says which zone that is
    assert "All times: Asia/Shanghai (UTC+08:00)" in html

    commands = admin_client.get(
        reverse("admin:cabinets_cabinetcommand_changelist")
    ).content.decode()
    assert f"Issued {zone}" in commands
    assert _shown(commands, "<tbody") == issued


@pytest.mark.django_db
def test_the_rollout_audit_trail_uses_the_same_format_and_says_the_zone(admin_client) -> None:  # type: ignore[no-untyped-def]
    CabinetFactory(state="active")
    rollout = rollout_create(name="fw", kind=RolloutKind.FIRMWARE, version="2.0", actor=OPERATOR)
    rollout_start(rollout_id=rollout.pk, actor=OPERATOR)
    html = admin_client.get(
        reverse("admin:cabinets_rollout_change", args=[rollout.pk])
    ).content.decode()
    assert f"when ({time_zone_label()})" in html
    trail = html[html.index('id="rollout-events"') :]
    assert SHOWN.search(trail) and SHOWN.search(trail).group(0).endswith("+0800")  # type: ignore[union-attr]
    events = admin_client.get(reverse("admin:cabinets_rolloutevent_changelist")).content.decode()
    assert f"At ({time_zone_label()})" in events
    assert SHOWN.search(events[events.index("<tbody") :])
