"""The API reference works offline: Swagger UI and ReDoc come from the project's own static
files (drf-spectacular-sidecar) and render in headless Chromium with every request to a host
other than the test server aborted, under the site's CSP."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.cabinets.test_admin_browser import browser  # noqa: F401  (the Chromium fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LOCAL_HOSTS = {"localhost", "127.0.0.1"}


def _offline_page(browser: Any) -> tuple[Any, list[str], list[str]]:  # noqa: F811
    """A page whose requests to other hosts are aborted (and listed), with CSP reports."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    blocked: list[str] = []
    problems: list[str] = []

    def route(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on(
        "console",
        lambda message: (
            problems.append(message.text)
            if message.type == "error" or "Content Security Policy" in message.text
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    return page, blocked, problems


def test_swagger_ui_renders_every_operation_with_the_network_blocked(
    browser: Any,  # noqa: F811
    live_server: Any,
) -> None:
    from playwright.sync_api import expect

    page, blocked, problems = _offline_page(browser)
    response = page.goto(f"{live_server.url}/api/docs/")
    assert response is not None and response.ok
    expect(
        page.locator(".opblock-summary-path", has_text="/api/v1/carrier/parcels/").first
    ).to_be_visible(timeout=30_000)
    expect(page.locator(".opblock-tag", has_text="carrier")).to_be_visible()
    expect(page.locator(".opblock-tag", has_text="recipient")).to_be_visible()
    assert blocked == [], f"the docs page tried to reach other hosts: {blocked}"
    assert problems == [], problems


def test_redoc_renders_with_the_network_blocked(browser: Any, live_server: Any) -> None:  # noqa: F811
    from playwright.sync_api import expect

    page, blocked, problems = _offline_page(browser)
    response = page.goto(f"{live_server.url}/api/redoc/")
    assert response is not None and response.ok
    expect(page.get_by_role("heading", name="Smart cabinet platform API (1.0.0)")).to_be_visible(
        timeout=30_000
    )
    expect(page.get_by_role("menuitem", name="carrier")).to_be_visible()
    expect(page.get_by_role("menuitem", name="recipient")).to_be_visible()
    assert blocked == [], f"ReDoc tried to reach other hosts: {blocked}"
    # ReDoc's "powered by" logo points at its CDN: the CSP stops it before any request.
    logo = "Loading the image 'https://cdn.redoc.ly/"
    assert [p for p in problems if not p.startswith(logo)] == [], problems
