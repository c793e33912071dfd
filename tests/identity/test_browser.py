"""Headless Debian Chromium through the enrollment page: consent, a selfie from a fake camera
fed with a real face photo, the enrolled result, then withdrawal and deletion."""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.db import connections
from PIL import Image

from identity import notify, services
from identity.models import ConsentStatus, FaceTemplate, Identity
from tests.factories import IdentityFactory
from tests.identity.conftest import OBAMA
from tests.identity.faces import face_bytes, requires_faces
from tests.live.worker import services_required

pytestmark = [pytest.mark.browser, pytest.mark.slow, requires_faces]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WIDTH, HEIGHT = 640, 480


def y4m_from_photo(photo: bytes, path: Path, *, frames: int = 3) -> Path:
    """A YUV4MPEG2 file (4:2:0, BT.601 studio range) showing `photo`, for Chromium's
    --use-file-for-fake-video-capture."""
    image = Image.open(io.BytesIO(photo)).convert("RGB")
    # Crop to 4:3 around the upper middle, where a portrait's face is, then scale.
    width, height = image.size
    crop_w = min(width, round(height * 0.75 * 4 / 3))
    crop_h = round(crop_w * 3 / 4)
    left = (width - crop_w) // 2
    frame = image.crop((left, 0, left + crop_w, crop_h)).resize((WIDTH, HEIGHT), Image.LANCZOS)
    rgb = np.asarray(frame, dtype=np.float64) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b

    def subsample(plane: np.ndarray) -> np.ndarray:
        return plane.reshape(HEIGHT // 2, 2, WIDTH // 2, 2).mean(axis=(1, 3))

    planes = b"".join(
        np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes()
        for p in (y, subsample(u), subsample(v))
    )
    header = f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F30:1 Ip A1:1 C420jpeg\n".encode()
    path.write_bytes(header + b"".join(b"FRAME\n" + planes for _ in range(frames)))
    return path


def test_the_y4m_writer_makes_frames_of_the_right_size(tmp_path: Path) -> None:
    data = y4m_from_photo(face_bytes(OBAMA), tmp_path / "face.y4m", frames=2).read_bytes()
    header, _, rest = data.partition(b"\n")
    assert header == b"YUV4MPEG2 W640 H480 F30:1 Ip A1:1 C420jpeg"
    frame = len(b"FRAME\n") + WIDTH * HEIGHT * 3 // 2
    assert len(rest) == 2 * frame
    assert rest.startswith(b"FRAME\n")


def templates_of(person: Identity) -> int:
    """A query from inside Playwright's event loop gets a connection of that context, which
    Django would leave open (and PostgreSQL would then refuse to drop the test database)."""
    try:
        return FaceTemplate.objects.filter(identity=person).count()
    finally:
        connections.close_all()


@pytest.fixture
def chromium() -> str:
    if not (shutil.which("chromium") or os.path.exists(CHROMIUM)):
        if services_required():
            pytest.fail(f"Chromium is required (CI) but {CHROMIUM} is missing")
        pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


@pytest.mark.django_db(transaction=True)
def test_a_person_enrolls_with_the_camera_then_withdraws_and_deletes(
    chromium: str, live_server: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playwright.sync_api import expect, sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls below are
    # ordinary blocking calls between its steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    camera = y4m_from_photo(face_bytes(OBAMA), tmp_path / "face.y4m")
    person: Identity = IdentityFactory(name="Li Wei")
    link = f"{live_server.url}{services.enrollment_link(identity=person)}"  # type: ignore[attr-defined]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=[
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={camera}",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844})
            context.grant_permissions(["camera"], origin=live_server.url)  # type: ignore[attr-defined]
            page = context.new_page()
            # The link's token is in the fragment: the page posts it, a code is texted, and
            # the code (not the link) opens the session. `sent` is every request line the
            # browser sends (what access logs write): none may contain the token.
            sent: list[str] = []
            page.on("request", lambda request: sent.append(request.url))
            page.goto(link)
            page.get_by_role("button", name="Text me a code").click()
            expect(page.locator("#code")).to_be_visible()
            code = re.search(r"\b(\d{6})\b", notify.outbox[-1].text).group(1)  # type: ignore[union-attr]
            page.fill("#code", code)
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_text("What we store and why")).to_be_visible()
            token = link.split("#", 1)[1]
            assert len(sent) >= 3 and not [url for url in sent if token in url]
            assert token not in page.url

            # Consent is a separate, unticked box.
            expect(page.locator("#agree")).not_to_be_checked()
            page.click("#consent-submit")
            expect(page.get_by_text("Tick the box to agree")).to_be_visible()
            page.check("#agree")
            page.click("#consent-submit")
            expect(page.locator("#start-camera")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "enroll-1-consented.png"), full_page=True)

            page.click("#start-camera")
            expect(page.locator("#take-photo")).to_be_visible()
            page.wait_for_function("document.getElementById('video').videoWidth > 0")
            page.click("#take-photo")
            expect(page.locator("#status-text")).to_contain_text("You are enrolled", timeout=60_000)
            expect(page.locator("#progress")).to_have_attribute("data-state", "enrolled")
            expect(page.locator("#template-count")).to_have_text("You have 1 face template stored.")
            expect(page.locator("#start-camera")).to_be_hidden()
            page.screenshot(path=str(ARTIFACTS / "enroll-2-enrolled.png"), full_page=True)
            assert templates_of(person) == 1

            page.reload()
            expect(page.get_by_text("Photo 1: accepted")).to_be_visible()
            page.click("#withdraw")
            expect(page.get_by_text("Consent withdrawn. Your face data is deleted")).to_be_visible()
            expect(page.locator("#agree")).not_to_be_checked()
            page.screenshot(path=str(ARTIFACTS / "enroll-3-withdrawn.png"), full_page=True)
        finally:
            browser.close()

    assert not FaceTemplate.objects.filter(identity=person).exists()
    assert person.consents.get().status == ConsentStatus.WITHDRAWN
