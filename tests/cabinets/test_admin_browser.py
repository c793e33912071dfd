"""The admin in a real browser (Playwright + Debian Chromium, headless): log in, the fleet
dashboard draws its map and charts, a rollout is started and paused. Screenshots are kept in
test-artifacts/."""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cabinets.models import CabinetState, ConnectionState, Rollout, RolloutState
from cabinets.rollouts.services import rollout_create
from core.actors import Actor
from tests.factories import CabinetFactory, CompartmentFactory, ParcelFactory, StaffUserFactory
from tests.live.wait import eventually

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "browser-password-123"


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test
    # itself are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not os.path.exists(CHROMIUM):
        reason = f"Debian chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI") == "true" or os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def fleet() -> None:
    StaffUserFactory(username="ops", password=PASSWORD)
    for i, (lat, lng) in enumerate([("31.23", "121.47"), ("30.27", "120.15"), ("32.06", "118.80")]):
        cabinet = CabinetFactory(
            latitude=Decimal(lat),
            longitude=Decimal(lng),
            region=["Shanghai", "Zhejiang", "Jiangsu"][i],
            connection_state=ConnectionState.ONLINE if i else ConnectionState.OFFLINE,
        )
        CompartmentFactory.create_batch(4, cabinet=cabinet)
        ParcelFactory.create_batch(2, cabinet=cabinet)
    CabinetFactory(
        state=CabinetState.MAINTENANCE, latitude=Decimal("23.13"), longitude=Decimal("113.26")
    )


def login(page: Any, live_server: Any) -> None:
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def logged_in_page(
    browser: Any, server: Any, path: str, *, ready: str, height: int = 900
) -> tuple[Any, list[str]]:
    """A staff page open after login, its script ready (`ready` is a JS condition), marked so
    that a reload would show (`window.sameDocument`); and the page's script errors."""
    page = browser.new_page(viewport={"width": 1440, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, server)
    page.goto(f"{server.url}{path}")
    # A function, not an expression: Playwright polls an expression with eval(), which the
    # CSP forbids (it only shows when the condition is not already true at the first check).
    page.wait_for_function(f"() => {ready}", timeout=15_000)
    page.evaluate("window.sameDocument = true")
    return page, errors


def test_the_dashboard_draws_its_map_and_charts(live_server, fleet, browser) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    login(page, live_server)
    page.click("text=Fleet dashboard")
    page.wait_for_function(
        "() => window.fleetDashboard && window.fleetDashboard.ready", timeout=15_000
    )

    assert page.evaluate("window.fleetDashboard.markerCount") == 4
    assert page.locator("#fleet-map path.leaflet-interactive").count() == 4
    for canvas_id in ("chart-regions", "chart-occupancy", "chart-parcels"):
        drawn = page.evaluate(
            """id => {
                const c = document.getElementById(id);
                const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
                return n;
            }""",
            canvas_id,
        )
        assert drawn > 500, f"{canvas_id} drew {drawn} pixels"
    assert "Shanghai" in page.inner_text("#fleet-regions")
    page.screenshot(path=str(ARTIFACTS / "fleet-dashboard.png"), full_page=True)
    assert errors == []


def test_a_rollout_is_started_and_paused_in_the_browser(
    browser, live_server, fleet, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    rollout = rollout_create(
        name="firmware 2.0",
        kind="firmware",
        version="2.0.0",
        wave_plan="1,100%",
        actor=Actor.system("test"),
    )
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    login(page, live_server)
    page.goto(f"{live_server.url}/admin/cabinets/rollout/{rollout.pk}/change/")
    page.click("#rollout-start")
    page.wait_for_selector("#rollout-pause")
    assert page.inner_text("#rollout-state") == "Running"
    # the worker (eager in tests) planned the waves and sent wave 1
    assert "1" in page.inner_text("#rollout-progress")
    page.screenshot(path=str(ARTIFACTS / "rollout-running.png"), full_page=True)

    page.fill("#rollout-pause-reason", "checking wave 1")
    page.click("#rollout-pause")
    page.wait_for_selector("#rollout-resume")
    assert page.inner_text("#rollout-state") == "Paused"
    page.screenshot(path=str(ARTIFACTS / "rollout-paused.png"), full_page=True)

    rollout.refresh_from_db()
    assert rollout.state == RolloutState.PAUSED and rollout.state_reason == "checking wave 1"
    assert Rollout.objects.get().planned_at is not None


def test_bulk_rotation_asks_for_confirmation_with_the_count_and_the_cabinet_stays_online(
    browser, live_server, fleet, asgi_server_process, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import User

    from cabinets.models import Cabinet, CabinetCredential
    from cabinets.presence import presence_snapshot
    from cabinets.services.credentials import cabinet_credential_issue
    from cabinets.services.liveness import cabinets_liveness_sync
    from core.staff_otp import staff_totp_enroll
    from tests.cabinets.connected import PresenceWatch, connected_cabinet
    from tests.cabinets.test_link_integration import eventually
    from tests.staff import totp_token

    for cabinet in Cabinet.objects.all():
        cabinet_credential_issue(cabinet=cabinet, actor=Actor.system("test"))
    # Two cabinets really connected, through uvicorn, each with the reference agent in its
    # own process; the fleet's other cabinets have no link.
    with contextlib.ExitStack() as stack:
        connected = [
            stack.enter_context(connected_cabinet(asgi_server_process, tmp_path / s, serial=s))
            for s in ("SH-ROT-WEB1", "SH-ROT-WEB2")
        ]
        linked = {cabinet.pk: (issued, agent) for cabinet, issued, agent in connected}
        assert presence_snapshot().keys() == linked.keys()
        count = Cabinet.objects.count()
        device = staff_totp_enroll(user=User.objects.get(username="ops"))

        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{live_server.url}/admin/login/?next=/admin/")
        page.fill("#id_username", "ops")
        page.fill("#id_password", PASSWORD)
        page.fill("#id_otp_token", totp_token(device))
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/")

        page.goto(f"{live_server.url}/admin/cabinets/cabinet/")
        page.check("#action-toggle")
        page.select_option("select[name=action]", "rotate_credentials")
        page.click("button[name=index]")
        page.wait_for_selector("#action-confirmation")
        assert f"Rotate the credentials of {count} cabinet(s)?" in page.inner_text("#content")
        assert "stays online" in page.inner_text("#action-warning")
        page.screenshot(path=str(ARTIFACTS / "rotation-confirmation.png"), full_page=True)
        assert CabinetCredential.objects.count() == count  # nothing rotated before confirming

        # From the confirmation until both agents are in on their new credentials, every
        # reading of the presence set finds them alive by the liveness rule.
        before = {pk: (agent.sessions(), agent.reconnects()) for pk, (_, agent) in linked.items()}
        with PresenceWatch(linked) as watch:
            page.click("#action-confirm")
            page.wait_for_selector(".messagelist")
            assert f"Rotation started for {count} cabinet(s)" in page.inner_text(".messagelist")
            assert CabinetCredential.objects.count() == 2 * count
            page.reload()
            assert CabinetCredential.objects.count() == 2 * count  # a reload rotates nothing

            # Each connected cabinet switches by itself: it stores the delivered credential,
            # the server closes its old link (4401), it comes back with the new one, and the
            # old one is revoked.
            def switched(pk: int) -> bool:
                issued, agent = linked[pk]
                old_key_id = issued.credential.split(".", 1)[0]
                return agent.sessions() > before[pk][0] and (
                    CabinetCredential.objects.filter(
                        key_id=old_key_id, revoked_reason="rotated"
                    ).exists()
                )

            for pk, (_, agent) in linked.items():
                eventually(
                    functools.partial(switched, pk),
                    what=f"cabinet {pk} back on its new credential",
                    agent=agent,
                    server=asgi_server_process,
                )
        assert watch.readings > 0
        assert watch.offline == [], f"offline by the liveness rule at (s, cabinet) {watch.offline}"
        for pk, (_, agent) in linked.items():
            # One new link each, after the planned reconnect: straight to the new credential,
            # no backoff, no other drop.
            sessions, reconnects = before[pk]
            assert agent.sessions() == sessions + 1, agent.log()[-4000:]
            assert agent.reconnects()[len(reconnects) :] == ["switched"], agent.log()[-4000:]

        cabinets_liveness_sync()
        for pk in linked:
            page.goto(f"{live_server.url}/admin/cabinets/cabinet/{pk}/change/")
            assert "Online" in page.inner_text(".field-connection_state")
        page.screenshot(path=str(ARTIFACTS / "rotation-online.png"), full_page=True)


def test_a_deposited_parcel_cannot_be_moved_from_its_change_form(
    browser, live_server, fleet
) -> None:  # type: ignore[no-untyped-def]
    from django.utils import timezone

    from courier.models import Parcel, ParcelStatus

    compartment = CompartmentFactory()
    parcel = ParcelFactory(
        cabinet=compartment.cabinet,
        compartment=compartment,
        status=ParcelStatus.READY,
        deposited_at=timezone.now(),
        pickup_deadline=timezone.now() + timezone.timedelta(days=3),
    )
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    login(page, live_server)
    page.goto(f"{live_server.url}/admin/courier/parcel/{parcel.pk}/change/")
    page.wait_for_selector("#parcel_form")
    for field in ("cabinet", "compartment", "recipient", "carrier", "tracking_number"):
        assert page.locator(f"#parcel_form [name={field}]").count() == 0, field
    assert page.locator("#parcel_form [name^=pickup_deadline]").count() == 0
    assert page.locator("input[name=_save]").count() == 0
    assert str(compartment.label) in page.inner_text("#parcel_form")
    page.screenshot(path=str(ARTIFACTS / "parcel-read-only.png"), full_page=True)
    assert Parcel.objects.get(pk=parcel.pk).compartment_id == compartment.pk


def test_the_door_grid_opens_a_door_and_shows_it_open_without_reload(
    browser, live_server, fleet, asgi_server_process, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """The cabinet is the reference agent in its own process, connected through uvicorn: the
    Open button's unlock travels to it, it opens its (simulated) lock and reports, and the
    grid shows the door open."""
    from playwright.sync_api import expect

    from cabinets.models import CabinetCommand, CommandStatus
    from tests.cabinets.connected import connected_cabinet

    # The door stays open once opened: the page polls every few seconds and must see it.
    with connected_cabinet(
        asgi_server_process, tmp_path, serial="GRID-0001", auto_close_after=None
    ) as (cabinet, _, agent):
        page, errors = logged_in_page(
            browser,
            live_server,
            f"/admin/cabinets/cabinet/{cabinet.pk}/change/",
            ready="window.doorGrid && window.doorGrid.ready",
        )
        expect(page.locator("#door-A02 .door-state")).to_have_text("Closed")

        page.click("#door-A02 button.door-open-button")
        page.click("#door-open-confirm")  # no reason yet: refused on the page
        expect(page.locator("#door-open-error")).to_have_text("Say why the door is opened.")
        assert not CabinetCommand.objects.exists()
        page.fill("#door-open-reason", "recipient locked out, called support")
        page.click("#door-open-confirm")

        # The agent acknowledges, opens the door and reports it; the page's polls follow.
        expect(page.locator("#door-A02")).to_have_attribute("data-door", "open", timeout=60_000)
        expect(page.locator("#door-A02 .door-state")).to_have_text("Open", timeout=30_000)
        expect(page.locator("#door-A01 .door-state")).to_have_text("Closed")
        # A heartbeat may report the open door just before the result that closes the command.
        command = eventually(
            lambda: CabinetCommand.objects.filter(status=CommandStatus.SUCCEEDED).first(),
            "the unlock reported done",
        )
        assert (command.compartment.label, command.reason) == (
            "A02",
            "recipient locked out, called support",
        )
        assert CabinetCommand.objects.count() == 1
        assert agent.runs_of(str(command.pk)) == 1  # the agent itself drove the lock
        assert page.evaluate("window.sameDocument") is True  # no reload
        page.screenshot(path=str(ARTIFACTS / "door-grid.png"), full_page=True)
        assert errors == []


def test_the_rollout_page_shows_the_real_counts_while_a_simulated_fleet_runs_it(
    browser, asgi_server_process
) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from cabinets.models import RolloutTarget
    from cabinets.rollouts.driver import rollout_advance
    from cabinets.services.simulation import simulated_fleet_provision
    from tests.live.fleet import AgentFleet, fleet_labels

    StaffUserFactory(username="ops", password=PASSWORD)
    issued = simulated_fleet_provision(
        prefix="ROLL-", count=12, create=True, actor=Actor.system("test")
    )
    fleet = AgentFleet(
        issued=issued,
        url=asgi_server_process.ws_url,
        labels=fleet_labels(i.cabinet_id for i in issued),
    )
    fleet.start()
    try:
        eventually(lambda: fleet.connected() == 12, "12 simulated cabinets connected")
        rollout = rollout_create(
            name="firmware 3.0",
            kind="firmware",
            version="3.0.0",
            wave_plan="4,100%",
            min_sample=4,
            actor=Actor.system("test"),
        )
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        login(page, asgi_server_process)
        page.goto(f"{asgi_server_process.url}/admin/cabinets/rollout/{rollout.pk}/change/")
        assert page.inner_text("#rollout-target-count") == "12"  # known before Start

        page.click("#rollout-start")  # the server plans and sends wave 1 (eager worker)
        page.wait_for_selector("#rollout-pause")
        page.evaluate("window.sameDocument = true")

        def wave_cells(wave: int) -> dict[str, str]:
            return page.evaluate(
                """n => Object.fromEntries([...document.querySelectorAll(
                    `#rollout-waves tr[data-wave="${n}"] [data-state]`)]
                    .map(td => [td.dataset.state, td.textContent.trim()]))""",
                wave,
            )

        # The four cabinets of wave 1 install the version and report; the page follows.
        eventually(
            lambda: RolloutTarget.objects.filter(rollout=rollout, state="succeeded").count() == 4,
            "wave 1 to succeed",
            within_s=60,
        )
        page.wait_for_function(
            """() => document.querySelector('#rollout-waves tr[data-wave="1"] '
                + '[data-state="succeeded"]').textContent === '4'""",
            timeout=20_000,
        )
        first, second = wave_cells(1), wave_cells(2)
        assert (first["succeeded"], first["total"], first["done"]) == ("4", "4", "100%")
        assert (second["scheduled"], second["total"], second["done"]) == ("8", "8", "0%")
        page.screenshot(path=str(ARTIFACTS / "rollout-live.png"), full_page=True)

        # Ticks, as beat would, until the rollout completes; the page shows it without reload.
        # In a thread of its own: Playwright's loop runs in this one, and pushing to the
        # cabinets (async_to_sync) refuses a thread with a running loop.
        def tick() -> None:
            try:
                rollout_advance(rollout_id=rollout.pk)
            finally:
                connection.close()

        def completed() -> bool:
            with ThreadPoolExecutor(max_workers=1) as pool:
                pool.submit(tick).result()
            rollout.refresh_from_db()
            return rollout.state == RolloutState.COMPLETED

        eventually(completed, "the rollout to complete", within_s=90, interval_s=0.5)
        page.wait_for_function(
            "() => document.getElementById('rollout-state').textContent === 'Completed'",
            timeout=20_000,
        )
        assert page.inner_text('#rollout-totals [data-state="succeeded"]') == "12"
        assert wave_cells(2)["succeeded"] == "8" and wave_cells(2)["done"] == "100%"
        assert page.is_visible("#rollout-state-changed")
        assert page.evaluate("window.sameDocument") is True
        assert errors == []
    finally:
        fleet.stop()


def test_the_dashboard_refreshes_itself_and_clusters_the_map_at_fleet_scale(
    live_server, fleet, browser, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from cabinets import dashboard as dashboard_module

    # The live server runs in this process: four cabinets stand for a fleet.
    monkeypatch.setattr(dashboard_module, "MAP_POINTS_MAX", 2)
    page, errors = logged_in_page(
        browser,
        live_server,
        "/admin/cabinets/cabinet/dashboard/?refresh=2",
        ready="window.fleetDashboard && window.fleetDashboard.ready",
        height=1800,
    )

    assert page.evaluate("window.fleetDashboard.mapMode") == "clusters"
    numbers = [int(n) for n in page.locator(".fleet-cluster").all_inner_texts()]
    assert sum(numbers) == 4 and page.evaluate("window.fleetDashboard.markerCount") == 4
    ticks = page.evaluate(
        """() => ['chart-regions', 'chart-parcels'].flatMap(id =>
            window.fleetDashboard.charts[id].scales.y.ticks.map(t => t.value))"""
    )
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert page.inner_text("#kpi-never") == "0"

    CabinetFactory(serial="NEVER-0001", connection_state=ConnectionState.NEVER)
    page.wait_for_function(
        "() => document.getElementById('kpi-never').textContent === '1'", timeout=20_000
    )
    assert "NEVER-0001" in page.inner_text("#alert-never-connected")
    assert page.inner_text("#kpi-total") == "5"
    assert "As of" in page.inner_text("#fleet-as-of")
    assert page.evaluate("window.sameDocument") is True
    page.screenshot(path=str(ARTIFACTS / "fleet-dashboard-clusters.png"), full_page=True)
    assert errors == []


# The one format of config/formats/, "2026-12-02 21:38:20 +0800"; and anything that reads as a
# time of day, to find times shown any other way ("10:44 p.m.", "22:44:49").
# The zone as headers name it, "(UTC+08:00)", is not a time.
POLICY_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4}")
TIME_OF_DAY = re.compile(r"\d{1,2}:\d{2}")
ZONE_LABEL = re.compile(r"UTC[+-]\d{2}:\d{2}")


def times_shown(text: str) -> list[datetime]:
    """Every time in `text`, each of which must be in the one format."""
    shown = POLICY_TIME.findall(text)
    others = TIME_OF_DAY.findall(ZONE_LABEL.sub("", text))
    assert len(others) == len(shown), f"a time in another format: {text!r}"
    return [datetime.strptime(value, "%Y-%m-%d %H:%M:%S %z") for value in shown]


def test_the_live_pages_show_their_times_in_the_operators_zone_in_the_one_format(
    browser, live_server, fleet
) -> None:  # type: ignore[no-untyped-def]
    """The dashboard, the door grid and the rollout page, in a browser whose own zone is New
    York: their "as of", the doors' last events and every other time on them read as every
    time of the admin does (core/timefmt.py), in TIME_ZONE with its offset."""
    import zoneinfo

    from django.conf import settings
    from django.utils import timezone

    cabinet = CabinetFactory(serial="TIME-0001")
    CompartmentFactory(cabinet=cabinet, label="A01", door_changed_at=timezone.now())
    rollout = rollout_create(
        name="config 7", kind="config", version="7", wave_plan="1", actor=Actor.system("test")
    )
    zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    offset = timezone.localtime(timezone.now(), zone).utcoffset()
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, timezone_id="America/New_York"
    )
    page = context.new_page()
    login(page, live_server)
    pages = {
        "/admin/cabinets/cabinet/dashboard/": (
            "window.fleetDashboard && window.fleetDashboard.ready",
            ["#fleet-as-of"],
        ),
        f"/admin/cabinets/cabinet/{cabinet.pk}/change/": (
            "window.doorGrid && window.doorGrid.ready",
            ["#door-grid-asof", "#door-A01 .door-when"],
        ),
        f"/admin/cabinets/rollout/{rollout.pk}/change/": (
            "window.rolloutLive && window.rolloutLive.ready",
            ["#rollout-as-of", "#rollout-events tbody td:first-child"],
        ),
    }
    for path, (ready, selectors) in pages.items():
        page.goto(f"{live_server.url}{path}")
        page.wait_for_function(f"() => {ready}", timeout=15_000)
        for selector in selectors:
            [shown] = times_shown(page.inner_text(selector))
            assert shown.utcoffset() == offset, (path, selector, shown)
            assert abs(shown - timezone.now()) < timedelta(minutes=10), (path, selector, shown)
        times_shown(page.inner_text("#content"))  # and no time in another format
    context.close()
