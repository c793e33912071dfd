"""The admin in a real browser (Playwright + Debian Chromium, headless): log in, the fleet
dashboard draws its map and charts, a rollout is started and paused. Screenshots are kept in
test-artifacts/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cabinets.models import CabinetState, ConnectionState, Rollout, RolloutState
from cabinets.rollouts.services import rollout_create
from core.actors import Actor
from tests.factories import CabinetFactory, CompartmentFactory, ParcelFactory, StaffUserFactory

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
