"""Headless Debian Chromium through the enrollment page: consent, a selfie from a fake camera
fed with a real face photo, the enrolled result, then withdrawal and deletion."""

from __future__ import annotations

import io
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.db import connections
from PIL import Image

from identity import notify, services
from identity.models import ConsentStatus, FaceTemplate, Identity
from identity.notify import SentSms
from tests.factories import IdentityFactory
from tests.identity.conftest import OBAMA
from tests.identity.faces import face_bytes, requires_faces
from tests.live.worker import services_required

pytestmark = [pytest.mark.browser, pytest.mark.slow, requires_faces]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# `DOCS_SCREENSHOTS=1 pytest tests/identity/test_browser.py` refreshes the enrollment page's
# screenshots in docs/screenshots/ (linked from the README and docs/identity.md).
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def screenshot(page: Any, name: str, *, full_page: bool = True) -> None:
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)
    if os.environ.get("DOCS_SCREENSHOTS"):
        DOCS_SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(DOCS_SCREENSHOTS / name), full_page=full_page)


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
            page.wait_for_function("() => document.getElementById('video').videoWidth > 0")
            page.click("#take-photo")
            expect(page.locator("#status-text")).to_contain_text("You are enrolled", timeout=60_000)
            expect(page.locator("#progress")).to_have_attribute("data-state", "enrolled")
            expect(page.locator("#template-count")).to_have_text("You have 1 face template stored.")
            # the camera is off once enrolled: no live track, no preview
            expect(page.locator("#camera")).to_be_hidden()
            expect(page.locator("#take-photo")).to_be_hidden()
            assert page.evaluate("document.getElementById('video').srcObject === null")
            expect(page.locator("#start-camera")).to_have_text("Take another photo")
            expect(page.locator("#last-refusal")).to_be_hidden()
            screenshot(page, "enroll-2-enrolled.png")
            assert templates_of(person) == 1

            page.reload()
            expect(page.get_by_text("Photo 1: accepted")).to_be_visible()
            # after consent the privacy text is one collapsed line, not two screens
            expect(page.locator("#what")).not_to_have_attribute("open", "")
            page.click("#withdraw")
            expect(page.locator("#confirm-withdraw")).to_be_visible()
            page.click("#confirm-withdraw-yes")
            expect(page.get_by_text("Consent withdrawn. Your face data is deleted")).to_be_visible()
            expect(page.locator("#agree")).not_to_be_checked()
            page.screenshot(path=str(ARTIFACTS / "enroll-3-withdrawn.png"), full_page=True)
        finally:
            browser.close()

    assert not FaceTemplate.objects.filter(identity=person).exists()
    assert person.consents.get().status == ConsentStatus.WITHDRAWN


@pytest.mark.django_db(transaction=True)
def test_in_chinese_on_a_phone_a_national_number_logs_in_and_delete_asks_first(
    chromium: str,
    live_server: object,
    sms_outbox: list[SentSms],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    person: Identity = IdentityFactory(name="张敏", phone="+8613800000003")
    base = live_server.url  # type: ignore[attr-defined]

    def login_code() -> str:
        deadline = time.monotonic() + 30
        while not sms_outbox:
            assert time.monotonic() < deadline, "no login text was sent"
            time.sleep(0.1)
        return sms_outbox[-1].text[:6]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--headless=new", "--no-sandbox", "--disable-gpu"]
        )
        try:
            context = browser.new_context(
                viewport={"width": 390, "height": 844}, locale="zh-CN", is_mobile=True
            )
            page = context.new_page()
            page.goto(f"{base}/enroll/login/")
            expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
            expect(page.get_by_role("heading", name="用手机号登录")).to_be_visible()

            page.fill("#phone", "138 0000 0003")  # national form, no +86
            page.click("#send-code")
            expect(page.get_by_role("heading", name="输入验证码")).to_be_visible()
            page.fill("#code", login_code())
            page.click("#log-in")
            expect(page.get_by_role("heading", name="刷脸打开快递柜")).to_be_visible()
            assert sms_outbox[-1].phone == "+8613800000003"
            assert "不是取件码" in sms_outbox[-1].text

            page.check("#agree")
            page.click("#consent-submit")
            expect(page.get_by_text("谢谢。现在请自拍一张。")).to_be_visible()
            expect(page.locator("#what")).not_to_have_attribute("open", "")
            # the camera controls are on the first screen of a phone
            box = page.locator("#start-camera").bounding_box()
            assert box is not None and box["y"] + box["height"] <= 844
            screenshot(page, "enroll-zh-consented.png")

            # An upload without the camera: the result replaces "checking it now".
            page.click("#capture summary")
            page.set_input_files(
                "#upload-input",
                files=[{"name": "me.jpg", "mimeType": "image/jpeg", "buffer": face_bytes(OBAMA)}],
            )
            page.click("#upload-form button[type=submit]")
            expect(page.locator("#status-text")).to_contain_text("登记成功", timeout=60_000)
            expect(page.get_by_text("已收到照片")).to_have_count(0)
            expect(page.locator("#template-count")).to_have_text("您已存储 1 个人脸模板。")
            assert templates_of(person) == 1

            # Delete asks first and says how it differs from withdrawing; Cancel keeps all.
            page.click("#delete-face")
            dialog = page.locator("#confirm-delete")
            expect(dialog).to_be_visible()
            expect(dialog).to_contain_text("您的同意仍然有效")
            screenshot(page, "enroll-zh-confirm-delete.png", full_page=False)
            page.click("#confirm-delete-no")
            expect(dialog).to_be_hidden()
            expect(page.get_by_text("您的人脸数据已删除")).to_have_count(0)
            assert consent_given(person)

            page.click("#delete-face")
            page.click("#confirm-delete-yes")
            expect(page.get_by_text("您的人脸数据已删除（1 个人脸模板）。")).to_be_visible()  # noqa: RUF001
            assert consent_given(person)  # deleting face data keeps the consent
            assert templates_of(person) == 0

            page.click("#withdraw")
            expect(page.locator("#confirm-withdraw")).to_contain_text("同意随之结束")
            page.click("#confirm-withdraw-no")
            assert consent_given(person)
        finally:
            browser.close()


def consent_given(person: Identity) -> bool:
    try:
        return person.consents.filter(status=ConsentStatus.GIVEN).exists()
    finally:
        connections.close_all()
