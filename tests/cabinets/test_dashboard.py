"""The fleet dashboard: what it counts and alerts on, and its cost at thousands of rows."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from cabinets.dashboard import dashboard_get, map_points
from cabinets.models import (
    CabinetMessage,
    CabinetState,
    ConnectionState,
    DoorState,
    ServiceState,
)
from cabinets.services.lifecycle import compartment_service_set
from core.actors import Actor
from courier.models import ParcelStatus
from tests.cabinets.bulk import bulk_fleet, bulk_parcels
from tests.factories import CabinetFactory, CarrierFactory, CompartmentFactory, ParcelFactory

pytestmark = pytest.mark.django_db


def test_it_counts_cabinets_by_region_and_compartments_by_state() -> None:
    CabinetFactory(region="Zhejiang", connection_state=ConnectionState.ONLINE)
    CabinetFactory(region="Zhejiang", connection_state=ConnectionState.OFFLINE)
    CabinetFactory(region="Zhejiang", state=CabinetState.MAINTENANCE)
    CabinetFactory(region="Shanghai", state=CabinetState.RETIRED)
    CompartmentFactory.create_batch(3, cabinet=CabinetFactory(region="Shanghai"))

    dashboard = dashboard_get()

    rows = {r.region: r for r in dashboard.regions}
    assert (rows["Zhejiang"].total, rows["Zhejiang"].online, rows["Zhejiang"].offline) == (3, 1, 1)
    assert rows["Zhejiang"].maintenance == 1
    assert rows["Shanghai"].total == 1  # retired cabinets are not counted
    assert dashboard.occupancy["total"] == 3 and dashboard.occupancy["free"] == 3


def test_alerts_find_silent_cabinets_failing_compartments_open_doors_and_expiring_parcels(
    settings,  # type: ignore[no-untyped-def]
) -> None:
    settings.FLEET_ALERT_OFFLINE_AFTER_S = 600
    settings.FLEET_ALERT_DOOR_OPEN_AFTER_S = 300
    settings.FLEET_ALERT_PARCEL_EXPIRY_WITHIN_S = 3600
    now = timezone.now()
    silent = CabinetFactory(
        connection_state=ConnectionState.OFFLINE, last_seen_at=now - timedelta(hours=1)
    )
    CabinetFactory(
        connection_state=ConnectionState.OFFLINE, last_seen_at=now - timedelta(minutes=2)
    )
    CabinetFactory(
        state=CabinetState.MAINTENANCE,
        connection_state=ConnectionState.OFFLINE,
        last_seen_at=now - timedelta(hours=3),
    )
    broken = CompartmentFactory(label="A01")
    compartment_service_set(
        compartment_id=broken.pk,
        to_state=ServiceState.OUT_OF_SERVICE,
        actor=Actor.system("cabinet link"),
        reason="3 failed opens in a row",
    )
    by_hand = CompartmentFactory(label="A02")
    compartment_service_set(
        compartment_id=by_hand.pk,
        to_state=ServiceState.OUT_OF_SERVICE,
        actor=Actor.system("ops"),
    )
    door = CompartmentFactory(label="B01", door_state=DoorState.OPEN)
    CabinetMessage.objects.create(
        id=uuid.uuid4(),
        cabinet=door.cabinet,
        type="door_event",
        payload={"compartment": "B01", "event": "opened"},
    )
    CabinetMessage.objects.filter(cabinet=door.cabinet).update(
        received_at=now - timedelta(minutes=20)
    )
    fresh_door = CompartmentFactory(label="B02", door_state=DoorState.OPEN)
    CabinetMessage.objects.create(
        id=uuid.uuid4(),
        cabinet=fresh_door.cabinet,
        type="door_event",
        payload={"compartment": "B02", "event": "opened"},
    )
    compartment = CompartmentFactory(label="C01")
    expiring = ParcelFactory(
        status=ParcelStatus.READY,
        compartment=compartment,
        cabinet=compartment.cabinet,
        deposited_at=now - timedelta(days=3),
        pickup_deadline=now + timedelta(minutes=30),
    )

    dashboard = dashboard_get(now=now)

    assert [c.pk for c in dashboard.offline.rows] == [silent.pk]
    assert [c.pk for c in dashboard.out_of_service.rows] == [broken.pk]
    assert dashboard.out_of_service.rows[0].last_reason == "3 failed opens in a row"
    assert [c.pk for c in dashboard.doors_open.rows] == [door.pk]
    assert [p.pk for p in dashboard.near_expiry.rows] == [expiring.pk]


def test_parcels_per_day_covers_the_last_two_weeks() -> None:
    ParcelFactory.create_batch(3)
    series = dashboard_get().parcels
    assert len(series.days) == 14 and series.announced[-1] == 3 and sum(series.announced) == 3


def test_the_dashboard_and_its_map_cost_the_same_queries_at_any_size(admin_client) -> None:  # type: ignore[no-untyped-def]
    def cost(url: str) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(url).status_code == 200
        return len(ctx.captured_queries)

    dashboard, map_url = (
        reverse("admin:cabinets_fleet_dashboard"),
        reverse("admin:cabinets_fleet_map"),
    )
    small = bulk_fleet(5, compartments=2, prefix="S")
    bulk_parcels(5, carriers=[CarrierFactory()], cabinets=small)
    before = (cost(dashboard), cost(map_url))

    big = bulk_fleet(3000, compartments=10, prefix="B")
    bulk_parcels(5000, carriers=[CarrierFactory()], cabinets=big)
    after = (cost(dashboard), cost(map_url))

    # the same, but for the four alert lists that count their rows once a list is full
    assert before[0] <= after[0] <= before[0] + 4 and after[1] == before[1]
    assert after[0] <= 20, after
    assert len(map_points()) == 3005


def test_the_dashboard_is_linked_from_the_admin_index(admin_client) -> None:  # type: ignore[no-untyped-def]
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:cabinets_fleet_dashboard") in index
    page = admin_client.get(reverse("admin:cabinets_fleet_dashboard")).content.decode()
    assert "vendor/leaflet/leaflet.js" in page and "vendor/chartjs/chart.umd.min.js" in page
    assert "cdn" not in page.lower() and 'id="fleet-map"' in page
