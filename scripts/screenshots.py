"""Screenshots of the running demo for docs/screenshots/: the fleet dashboard, a cabinet's door
grid, a live rollout page and the enrollment page on a phone. Playwright with Debian's
Chromium, headless; nothing is downloaded.

Start the demo first (`./scripts/run.sh`, or `PORT=8403 ./scripts/run.sh`), then:

    .venv/bin/python scripts/screenshots.py [--base http://127.0.0.1:8403] [--out docs/screenshots]

It logs in as the demo admin (password from var/demo-admin-password), creates and starts a
small config rollout (the demo's simulated cabinet SH-XH-0001 runs it) and asks
`manage.py enrollment_link` for a demo person's signed links (single use: one per page). The
enrollment page is taken on a phone (390x844) in Chinese, the language of the recipients in
Shanghai (enrollment.png), and in English (enrollment-en.png): the link's first step, which
texts a login code (the demo prints it in the worker's output, out of this script's reach).
Run it with the demo's environment (PORT; REDIS_URL if the demo was given one). The rollouts
it made, named
"... (screenshot)", are aborted and deleted when it ends (and any left by an interrupted run
when it starts), so repeated runs leave the demo as they found it.

Conditions are waited for with functions ("() => ..."), not expression strings: Playwright
polls an expression with eval(), which the admin's Content-Security-Policy forbids.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# Without --disable-background-networking Chromium keeps trying to reach Google's hosts,
# which a closed network refuses.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
]
DESKTOP: Any = {"width": 1440, "height": 900}
PHONE: Any = {"width": 390, "height": 844}
SCREENSHOT_ROLLOUT = " (screenshot)"
# What the rollouts this script made leave behind: aborted if still open (the one abort
# service), then deleted; the admin offers no delete, rollouts are audit records elsewhere.
ROLLOUTS_DELETE = f"""
from cabinets.models import ROLLOUT_TRANSITIONS, Rollout, RolloutState
from cabinets.rollouts.services import rollout_abort
from core.actors import Actor

made = Rollout.objects.filter(name__endswith={SCREENSHOT_ROLLOUT!r})
for rollout in made:
    if RolloutState.ABORTED in ROLLOUT_TRANSITIONS[rollout.state]:
        rollout_abort(rollout_id=rollout.pk, actor=Actor.system("screenshots"), reason="screenshot")
print(made.delete()[0])
"""


def manage(*args: str) -> str:
    """`manage.py ARGS` on the demo's settings and database (this environment's)."""
    out = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return out.stdout


def screenshot_rollouts_delete() -> None:
    manage("shell", "--no-imports", "-c", ROLLOUTS_DELETE)


def enrollment_url(base: str, phone: str) -> str:
    return manage("enrollment_link", phone, "--base-url", base).strip().splitlines()[-1]


def login(page: Any, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def dashboard(page: Any, base: str, out: Path) -> None:
    page.goto(f"{base}/admin/cabinets/cabinet/dashboard/")
    page.wait_for_function(
        "() => window.fleetDashboard && window.fleetDashboard.ready", timeout=30_000
    )
    page.screenshot(path=str(out / "dashboard.png"), full_page=True)


def door_grid(page: Any, base: str, out: Path, serial: str) -> None:
    page.goto(f"{base}/admin/cabinets/cabinet/?q={serial}")
    page.click("#result_list tbody tr th a")
    page.wait_for_function("() => window.doorGrid && window.doorGrid.ready", timeout=30_000)
    page.screenshot(path=str(out / "door-grid.png"))


def rollout(page: Any, base: str, out: Path) -> None:
    page.goto(f"{base}/admin/cabinets/rollout/add/")
    page.fill("#id_name", f"Config {time.strftime('%H%M%S')}{SCREENSHOT_ROLLOUT}")
    page.select_option("#id_kind", "config")
    page.fill("#id_version", str(int(time.time()) % 100_000))
    # One wave: the demo's simulated cabinet is among its targets whatever their order.
    page.fill("#id_wave_plan", "100%")
    page.fill("#id_min_sample", "1")
    page.click("input[type=submit]")
    page.wait_for_selector("#rollout-target-count")
    page.click("#rollout-start")
    page.wait_for_selector("#rollout-pause, #rollout-retry_failed", timeout=30_000)
    page.wait_for_function(
        "() => window.rolloutLive && window.rolloutLive.polls > 1", timeout=30_000
    )
    # The simulated cabinet answers within seconds (the demo's others are offline); a slower
    # run still makes a screenshot.
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(
            "() => window.rolloutLive.data.totals.counts.succeeded > 0", timeout=30_000
        )
    page.screenshot(path=str(out / "rollout.png"), full_page=True)


def enrollment(browser: Any, url: str, out: Path, *, locale: str, name: str) -> None:
    """The page as a phone whose language is `locale` (zh-CN: the page in zh-hans) shows it."""
    context = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, locale=locale
    )
    page = context.new_page()
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(out / name), full_page=True)
    context.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_base = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
    parser.add_argument("--base", default=default_base, help=f"demo URL ({default_base})")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--username", default="admin")
    parser.add_argument(
        "--password", default=None, help="default: the content of var/demo-admin-password"
    )
    parser.add_argument("--serial", default="SH-XH-0001", help="cabinet of the door grid")
    parser.add_argument("--phone", default="+8613800000001", help="person of the enrollment")
    args = parser.parse_args()
    password = args.password or (ROOT / "var" / "demo-admin-password").read_text().strip()
    if not os.path.exists(CHROMIUM):
        print(f"Debian chromium is needed at {CHROMIUM} (apt-get install chromium)")
        return 2
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    base = args.base.rstrip("/")
    screenshot_rollouts_delete()  # what an interrupted run left
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=DESKTOP)
            login(page, base, args.username, password)
            dashboard(page, base, args.out)
            door_grid(page, base, args.out, args.serial)
            rollout(page, base, args.out)
            for locale, name in (("zh-CN", "enrollment.png"), ("en-US", "enrollment-en.png")):
                link = enrollment_url(base, args.phone)
                enrollment(browser, link, args.out, locale=locale, name=name)
        finally:
            browser.close()
            screenshot_rollouts_delete()
    for name in ("dashboard", "door-grid", "rollout", "enrollment", "enrollment-en"):
        print(f"{args.out / name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
