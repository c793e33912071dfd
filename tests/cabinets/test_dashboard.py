"""The fleet dashboard: what it counts and alerts on, and its cost at thousands of rows."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from cabinets import dashboard as dashboard_module
from cabinets.dashboard import dashboard_get, map_points
from cabinets.models import (
    Cabinet,
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
    # No asset from another host (the page works with no internet). Not a search for "cdn":
    # the CSRF token and the CSP nonce are random and once held those three letters.
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", page)
    assert 'id="fleet-map"' in page


def test_every_cabinet_is_counted_once_and_never_connected_ones_apart(admin_client) -> None:  # type: ignore[no-untyped-def]
    CabinetFactory(region="Zhejiang", connection_state=ConnectionState.ONLINE)
    CabinetFactory(region="Zhejiang", connection_state=ConnectionState.OFFLINE)
    CabinetFactory(region="Zhejiang", connection_state=ConnectionState.NEVER)
    CabinetFactory(region="Zhejiang", state=CabinetState.MAINTENANCE)
    CabinetFactory(
        region="Zhejiang", state=CabinetState.PROVISIONING, connection_state=ConnectionState.NEVER
    )
    CabinetFactory(region="Zhejiang", state=CabinetState.RETIRED)

    dashboard = dashboard_get()

    (row,) = dashboard.regions
    assert (row.online, row.offline, row.never, row.maintenance, row.provisioning) == (
        1,
        1,
        1,
        1,
        1,
    )
    parts = ("online", "offline", "never", "maintenance", "provisioning")
    assert sum(dashboard.totals[k] for k in parts) == dashboard.totals["total"] == 5
    page = admin_client.get(reverse("admin:cabinets_fleet_dashboard")).content.decode()
    assert 'id="kpi-offline">1<' in page and 'id="kpi-never">1<' in page
    assert 'id="kpi-provisioning">1<' in page and 'id="kpi-total">5<' in page
    charts = json.loads(re.search(r'id="fleet-data"[^>]*>(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    assert {k: charts["regions"][k] for k in parts} == {k: [1] for k in parts}


def test_active_cabinets_that_never_connected_raise_an_alert() -> None:
    never = CabinetFactory(connection_state=ConnectionState.NEVER)
    CabinetFactory(state=CabinetState.PROVISIONING, connection_state=ConnectionState.NEVER)
    CabinetFactory(connection_state=ConnectionState.ONLINE)
    alert = dashboard_get().never_connected
    assert (alert.count, [c.pk for c in alert.rows]) == (1, [never.pk])


def test_the_page_says_as_of_when_and_refreshes_itself(admin_client) -> None:  # type: ignore[no-untyped-def]
    page = admin_client.get(reverse("admin:cabinets_fleet_dashboard") + "?refresh=abc")
    text = page.content.decode()
    assert page.status_code == 200 and 'id="fleet-as-of"' in text
    assert "refreshes itself every 30 s" in text
    fast = admin_client.get(reverse("admin:cabinets_fleet_dashboard") + "?refresh=1")
    assert "refreshes itself every 2 s" in fast.content.decode()  # clamped


def map_of(client, **query: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    response = client.get(reverse("admin:cabinets_fleet_map"), query)
    assert response.status_code == 200, response.content
    return response.json()


def test_the_map_sends_points_when_few_and_grid_clusters_at_fleet_scale(
    admin_client, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    bulk_fleet(300, compartments=0, prefix="M")  # lat 30-32, lng 120-126
    few = map_of(admin_client, zoom="5")
    assert few["mode"] == "points" and len(few["points"]) == few["total"] == 300

    monkeypatch.setattr(dashboard_module, "MAP_POINTS_MAX", 50)
    coarse = map_of(admin_client, zoom="4")
    fine = map_of(admin_client, zoom="9")
    assert coarse["mode"] == fine["mode"] == "clusters"
    for view in (coarse, fine):
        assert sum(c[2] for c in view["clusters"]) == 300
        assert all(sum(c[3].values()) == c[2] for c in view["clusters"])
    assert len(coarse["clusters"]) < len(fine["clusters"]) <= 300

    inside = map_of(admin_client, zoom="9", bbox="29.9,119.9,31.0,121.0")
    expected = Cabinet.objects.filter(
        latitude__gte=29.9, latitude__lte=31.0, longitude__gte=119.9, longitude__lte=121.0
    ).count()
    assert 0 < inside["total"] == expected < 300


def test_a_bad_map_query_is_a_clear_400(admin_client) -> None:  # type: ignore[no-untyped-def]
    for query in ({"zoom": "x"}, {"bbox": "1,2,3"}, {"bbox": "5,0,1,1"}, {"bbox": "a,b,c,d"}):
        response = admin_client.get(reverse("admin:cabinets_fleet_map"), query)
        assert response.status_code == 400, query
        assert response.json()["error"] == "invalid_map_query"
        assert set(response.json()) == {"error", "message", "details"}
