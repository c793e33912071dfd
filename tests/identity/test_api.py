# ruff: noqa: RUF001
"""The enrollment REST API: token authentication, the same flows, one error shape."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from identity.models import FaceTemplate, Identity, RealIdCheck
from identity.notify import SentSms
from identity.services import api_token_issue, identity_language_remember
from tests.factories import StaffUserFactory
from tests.identity.conftest import BIDEN, OBAMA, OBAMA2, fifty_megapixels, truncated
from tests.identity.faces import face_bytes, requires_faces
from tests.identity.test_real_id import VALID

pytestmark = pytest.mark.django_db

API = "/api/v1/identity/"

# The 1:1 bar of the shipped settings (0.38 at 10 jitters; docs/face-calibration.md).
VERIFY = settings.FACE_VERIFY_THRESHOLD


def as_person(identity: Identity) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Enrollment {api_token_issue(identity=identity)}")
    return client


def photo(data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile("selfie.jpg", data, content_type="image/jpeg")


Capture = Callable[..., object]


def test_endpoints_need_the_enrollment_token(recipient: Identity) -> None:
    anonymous = APIClient().get(API + "enrollment/")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "not_authenticated"
    forged = APIClient()
    forged.credentials(HTTP_AUTHORIZATION="Enrollment 1:abc:def")
    response = forged.get(API + "enrollment/")
    assert response.status_code == 401
    assert set(response.json()) == {"error", "message", "details"}


def test_a_staff_session_is_not_a_person(client: object, recipient: Identity) -> None:
    api = APIClient()
    api.force_login(StaffUserFactory())
    assert api.get(API + "enrollment/").status_code in (401, 403)


def test_phone_login_returns_a_token_that_opens_the_api(
    recipient: Identity, sms_outbox: list[SentSms], django_capture_on_commit_callbacks: Capture
) -> None:
    api = APIClient()
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        sent = api.post(API + "login/code/", {"phone": recipient.phone}, format="json")
    assert sent.status_code == 202
    code = re.search(r"\b(\d{6})\b", sms_outbox[0].text).group(1)  # type: ignore[union-attr]
    bad = api.post(API + "login/verify/", {"phone": recipient.phone, "code": "12"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_code"
    good = api.post(API + "login/verify/", {"phone": recipient.phone, "code": code}, format="json")
    token = good.json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Enrollment {token}")
    overview = api.get(API + "enrollment/").json()
    assert overview["name"] == "Li Wei"
    assert overview["consent"] is False
    assert overview["status"] == "none"


def test_the_page_language_becomes_the_persons_for_later_texts(
    recipient: Identity, sms_outbox: list[SentSms], django_capture_on_commit_callbacks: Capture
) -> None:
    assert recipient.language == ""  # the platform's default (zh-hans) until they act
    api = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        api.post(API + "login/code/", {"phone": recipient.phone}, format="json")
    code = re.search(r"\b(\d{6})\b", sms_outbox[-1].text).group(1)  # type: ignore[union-attr]
    assert "login code" in sms_outbox[-1].text  # the page asked in English
    good = api.post(API + "login/verify/", {"phone": recipient.phone, "code": code}, format="json")
    assert good.status_code == 200
    recipient.refresh_from_db()
    assert recipient.language == "en"
    # The switch on the page (a cookie) to Chinese; the next consent records it.
    api.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    api.credentials(HTTP_AUTHORIZATION=f"Enrollment {good.json()['token']}")
    assert api.post(API + "consent/", {"agree": True}, format="json").status_code == 200
    recipient.refresh_from_db()
    assert recipient.language == "zh-hans"
    # A code the platform does not speak changes nothing (the middleware never passes one).
    assert not identity_language_remember(identity=recipient, language="fr")
    recipient.refresh_from_db()
    assert recipient.language == "zh-hans"


def test_consent_must_be_explicit(recipient: Identity) -> None:
    api = as_person(recipient)
    refused = api.post(API + "consent/", {"agree": False}, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"] == "validation_error"
    assert api.post(API + "photos/", {"photo": photo(b"x")}).json()["error"] == "consent_required"
    given = api.post(API + "consent/", {"agree": True}, format="json")
    assert given.status_code == 200
    assert given.json()["consent"] is True


@requires_faces
def test_a_photo_posted_to_the_api_enrolls_and_nothing_biometric_comes_back(
    consenting_recipient: Identity, django_capture_on_commit_callbacks: Capture
) -> None:
    api = as_person(consenting_recipient)
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        posted = api.post(API + "photos/", {"photo": photo(face_bytes(OBAMA))})
    assert posted.status_code == 202
    assert posted.json()["status"] == "pending"
    detail = api.get(API + f"photos/{posted.json()['id']}/").json()
    assert detail["status"] == "accepted"
    overview = api.get(API + "enrollment/")
    assert overview.json()["status"] == "enrolled"
    assert overview.json()["templates"] == 1
    assert overview.json()["photos_wanted"] == 3
    assert "different moments" in overview.json()["photos_why"]
    text = json.dumps([detail, overview.json()])
    for word in ("encoding", "embedding", "quality", "brightness", "box"):
        assert word not in text


@pytest.mark.parametrize(
    ("make", "code"),
    [(fifty_megapixels, "too_many_pixels"), (lambda: truncated(OBAMA), "corrupt_image")],
    ids=["50-megapixels", "truncated"],
)
@requires_faces
def test_oversized_and_truncated_files_get_the_error_shape_not_a_500(
    consenting_recipient: Identity, make: Callable[[], bytes], code: str
) -> None:
    response = as_person(consenting_recipient).post(API + "photos/", {"photo": photo(make())})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == code
    assert set(body) == {"error", "message", "details"}


def test_a_missing_file_is_a_validation_error(consenting_recipient: Identity) -> None:
    response = as_person(consenting_recipient).post(API + "photos/", {})
    assert response.status_code == 400
    assert response.json()["details"]["photo"]


def test_another_persons_photo_is_not_found(
    consenting_recipient: Identity, stranger: Identity
) -> None:
    assert as_person(stranger).get(API + "photos/1/").json()["error"] == "not_found"


@requires_faces
def test_withdrawal_through_the_api_deletes_templates(
    consenting_recipient: Identity, django_capture_on_commit_callbacks: Capture
) -> None:
    api = as_person(consenting_recipient)
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        api.post(API + "photos/", {"photo": photo(face_bytes(OBAMA))})
    assert FaceTemplate.objects.count() == 1
    withdrawn = api.delete(API + "consent/")
    assert withdrawn.json()["consent"] is False
    assert withdrawn.json()["templates"] == 0
    assert FaceTemplate.objects.count() == 0


@requires_faces
def test_face_data_deletion_through_the_api(
    consenting_recipient: Identity, django_capture_on_commit_callbacks: Capture
) -> None:
    api = as_person(consenting_recipient)
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        api.post(API + "photos/", {"photo": photo(face_bytes(OBAMA))})
    deleted = api.delete(API + "face/")
    assert deleted.json()["consent"] is True
    assert deleted.json()["templates"] == 0


@requires_faces
def test_real_id_check_through_the_api(
    consenting_recipient: Identity, django_capture_on_commit_callbacks: Capture
) -> None:
    api = as_person(consenting_recipient)
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        api.post(API + "photos/", {"photo": photo(face_bytes(OBAMA))})
    invalid = api.post(API + "real-id/", {"id_number": "123", "portrait": photo(b"x")})
    assert invalid.json()["error"] == "invalid_id_number"
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        posted = api.post(
            API + "real-id/", {"id_number": VALID, "portrait": photo(face_bytes(OBAMA2))}
        )
    assert posted.status_code == 202
    decided = api.get(API + f"real-id/{posted.json()['id']}/").json()
    assert decided["decision"] == "verified"
    assert decided["distance"] <= decided["threshold"] == VERIFY
    assert VALID not in json.dumps(decided)
    assert "id_number_hash" not in decided
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        other = api.post(
            API + "real-id/", {"id_number": VALID, "portrait": photo(face_bytes(BIDEN))}
        )
    assert api.get(API + f"real-id/{other.json()['id']}/").json()["decision"] == "not_verified"
    assert RealIdCheck.objects.count() == 2


def test_the_schema_documents_the_identity_api(client: object) -> None:
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    document = schema.json() if schema["Content-Type"].endswith("json") else None
    text = schema.content.decode()
    assert "/api/v1/identity/photos/" in text
    assert "enrollmentToken" in text
    assert document is None or "paths" in document


@requires_faces
def test_a_second_photo_of_the_same_moment_answers_too_similar_with_its_message(
    consenting_recipient: Identity, django_capture_on_commit_callbacks: Capture
) -> None:
    api = as_person(consenting_recipient)
    for shot in (OBAMA, "examples/obama-480p.jpg"):
        with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
            posted = api.post(API + "photos/", {"photo": photo(face_bytes(shot))})
        assert posted.status_code == 202
    detail = api.get(API + f"photos/{posted.json()['id']}/").json()
    assert detail["status"] == "refused"
    assert detail["refusal_code"] == "too_similar"
    assert detail["message"].startswith("This photo is almost the same as one you already sent")
    assert "distance" not in json.dumps(detail)


@pytest.mark.parametrize(
    ("language", "texts"),
    [
        ("zh-hans", {
            "invalid": "请求无效，详见 details。",
            "consent": "必须明确表示同意。",
            "id_number": "身份证号码应为 18 位。",
            "photo": "没有这张照片。",
            "phone": "请输入手机号码，例如 13800138000；境外号码请加国家代码，例如 +8613800138000。",
            "token": "请发送 'Enrollment <token>'。",
        }),
        ("en", {
            "invalid": "The request is invalid; see details.",
            "consent": "Consent must be given explicitly.",
            "id_number": "An ID number has 18 characters.",
            "photo": "No such photo.",
            "phone": "Enter a phone number such as 13800138000, or +8613800138000 from abroad.",
            "token": "Send 'Enrollment <token>'.",
        }),
    ],
)  # fmt: skip
def test_the_identity_apis_refusals_speak_the_callers_language(
    consenting_recipient: Identity, language: str, texts: dict[str, str]
) -> None:
    api = as_person(consenting_recipient)
    asks = {"HTTP_ACCEPT_LANGUAGE": language}

    def refused(response, status: int, error: str, message: str, details=None) -> None:  # type: ignore[no-untyped-def]
        assert response.status_code == status, response.json()
        assert response.json() == {"error": error, "message": message, "details": details or {}}

    refused(
        api.post(API + "consent/", {"agree": False}, format="json", **asks),
        400,
        "validation_error",
        texts["invalid"],
        {"agree": [texts["consent"]]},
    )
    refused(
        api.post(API + "real-id/", {"id_number": "123", "portrait": photo(b"x")}, **asks),
        400,
        "invalid_id_number",
        texts["id_number"],
        {"reason": "length"},
    )
    refused(api.get(API + "photos/999999/", **asks), 404, "not_found", texts["photo"])
    refused(
        APIClient().post(API + "login/code/", {"phone": "12"}, format="json", **asks),
        400,
        "validation_error",
        texts["invalid"],
        {"phone": [texts["phone"]]},
    )
    malformed = APIClient(HTTP_AUTHORIZATION="Enrollment a b", **asks)
    refused(malformed.get(API + "enrollment/"), 401, "authentication_failed", texts["token"])
