"""The enrollment page through Django's test client: links, phone login, consent, uploads."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from identity import services, views
from identity.models import ConsentStatus, FaceTemplate, Identity, OneTimeCode
from identity.notify import SentSms
from tests.identity.conftest import OBAMA, TWO_PEOPLE, fifty_megapixels, truncated
from tests.identity.faces import face_bytes, requires_faces

pytestmark = pytest.mark.django_db

ENROLL = "/enroll/"


ADDRESS = "203.0.113.7"


def logged_in(client: Client, identity: Identity) -> Client:
    """A session as the phone login leaves it (that flow has its own tests)."""
    session = client.session
    session[views.SESSION_KEY] = identity.pk
    session.save()
    return client


def upload(data: bytes, name: str = "selfie.jpg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="image/jpeg")


Post = Callable[..., object]


@pytest.fixture
def post_photo(client: Client, django_capture_on_commit_callbacks: Callable[..., object]) -> Post:
    def post(data: bytes, **headers: str) -> object:
        with django_capture_on_commit_callbacks(execute=True):  # type: ignore[attr-defined]
            return client.post(reverse("identity:photo-submit"), {"photo": upload(data)}, **headers)

    return post


def test_the_page_explains_what_is_stored(client: Client, recipient: Identity) -> None:
    page = logged_in(client, recipient).get(ENROLL)
    html = page.content.decode()
    assert page.status_code == 200
    assert "What we store and why" in html
    assert "Your 6-digit pickup code always works" in html
    assert 'type="checkbox" name="agree" value="yes" id="agree">' in html  # not pre-ticked
    assert "checked" not in html


def test_an_expired_or_forged_link_shows_a_message_not_an_error(
    client: Client, recipient: Identity
) -> None:
    path, token = services.enrollment_link(identity=recipient).split("#")
    with time_machine.travel(timezone.now() + timezone.timedelta(days=2)):
        expired = client.post(path, {"token": token})
    assert expired.status_code == 403
    assert "not valid any more" in expired.content.decode()
    forged = client.post(path, {"token": token[:-2] + "xx"})
    assert forged.status_code == 403
    assert "not valid any more" in forged.content.decode()
    assert client.post(path, {}).status_code == 403
    assert client.get(ENROLL).status_code == 302


def test_the_page_needs_a_login(client: Client) -> None:
    response = client.get(ENROLL)
    assert response.status_code == 302
    assert response["Location"] == reverse("identity:login")
    status = client.get(reverse("identity:status"), HTTP_ACCEPT="application/json")
    assert status.status_code == 401
    assert status.json()["error"] == "not_authenticated"


def test_phone_login_with_a_texted_code(
    client: Client,
    recipient: Identity,
    sms_outbox: list[SentSms],
    django_capture_on_commit_callbacks: Callable[..., object],
) -> None:
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[attr-defined]
        sent = client.post(reverse("identity:login"), {"phone": "+86 138 0000 0001"})
    assert sent.status_code == 302
    assert [m.phone for m in sms_outbox] == ["+8613800000001"]
    code = re.search(r"\b(\d{6})\b", sms_outbox[0].text).group(1)  # type: ignore[union-attr]
    assert code not in OneTimeCode.objects.get().code_hash

    wrong = client.post(
        reverse("identity:login-code"), {"code": "000000" if code != "000000" else "111111"}
    )
    assert wrong.status_code == 400
    assert "wrong or has expired" in wrong.content.decode()

    right = client.post(reverse("identity:login-code"), {"code": code})
    assert right.status_code == 302
    assert client.get(ENROLL).status_code == 200
    # A code works once.
    client.post(reverse("identity:logout"))
    client.post(reverse("identity:login"), {"phone": "+8613800000001"})
    assert client.post(reverse("identity:login-code"), {"code": code}).status_code == 400


def test_an_unknown_number_gets_the_same_answer_and_no_text(
    client: Client, db: None, sms_outbox: list[SentSms]
) -> None:
    response = client.post(reverse("identity:login"), {"phone": "+8613899999999"})
    assert response.status_code == 302
    assert sms_outbox == []
    bad = client.post(reverse("identity:login"), {"phone": "call me"})
    assert bad.status_code == 400
    assert "Enter a phone number such as 13800138000" in bad.content.decode()


def test_codes_expire_and_guesses_are_limited(
    recipient: Identity,
    sms_outbox: list[SentSms],
    django_capture_on_commit_callbacks: Callable[..., object],
) -> None:
    def texted_code() -> str:
        with django_capture_on_commit_callbacks(execute=True):  # type: ignore[attr-defined]
            services.login_code_send(phone=recipient.phone, client_address=ADDRESS)
        return re.search(r"\b(\d{6})\b", sms_outbox[-1].text).group(1)  # type: ignore[union-attr]

    code = texted_code()
    wrong = "999999" if code != "999999" else "888888"
    for _ in range(5):
        with pytest.raises(services.ApplicationError):
            services.login_code_verify(phone=recipient.phone, code=wrong, client_address=ADDRESS)
    assert OneTimeCode.objects.get().attempts == 5
    with pytest.raises(services.ApplicationError):
        services.login_code_verify(phone=recipient.phone, code=code, client_address=ADDRESS)

    code = texted_code()
    with (
        time_machine.travel(timezone.now() + timezone.timedelta(minutes=6)),
        pytest.raises(services.ApplicationError),
    ):
        services.login_code_verify(phone=recipient.phone, code=code, client_address=ADDRESS)
    assert (
        services.login_code_verify(phone=recipient.phone, code=code, client_address=ADDRESS)
        == recipient
    )


def test_codes_per_hour_are_limited(recipient: Identity) -> None:
    for _ in range(5):
        services.login_code_send(phone=recipient.phone, client_address=ADDRESS)
    with pytest.raises(services.ApplicationError) as caught:
        services.login_code_send(phone=recipient.phone, client_address=ADDRESS)
    assert caught.value.code == "rate_limited"


def test_consent_needs_the_box_ticked(client: Client, recipient: Identity) -> None:
    logged_in(client, recipient)
    refused = client.post(reverse("identity:consent-give"), follow=True)
    assert "Tick the box" in refused.content.decode()
    assert not recipient.consents.exists()
    given = client.post(reverse("identity:consent-give"), {"agree": "yes"}, follow=True)
    assert "Take a selfie" in given.content.decode()
    assert recipient.consents.get().status == ConsentStatus.GIVEN


def test_a_photo_without_consent_is_refused_on_the_page(
    client: Client, recipient: Identity, post_photo: Post
) -> None:
    logged_in(client, recipient)
    response = post_photo(face_bytes(OBAMA), HTTP_ACCEPT="application/json")
    assert response.status_code == 403  # type: ignore[attr-defined]
    assert response.json()["error"] == "consent_required"  # type: ignore[attr-defined]


@requires_faces
def test_an_uploaded_photo_enrolls_and_the_status_says_so(
    client: Client, consenting_recipient: Identity, post_photo: Post
) -> None:
    logged_in(client, consenting_recipient)
    response = post_photo(face_bytes(OBAMA))
    assert response.status_code == 302  # type: ignore[attr-defined]
    status = client.get(reverse("identity:status")).json()
    assert status["status"] == "enrolled"
    assert status["pending"] == 0
    assert status["templates"] == 1
    assert [p["status"] for p in status["photos"]] == ["accepted"]
    page = client.get(ENROLL).content.decode()
    assert "You are enrolled" in page


@requires_faces
def test_a_refused_photo_asks_for_a_retake_with_the_reason(
    client: Client, consenting_recipient: Identity, post_photo: Post
) -> None:
    logged_in(client, consenting_recipient)
    accepted = post_photo(face_bytes(TWO_PEOPLE), HTTP_ACCEPT="application/json")
    assert accepted.status_code == 202  # type: ignore[attr-defined]
    status = client.get(reverse("identity:status")).json()
    assert status["status"] == "failed"
    assert status["photos"][0]["refusal_code"] == "multiple_faces"
    assert "Two faces in the picture" in client.get(ENROLL).content.decode()


@pytest.mark.parametrize(
    ("make", "text"),
    [
        (fifty_megapixels, "too many pixels"),
        (lambda: truncated(OBAMA), "could not be read"),
        (lambda: b"%PDF-1.4 not a photo", "Unsupported file"),
    ],
    ids=["50-megapixels", "truncated", "pdf"],
)
@requires_faces
def test_bad_files_get_a_message_on_the_page_never_a_500(
    client: Client,
    consenting_recipient: Identity,
    post_photo: Post,
    make: Callable[[], bytes],
    text: str,
) -> None:
    logged_in(client, consenting_recipient)
    response = post_photo(make())
    assert response.status_code == 302  # type: ignore[attr-defined]
    page = client.get(ENROLL).content.decode()
    assert text in page
    as_json = post_photo(make(), HTTP_ACCEPT="application/json")
    assert as_json.status_code == 400  # type: ignore[attr-defined]
    assert text in as_json.json()["message"]  # type: ignore[attr-defined]
    assert not consenting_recipient.enrollments.filter(photos__isnull=False).exists()


def test_an_upload_over_the_byte_limit_is_refused_before_it_is_read(
    client: Client, consenting_recipient: Identity, post_photo: Post, settings: object
) -> None:
    settings.FACE_PHOTO_MAX_BYTES = 1000  # type: ignore[attr-defined]
    logged_in(client, consenting_recipient)
    response = post_photo(b"\xff\xd8\xff" + b"\x00" * 5000, HTTP_ACCEPT="application/json")
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert response.json()["error"] == "too_large"  # type: ignore[attr-defined]


def test_a_post_without_a_file_is_a_message(client: Client, consenting_recipient: Identity) -> None:
    logged_in(client, consenting_recipient)
    response = client.post(reverse("identity:photo-submit"), follow=True)
    assert "Choose a photo first" in response.content.decode()


@requires_faces
def test_withdrawal_on_the_page_deletes_the_face_data(
    client: Client, consenting_recipient: Identity, post_photo: Post
) -> None:
    logged_in(client, consenting_recipient)
    post_photo(face_bytes(OBAMA))
    assert FaceTemplate.objects.count() == 1
    page = client.post(reverse("identity:consent-withdraw"), follow=True).content.decode()
    assert "Consent withdrawn" in page
    assert "Your pickup code still works" in page
    assert FaceTemplate.objects.count() == 0
    assert 'name="agree"' in page  # asked again, unticked


@requires_faces
def test_deleting_face_data_on_the_page_keeps_consent(
    client: Client, consenting_recipient: Identity, post_photo: Post
) -> None:
    logged_in(client, consenting_recipient)
    post_photo(face_bytes(OBAMA))
    page = client.post(reverse("identity:face-delete"), follow=True).content.decode()
    assert "Your face data is deleted (1 face templates)" in page
    assert FaceTemplate.objects.count() == 0
    assert consenting_recipient.consents.get().status == ConsentStatus.GIVEN
    assert not consenting_recipient.enrollments.filter(photos__isnull=False).exists()


def test_the_page_asks_for_three_selfies_and_says_why(
    client: Client, consenting_recipient: Identity
) -> None:
    page = logged_in(client, consenting_recipient).get(ENROLL).content.decode()
    assert "Take 3 selfies at different moments" in page
    assert "recognises you more often than from one photo" in page
