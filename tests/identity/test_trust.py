"""Attacks on the person's side of the platform (issue 10, items 4, 5, 8, 11, 12), each
performed and shown to fail: reused, replayed and leaked links; login oracles and SMS
bombing; pixel bombs and the photo limit; ID-number probing; a truncated JPEG made whole."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.test import Client, override_settings
from django.utils import timezone
from PIL import Image, ImageFile
from rest_framework.test import APIClient

from identity import services
from identity.face_pipeline import FaceRefused, PhotoLimits, decode_photo
from identity.id_numbers import id_number_check_character, id_number_hash
from identity.models import AccessToken, FacePhotoReceipt, FaceTemplate, Identity, PhotoStatus
from identity.notify import SentSms
from identity.views import SESSION_KEY
from tests.factories import IdentityFactory
from tests.identity.conftest import OBAMA, PERSON, Enroll, jpeg
from tests.identity.faces import face_bytes, requires_faces
from tests.identity.test_real_id import VALID

pytestmark = pytest.mark.django_db

API = "/api/v1/identity/"
Capture = Callable[..., Any]


def _code(sms_outbox: list[SentSms]) -> str:
    found = re.search(r"\b(\d{6})\b", sms_outbox[-1].text)
    assert found is not None
    return found.group(1)


def _api_login(identity: Identity, sms_outbox: list[SentSms], capture: Capture) -> APIClient:
    api = APIClient()
    with capture(execute=True):
        api.post(API + "login/code/", {"phone": identity.phone}, format="json")
    verified = api.post(
        API + "login/verify/", {"phone": identity.phone, "code": _code(sms_outbox)}, format="json"
    )
    assert verified.status_code == 200
    api.credentials(HTTP_AUTHORIZATION=f"Enrollment {verified.json()['token']}")
    return api


# --- Item 4: links and tokens ----------------------------------------------------------------


def test_a_get_on_the_link_logs_nobody_in_and_the_token_is_not_in_the_path(
    client: Client, recipient: Identity
) -> None:
    link = services.enrollment_link(identity=recipient)
    path, token = link.split("#")
    assert path == "/enroll/link/" and token not in path
    page = client.get(path)
    assert page.status_code == 200
    assert "Text me a code" in page.content.decode()
    assert "no-store" in page["Cache-Control"]
    assert SESSION_KEY not in client.session
    assert "identity_login_phone" not in client.session
    assert client.get("/enroll/")["Location"] == "/enroll/login/"


def test_a_link_works_once_and_only_leads_to_a_code_texted_to_the_phone(
    client: Client,
    recipient: Identity,
    sms_outbox: list[SentSms],
    django_capture_on_commit_callbacks: Capture,
) -> None:
    path, token = services.enrollment_link(identity=recipient).split("#")
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(path, {"token": token})
    assert first["Location"] == "/enroll/login/code/"
    assert [m.phone for m in sms_outbox] == [recipient.phone]
    # The link itself opened no session: the texted code does.
    assert SESSION_KEY not in client.session
    assert client.get("/enroll/").status_code == 302
    # Used: a second redemption (by anyone) is refused.
    assert Client().post(path, {"token": token}).status_code == 403
    assert client.post("/enroll/login/code/", {"code": _code(sms_outbox)}).status_code == 302
    assert client.get("/enroll/").status_code == 200


def test_withdrawal_revokes_outstanding_links_and_the_api_token(
    consenting_recipient: Identity,
    sms_outbox: list[SentSms],
    django_capture_on_commit_callbacks: Capture,
) -> None:
    api = _api_login(consenting_recipient, sms_outbox, django_capture_on_commit_callbacks)
    path, token = services.enrollment_link(identity=consenting_recipient).split("#")
    assert api.get(API + "enrollment/").status_code == 200
    assert api.delete(API + "consent/").status_code == 200
    assert api.get(API + "enrollment/").status_code == 401
    assert Client().post(path, {"token": token}).status_code == 403
    assert not AccessToken.objects.filter(revoked_at__isnull=True).exists()


def test_logout_revokes_the_api_token_links_and_unused_codes(
    client: Client,
    recipient: Identity,
    sms_outbox: list[SentSms],
    django_capture_on_commit_callbacks: Capture,
) -> None:
    api = _api_login(recipient, sms_outbox, django_capture_on_commit_callbacks)
    path, token = services.enrollment_link(identity=recipient).split("#")
    assert api.post(API + "logout/").status_code == 204
    assert api.get(API + "enrollment/").status_code == 401
    assert Client().post(path, {"token": token}).status_code == 403

    # The page's logout does the same for a code that was texted and not used yet.
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/enroll/login/", {"phone": recipient.phone})
    pending = _code(sms_outbox)
    session = client.session
    session[SESSION_KEY] = recipient.pk
    session.save()
    client.post("/enroll/logout/")
    client.post("/enroll/login/", {"phone": recipient.phone})
    assert client.post("/enroll/login/code/", {"code": pending}).status_code == 400


def test_the_api_token_expires(
    recipient: Identity, sms_outbox: list[SentSms], django_capture_on_commit_callbacks: Capture
) -> None:
    api = _api_login(recipient, sms_outbox, django_capture_on_commit_callbacks)
    later = timezone.now() + timezone.timedelta(seconds=settings.ENROLLMENT_API_TOKEN_TTL_S + 1)
    with time_machine.travel(later):
        assert api.get(API + "enrollment/").status_code == 401


def test_expired_token_rows_are_purged_after_a_week(recipient: Identity) -> None:
    services.enrollment_link(identity=recipient)
    services.api_token_issue(identity=recipient)
    assert services.access_tokens_purge() == 0
    later = timezone.now() + timezone.timedelta(
        seconds=settings.ENROLLMENT_LINK_MAX_AGE_S, days=7, minutes=1
    )
    assert services.access_tokens_purge(now=later) == 2
    assert not AccessToken.objects.exists()


def test_no_token_or_code_reaches_the_logs_or_a_cache(
    client: Client,
    recipient: Identity,
    sms_outbox: list[SentSms],
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Capture,
) -> None:
    caplog.set_level(logging.DEBUG)
    path, token = services.enrollment_link(identity=recipient).split("#")
    client.get(path)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(path, {"token": token})
    code = _code(sms_outbox)
    client.post("/enroll/login/code/", {"code": code})
    api = APIClient()
    with django_capture_on_commit_callbacks(execute=True):
        api.post(API + "login/code/", {"phone": recipient.phone}, format="json")
    verified = api.post(
        API + "login/verify/", {"phone": recipient.phone, "code": _code(sms_outbox)}, format="json"
    )
    assert verified["Cache-Control"] == "no-store"
    api_token = verified.json()["token"]
    for page in ("/enroll/login/", "/enroll/login/code/", "/enroll/"):
        assert "no-store" in client.get(page)["Cache-Control"]
    for secret in (token, code, api_token):
        assert secret not in caplog.text
        assert not AccessToken.objects.filter(token_hash__contains=secret).exists()


# --- Item 5: phone login ---------------------------------------------------------------------


def _send(phone: str, address: str) -> tuple[int, bytes]:
    response = APIClient(REMOTE_ADDR=address).post(
        API + "login/code/", {"phone": phone}, format="json"
    )
    return response.status_code, response.content


def test_known_and_unknown_numbers_get_identical_answers_and_the_same_throttle(
    recipient: Identity,
) -> None:
    known = [_send(recipient.phone, f"192.0.2.{i}") for i in range(7)]
    unknown = [_send("+8613899990000", f"192.0.2.{i}") for i in range(7)]
    assert known == unknown
    assert [status for status, _ in known] == [202] * 5 + [429] * 2


def test_the_page_shows_the_throttle_as_a_message_not_an_error(
    client: Client, recipient: Identity
) -> None:
    answers = [client.post("/enroll/login/", {"phone": recipient.phone}) for _ in range(6)]
    assert [a.status_code for a in answers] == [302] * 5 + [429]
    assert "Too many attempts" in answers[-1].content.decode()


def test_one_address_cannot_text_many_numbers(db: None) -> None:
    limit = settings.OTP_THROTTLE["send"]["address"]
    answers = [_send(f"+86139{i:08d}", "198.51.100.9")[0] for i in range(limit + 1)]
    assert answers == [202] * limit + [429]
    assert _send("+8613912345678", "198.51.100.10")[0] == 202


def test_the_platform_wide_limit_holds_across_addresses_and_numbers(db: None) -> None:
    throttle = {**settings.OTP_THROTTLE, "send": {"address": 100, "phone": 100, "global": 3}}
    with override_settings(OTP_THROTTLE=throttle):
        answers = [_send(f"+86137{i:08d}", f"203.0.113.{i}")[0] for i in range(4)]
    assert answers == [202, 202, 202, 429]


def test_code_guesses_are_limited_per_number_across_addresses(
    recipient: Identity, sms_outbox: list[SentSms], django_capture_on_commit_callbacks: Capture
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        services.login_code_send(phone=recipient.phone, client_address="192.0.2.1")
    right = _code(sms_outbox)
    wrong = "000000" if right != "000000" else "111111"
    limit = settings.OTP_THROTTLE["verify"]["phone"]
    statuses = []
    for i in range(limit):
        statuses.append(
            APIClient(REMOTE_ADDR=f"192.0.2.{i + 10}")
            .post(API + "login/verify/", {"phone": recipient.phone, "code": wrong}, format="json")
            .status_code
        )
    assert set(statuses) == {400}
    late = APIClient(REMOTE_ADDR="192.0.2.99").post(
        API + "login/verify/", {"phone": recipient.phone, "code": right}, format="json"
    )
    assert late.status_code == 429
    assert set(late.json()) == {"error", "message", "details"}


# --- Item 8: pixels, memory, the photo limit -------------------------------------------------


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 120).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def test_a_pixel_bomb_is_refused_from_its_header_before_any_decoding(
    consenting_recipient: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = _png(6300, 6300)
    assert len(bomb) < 200_000

    def no_decoding(self: Any) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(services.PhotoRefused) as caught:
        services.enrollment_photo_submit(identity=consenting_recipient, data=bomb, actor=PERSON)
    assert caught.value.code == "too_many_pixels"
    assert caught.value.details["max_pixels"] == settings.FACE_PHOTO_MAX_PIXELS == 12_000_000
    with pytest.raises(FaceRefused) as refused:
        decode_photo(bomb, limits=services.photo_limits())
    assert refused.value.code == "too_many_pixels"


def test_pillow_and_the_worker_are_capped_too() -> None:
    from config.celery_app import app

    assert Image.MAX_IMAGE_PIXELS == settings.FACE_PHOTO_MAX_PIXELS
    assert app.conf.worker_max_memory_per_child == settings.CELERY_WORKER_MAX_MEMORY_PER_CHILD
    assert 0 < app.conf.worker_max_memory_per_child <= 1_000_000


def test_a_large_jpeg_is_decoded_reduced() -> None:
    large = jpeg(Image.new("RGB", (4000, 3000), (90, 140, 200)))
    assert decode_photo(large, limits=PhotoLimits(decode_max_side=1000)).shape == (750, 1000, 3)
    assert decode_photo(large, limits=PhotoLimits(decode_max_side=1001)).shape == (1500, 2000, 3)
    assert decode_photo(large, limits=PhotoLimits(decode_max_side=0)).shape == (3000, 4000, 3)


def test_deleting_face_data_does_not_reset_the_photo_limit(
    consenting_recipient: Identity,
) -> None:
    photo = jpeg(Image.new("RGB", (64, 64), (90, 140, 200)))
    with override_settings(FACE_PHOTOS_PER_DAY=2):
        for _ in range(2):
            services.enrollment_photo_submit(
                identity=consenting_recipient, data=photo, actor=PERSON
            )
        services.face_data_delete(identity=consenting_recipient, actor=PERSON)
        with pytest.raises(services.RateLimited) as caught:
            services.enrollment_photo_submit(
                identity=consenting_recipient, data=photo, actor=PERSON
            )
        assert caught.value.code == "too_many_photos"
        assert FacePhotoReceipt.objects.filter(identity=consenting_recipient).count() == 2
        with time_machine.travel(timezone.now() + timezone.timedelta(days=1, seconds=1)):
            services.enrollment_photo_submit(
                identity=consenting_recipient, data=photo, actor=PERSON
            )


# --- Item 11: ID-number probing --------------------------------------------------------------


def _another_valid_number() -> str:
    first17 = "11010519800101001"
    return first17 + id_number_check_character(first17)


@pytest.mark.parametrize("consented", [False, True], ids=["no-consent", "consent-no-face"])
def test_without_a_face_a_taken_and_a_free_id_number_get_the_same_answer(
    recipient: Identity, consented: bool
) -> None:
    if consented:
        services.consent_give(identity=recipient)
    IdentityFactory(id_number_hash=id_number_hash(VALID))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Enrollment {services.api_token_issue(identity=recipient)}")

    def answer(number: str) -> tuple[int, Any]:
        response = api.post(
            API + "real-id/",
            {"id_number": number, "portrait": io.BytesIO(face_bytes(OBAMA))},
            format="multipart",
        )
        return response.status_code, response.json()

    taken, free = answer(VALID), answer(_another_valid_number())
    assert taken == free
    assert taken[1]["error"] == "no_enrolled_face"


# --- Item 12: a truncated JPEG with its end marker appended ------------------------------------


def _truncated_with_end_marker(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3] + b"\xff\xd9"


@requires_faces
def test_a_truncated_jpeg_with_an_end_marker_appended_never_becomes_a_template(
    consenting_recipient: Identity, enroll: Enroll
) -> None:
    forged = _truncated_with_end_marker(face_bytes(OBAMA))
    photo = enroll(consenting_recipient, forged)
    assert (photo.status, photo.refusal_code) == (PhotoStatus.REFUSED, "corrupt_image")
    assert not FaceTemplate.objects.exists()
    with pytest.raises(FaceRefused) as refused:
        decode_photo(forged)
    assert refused.value.details == {"reason": "truncated"}
    assert decode_photo(face_bytes(OBAMA)).shape[2] == 3


@requires_faces
def test_loading_the_face_model_leaves_truncated_images_refused() -> None:
    from identity.embeddings import get_default_encoder

    get_default_encoder().locate(decode_photo(face_bytes(OBAMA)))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
