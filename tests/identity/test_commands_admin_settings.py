from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from identity import matching, services
from identity.door_policy import DoorPolicy
from identity.embeddings import DlibEncoder, get_default_encoder
from identity.models import FaceTemplate, Identity
from tests.factories import IdentityFactory, StaffUserFactory
from tests.identity.conftest import OBAMA, TWO_PEOPLE, Enroll
from tests.identity.faces import FACES, face_bytes, requires_faces

ROOT = Path(__file__).resolve().parents[2]


@requires_faces
def test_face_eval_prints_its_report_on_the_knn_training_set() -> None:
    out, err = StringIO(), StringIO()
    call_command("face_eval", str(FACES / "examples/knn_examples/train"), stdout=out, stderr=err)
    report = out.getvalue()
    assert "Photos: 9 found, 9 used, 0 refused, 0 duplicates skipped; 5 persons" in report
    assert "false accept rate 0.0%" in report
    assert "<- configured" in report
    assert "Identification, leave-one-out" in report
    assert "[9/9]" in err.getvalue()
    assert "[1/9]" not in report


def test_face_eval_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CommandError):
        call_command("face_eval", str(tmp_path / "absent"), stdout=StringIO(), stderr=StringIO())


def test_the_threshold_settings_default_to_the_matching_policy() -> None:
    assert settings.FACE_MATCH_THRESHOLD == matching.DEFAULT_MATCH_THRESHOLD
    assert settings.FACE_MATCH_MARGIN == matching.DEFAULT_MATCH_MARGIN
    assert settings.FACE_VERIFY_THRESHOLD == matching.DEFAULT_VERIFY_THRESHOLD
    assert settings.FACE_PHOTO_RETENTION_S == 0


def test_the_door_settings_default_to_the_door_policy() -> None:
    assert DoorPolicy.from_settings() == DoorPolicy()


def test_the_encoder_jitters_are_a_setting() -> None:
    # Ten by default: the door thresholds were measured with 10-jitter encodings.
    default = services.face_encoder()
    assert isinstance(default, DlibEncoder) and default.num_jitters == 10
    with override_settings(FACE_ENCODER_JITTERS=1):
        single = services.face_encoder()
    assert isinstance(single, DlibEncoder)
    assert single.num_jitters == 1
    assert single is get_default_encoder() and single is not default
    # burst frames are encoded once each: the burst's median is their averaging
    assert services.liveness_encoder().num_jitters == 1


@pytest.mark.parametrize("missing", ["FACE_TEMPLATE_KEYS", "ID_NUMBER_HASH_KEY"])
def test_production_refuses_to_start_without_the_face_secrets(missing: str) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "p" * 60,
        "DATABASE_URL": "postgres://u@localhost/db",
        "REDIS_URL": "redis://localhost:6379/0",
        "DJANGO_ALLOWED_HOSTS": "example.com",
        "CABINET_SIGNING_MASTER_KEY": "k" * 40,
        "FACE_TEMPLATE_KEYS": "MyI1xUoy4rVtVVGkzvEl-gYwJ6z4PBnrT3WzvN1pKVc=",
        "ID_NUMBER_HASH_KEY": "h" * 40,
    }
    env.pop(missing)
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert f"{missing} must be set in production" in result.stderr


@requires_faces
@pytest.mark.django_db
def test_the_admin_shows_figures_but_never_the_face(
    client: Client, consenting_recipient: Identity, enroll: Enroll
) -> None:
    enroll(consenting_recipient, face_bytes(OBAMA))
    enroll(consenting_recipient, face_bytes(TWO_PEOPLE))
    client.force_login(StaffUserFactory())
    template = FaceTemplate.objects.get()
    token = bytes(template.embedding_encrypted).decode()
    for url in [
        "/admin/identity/facetemplate/",
        f"/admin/identity/facetemplate/{template.pk}/change/",
        "/admin/identity/enrollmentphoto/",
        f"/admin/identity/enrollmentphoto/{template.photo.pk}/change/",
        "/admin/identity/faceenrollment/",
        "/admin/identity/enrollmentevent/",
        "/admin/identity/onetimecode/",
        "/admin/identity/realidcheck/",
        f"/admin/identity/identity/{consenting_recipient.pk}/change/",
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert token[:40] not in html
        assert "embedding" not in html.lower(), url
    assert "multiple_faces" in client.get("/admin/identity/enrollmentphoto/").content.decode()
    assert client.get("/admin/identity/enrollmentphoto/add/").status_code == 403


@requires_faces
@pytest.mark.django_db
def test_staff_delete_face_data_through_an_admin_action(
    client: Client, consenting_recipient: Identity, enroll: Enroll
) -> None:
    enroll(consenting_recipient, face_bytes(OBAMA))
    client.force_login(StaffUserFactory())
    selected = {"action": "withdraw_consent", "_selected_action": [consenting_recipient.pk]}
    # First the confirmation page, with the count; nothing is deleted yet.
    asked = client.post("/admin/identity/identity/", selected)
    assert asked.status_code == 200
    assert "Withdraw the biometric consent of 1 person(s)?" in asked.content.decode()
    assert FaceTemplate.objects.exists()
    response = client.post("/admin/identity/identity/", {**selected, "confirm": "1"}, follow=True)
    assert "face templates deleted: 1." in response.content.decode()
    assert not FaceTemplate.objects.exists()
    event = consenting_recipient.enrollments.get().events.last()
    assert (event.to_status, event.actor_kind) == ("deleted", "staff")


@pytest.mark.django_db
def test_enrollment_link_prints_a_working_link(client: Client, recipient: Identity) -> None:
    out = StringIO()
    call_command("enrollment_link", recipient.phone, "--base-url", "http://x.test/", stdout=out)
    link = out.getvalue().strip()
    assert link.startswith("http://x.test/enroll/link/#")
    path, token = link.removeprefix("http://x.test").split("#")
    assert client.get(path).status_code == 200
    assert client.post(path, {"token": token})["Location"] == "/enroll/login/code/"
    with pytest.raises(CommandError):
        call_command("enrollment_link", "+8613899999999", stdout=StringIO())


@pytest.mark.django_db
def test_enrollment_link_takes_a_national_number_and_defaults_to_the_platforms_base_url(
    client: Client, settings
) -> None:  # type: ignore[no-untyped-def]
    person = IdentityFactory(phone="+8613800000003")
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:8765"
    out = StringIO()
    call_command("enrollment_link", "13800000003", stdout=out)
    link = out.getvalue().strip()
    assert link.startswith("http://127.0.0.1:8765/enroll/link/#")
    assert client.get("/enroll/link/").status_code == 200
    token = link.split("#", 1)[1]
    assert services.enrollment_link_redeem(token=token) == person
