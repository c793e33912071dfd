"""Enrollment through the services with real photos from ../shared/faces."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.conf import settings
from django.test import override_settings

from core.errors import ApplicationError, InvalidTransition
from identity import selectors, services
from identity.crypto import template_decrypt
from identity.face_pipeline import REFUSALS
from identity.models import (
    ConsentStatus,
    EnrollmentEvent,
    EnrollmentPhoto,
    EnrollmentStatus,
    FaceEnrollment,
    FaceTemplate,
    Identity,
    PhotoStatus,
)
from identity.tasks import enrollment_photo_process_task
from tests.factories import IdentityFactory
from tests.identity.conftest import (
    BIDEN,
    BIDEN2,
    OBAMA,
    OBAMA2,
    PERSON,
    TWO_PEOPLE,
    Enroll,
    darkened,
    exif_rotated,
    fifty_megapixels,
    jpeg,
    truncated,
)
from tests.identity.faces import face_bytes, requires_faces

pytestmark = [pytest.mark.django_db, requires_faces]

# The 1:1 bar of the shipped settings (0.38 at 10 jitters; docs/face-calibration.md).
VERIFY = settings.FACE_VERIFY_THRESHOLD


def test_it_refuses_photos_without_consent(recipient: Identity) -> None:
    with pytest.raises(ApplicationError) as caught:
        services.enrollment_photo_submit(identity=recipient, data=face_bytes(OBAMA), actor=PERSON)
    assert caught.value.code == "consent_required"
    assert not EnrollmentPhoto.objects.exists()


def test_consent_is_given_once_with_the_policy_version(recipient: Identity) -> None:
    first = services.consent_give(identity=recipient)
    assert services.consent_give(identity=recipient) == first
    assert first.status == ConsentStatus.GIVEN
    assert first.policy_version == "2026-1"


def test_the_same_person_enrolls_and_matches_and_a_different_person_does_not(
    consenting_recipient: Identity, stranger: Identity, enroll: Enroll
) -> None:
    photo = enroll(consenting_recipient, face_bytes(OBAMA))
    assert photo.status == PhotoStatus.ACCEPTED
    assert enroll(stranger, face_bytes(BIDEN)).status == PhotoStatus.ACCEPTED
    people = [consenting_recipient.pk, stranger.pk]

    obama = services.face_identify(
        probe=services.face_probe(image=face_bytes(OBAMA2)).encoding, identity_ids=people
    )
    assert obama.is_match
    assert obama.best_key == consenting_recipient.pk

    biden = services.face_identify(
        probe=services.face_probe(image=face_bytes(BIDEN2)).encoding, identity_ids=people
    )
    assert biden.best_key == stranger.pk

    alone = services.face_identify(
        probe=services.face_probe(image=face_bytes(BIDEN2)).encoding,
        identity_ids=[consenting_recipient.pk],
    )
    assert alone.decision == "no_match"
    assert alone.best_key is None


def test_an_accepted_photo_becomes_an_encrypted_template_and_the_photo_is_deleted(
    consenting_recipient: Identity, enroll: Enroll
) -> None:
    photo = enroll(consenting_recipient, face_bytes(OBAMA))
    template = FaceTemplate.objects.get()
    assert photo.template == template
    assert photo.data is None
    assert photo.processed_at is not None
    assert template.model_name == "dlib_face_recognition_resnet_model_v1"
    assert "face_recognition_models" in template.model_version
    stored = bytes(template.embedding_encrypted)
    assert stored.startswith(b"gAAAAA")  # a Fernet token, not 1024 raw bytes
    expected = services.face_probe(image=face_bytes(OBAMA)).encoding
    assert np.allclose(template_decrypt(stored), expected)
    enrollment = FaceEnrollment.objects.get()
    assert enrollment.status == EnrollmentStatus.ENROLLED
    assert list(enrollment.events.values_list("from_status", "to_status")) == [
        ("", "pending"),
        ("pending", "processing"),
        ("processing", "enrolled"),
    ]
    assert selectors.identity_has_face(identity=consenting_recipient)


def test_raw_photos_are_kept_only_for_the_retention_period(
    consenting_recipient: Identity, enroll: Enroll
) -> None:
    with override_settings(FACE_PHOTO_RETENTION_S=3600):
        photo = enroll(consenting_recipient, face_bytes(OBAMA))
        assert photo.data is not None
        assert services.enrollment_photos_purge() == 0
        later = photo.processed_at + timedelta(hours=2)
        assert services.enrollment_photos_purge(now=later) == 1
    photo.refresh_from_db()
    assert photo.data is None


def test_two_faces_are_refused_with_their_code_and_the_enrollment_fails(
    consenting_recipient: Identity, enroll: Enroll
) -> None:
    photo = enroll(consenting_recipient, face_bytes(TWO_PEOPLE))
    assert photo.status == PhotoStatus.REFUSED
    assert photo.refusal_code == "multiple_faces"
    assert photo.refusal_message == REFUSALS["multiple_faces"]
    assert photo.data is None
    enrollment = FaceEnrollment.objects.get()
    assert enrollment.status == EnrollmentStatus.FAILED
    assert enrollment.events.last().reason == "every photo refused: multiple_faces"
    assert not FaceTemplate.objects.exists()


def test_a_picture_without_a_face_is_refused_as_no_face(
    consenting_recipient: Identity, enroll: Enroll
) -> None:
    y, x = np.mgrid[0:360, 0:480]
    landscape = np.stack([x / 480 * 200 + 30, y / 360 * 150 + 50, (x + y) / 840 * 120 + 60], 2)
    photo = enroll(consenting_recipient, jpeg(landscape.astype(np.uint8)))
    assert photo.refusal_code == "no_face"
    assert photo.refusal_message == "No face found: look straight at the camera."


def test_a_retake_after_a_refusal_enrolls(consenting_recipient: Identity, enroll: Enroll) -> None:
    assert enroll(consenting_recipient, face_bytes(TWO_PEOPLE)).status == PhotoStatus.REFUSED
    assert enroll(consenting_recipient, face_bytes(OBAMA)).status == PhotoStatus.ACCEPTED
    assert FaceEnrollment.objects.get().status == EnrollmentStatus.ENROLLED
    statuses = list(EnrollmentEvent.objects.values_list("to_status", flat=True))
    assert statuses == ["pending", "processing", "failed", "processing", "enrolled"]


def test_a_darkened_photo_is_enhanced_and_enrolled(
    consenting_recipient: Identity, enroll: Enroll
) -> None:
    photo = enroll(consenting_recipient, darkened(OBAMA, 0.15))
    assert photo.status == PhotoStatus.ACCEPTED
    assert photo.quality["enhanced"] is True
    probe = services.face_probe(image=face_bytes(OBAMA2)).encoding
    assert services.face_identify(probe=probe, identity_ids=[consenting_recipient.pk]).is_match


def test_a_nearly_black_photo_is_refused_as_too_dark_with_the_right_message(
    consenting_recipient: Identity, enroll: Enroll
) -> None:
    photo = enroll(consenting_recipient, darkened(OBAMA, 0.02))
    assert photo.refusal_code == "too_dark"
    assert photo.refusal_message == "Too dark: move somewhere brighter or switch on the light."


def test_an_exif_rotated_phone_photo_enrolls(
    consenting_recipient: Identity, enroll: Enroll
) -> None:
    photo = enroll(consenting_recipient, exif_rotated(OBAMA))
    assert photo.status == PhotoStatus.ACCEPTED
    probe = services.face_probe(image=face_bytes(OBAMA2)).encoding
    assert services.face_identify(probe=probe, identity_ids=[consenting_recipient.pk]).is_match


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (fifty_megapixels, "too_many_pixels"),
        (lambda: truncated(OBAMA), "corrupt_image"),
        (lambda: b"GIF89a" + b"\x00" * 100, "unsupported_type"),
        (lambda: b"", "empty"),
    ],
    ids=["50-megapixels", "truncated", "gif", "empty"],
)
def test_unusable_files_are_refused_in_the_request_before_any_worker(
    consenting_recipient: Identity, make: object, code: str
) -> None:
    with pytest.raises(services.PhotoRefused) as caught:
        services.enrollment_photo_submit(
            identity=consenting_recipient,
            data=make(),  # type: ignore[operator]
            actor=PERSON,
        )
    assert caught.value.code == code
    assert caught.value.message == REFUSALS[code]
    assert not EnrollmentPhoto.objects.exists()


def test_the_byte_limit_is_a_setting(consenting_recipient: Identity) -> None:
    with override_settings(FACE_PHOTO_MAX_BYTES=1000), pytest.raises(services.PhotoRefused) as c:
        services.enrollment_photo_submit(
            identity=consenting_recipient, data=face_bytes(OBAMA), actor=PERSON
        )
    assert c.value.code == "too_large"


def test_at_most_three_good_photos_per_enrollment(
    consenting_recipient: Identity, enroll: Enroll
) -> None:
    for relative in (OBAMA, OBAMA2, "examples/knn_examples/test/obama1.jpg"):
        assert enroll(consenting_recipient, face_bytes(relative)).status == PhotoStatus.ACCEPTED
    with pytest.raises(ApplicationError) as caught:
        enroll(consenting_recipient, face_bytes("examples/obama-480p.jpg"))
    assert caught.value.code == "enough_photos"
    assert len(selectors.face_candidates(identity_ids=[consenting_recipient.pk])[0].encodings) == 3


def test_processing_a_photo_twice_does_no_harm(
    consenting_recipient: Identity, enroll: Enroll
) -> None:
    photo = enroll(consenting_recipient, face_bytes(OBAMA))
    assert enrollment_photo_process_task(photo.pk) == "skipped"
    assert services.enrollment_photo_process(photo_id=photo.pk + 1000) == "skipped"
    assert FaceTemplate.objects.count() == 1


def test_withdrawing_consent_deletes_templates_and_photos_at_once(
    consenting_recipient: Identity, stranger: Identity, enroll: Enroll
) -> None:
    enroll(consenting_recipient, face_bytes(OBAMA))
    enroll(consenting_recipient, face_bytes(TWO_PEOPLE))
    enroll(stranger, face_bytes(BIDEN))

    deleted = services.consent_withdraw(identity=consenting_recipient, actor=PERSON)

    assert deleted == 1
    assert not FaceTemplate.objects.filter(identity=consenting_recipient).exists()
    assert not EnrollmentPhoto.objects.filter(enrollment__identity=consenting_recipient).exists()
    assert FaceTemplate.objects.filter(identity=stranger).count() == 1
    consent = consenting_recipient.consents.get()
    assert consent.status == ConsentStatus.WITHDRAWN
    assert consent.withdrawn_at is not None
    enrollment = consenting_recipient.enrollments.get()
    assert enrollment.status == EnrollmentStatus.DELETED
    assert enrollment.events.last().reason == "consent withdrawn"
    assert not selectors.identity_has_face(identity=consenting_recipient)
    assert selectors.face_candidates(identity_ids=[consenting_recipient.pk]) == []


def test_deleting_face_data_keeps_consent_and_allows_a_new_enrollment(
    consenting_recipient: Identity, enroll: Enroll
) -> None:
    enroll(consenting_recipient, face_bytes(OBAMA))
    assert services.face_data_delete(identity=consenting_recipient, actor=PERSON) == 1
    assert not FaceTemplate.objects.exists()
    assert consenting_recipient.consents.get().status == ConsentStatus.GIVEN
    assert enroll(consenting_recipient, face_bytes(OBAMA2)).status == PhotoStatus.ACCEPTED
    assert consenting_recipient.enrollments.count() == 2


def test_a_photo_finished_after_withdrawal_is_discarded(
    consenting_recipient: Identity, django_capture_on_commit_callbacks: object
) -> None:
    photo = services.enrollment_photo_submit(
        identity=consenting_recipient, data=face_bytes(OBAMA), actor=PERSON
    )
    services.consent_withdraw(identity=consenting_recipient, actor=PERSON)
    assert services.enrollment_photo_process(photo_id=photo.pk) == "skipped"
    assert not FaceTemplate.objects.exists()


def test_a_deleted_enrollment_cannot_move_again(consenting_recipient: Identity) -> None:
    enrollment = services.enrollment_start(identity=consenting_recipient, actor=PERSON)
    services.face_data_delete(identity=consenting_recipient, actor=PERSON)
    with pytest.raises(InvalidTransition):
        services.enrollment_transition(
            enrollment_id=enrollment.pk, to_status=EnrollmentStatus.ENROLLED, actor=PERSON
        )


def test_face_candidates_leave_out_people_without_consent_or_templates(
    consenting_recipient: Identity, stranger: Identity, enroll: Enroll
) -> None:
    enroll(consenting_recipient, face_bytes(OBAMA))
    nobody = IdentityFactory()
    candidates = selectors.face_candidates(
        identity_ids=[consenting_recipient.pk, stranger.pk, nobody.pk]
    )
    assert [c.key for c in candidates] == [consenting_recipient.pk]
    assert candidates[0].encodings[0].shape == (128,)
    assert selectors.face_candidates(identity_ids=[]) == []


def test_face_verify_uses_the_stricter_threshold_for_one_person(
    consenting_recipient: Identity, enroll: Enroll, settings: object
) -> None:
    enroll(consenting_recipient, face_bytes(OBAMA))
    same = services.face_verify(
        probe=services.face_probe(image=face_bytes("examples/obama-720p.jpg")).encoding,
        identity=consenting_recipient,
    )
    assert same.verified
    assert same.threshold == VERIFY
    other = services.face_verify(
        probe=services.face_probe(image=face_bytes(BIDEN)).encoding,
        identity=consenting_recipient,
    )
    assert not other.verified
    assert other.distance is not None and other.distance > VERIFY


def test_face_identify_logs_its_decision_without_the_face(
    consenting_recipient: Identity, enroll: Enroll, caplog: pytest.LogCaptureFixture
) -> None:
    enroll(consenting_recipient, face_bytes(OBAMA))
    probe = services.face_probe(image=face_bytes(OBAMA2)).encoding
    with caplog.at_level("INFO", logger="identity.services"):
        services.face_identify(probe=probe, identity_ids=[consenting_recipient.pk])
    text = caplog.text
    assert "face identify: match" in text
    assert f"threshold {settings.FACE_MATCH_THRESHOLD:.3f}" in text
    assert f"{probe[0]:.4f}" not in text


@requires_faces
def test_a_photo_from_the_same_moment_as_a_template_is_refused_as_too_similar(
    consenting_recipient: Identity, enroll: Enroll
) -> None:
    # obama-720p.jpg is obama.jpg at another resolution: 0.04 apart, below the 0.18 floor.
    assert enroll(consenting_recipient, face_bytes(OBAMA)).status == PhotoStatus.ACCEPTED
    same = enroll(consenting_recipient, face_bytes("examples/obama-720p.jpg"))
    assert same.status == PhotoStatus.REFUSED
    assert same.refusal_code == "too_similar"
    assert same.refusal_message == REFUSALS["too_similar"]
    assert "another moment" in same.refusal_message
    assert same.quality["distance"] < same.quality["min_distance"] == 0.18
    assert same.template is None
    # The person stays enrolled with the template they had; another moment is welcome.
    assert FaceTemplate.objects.filter(identity=consenting_recipient).count() == 1
    assert consenting_recipient.enrollments.get().status == EnrollmentStatus.ENROLLED
    assert enroll(consenting_recipient, face_bytes(OBAMA2)).status == PhotoStatus.ACCEPTED
    overview = selectors.enrollment_overview(identity=consenting_recipient)
    assert [p.refusal_code for p in overview.photos] == ["", "too_similar", ""]


@requires_faces
def test_the_same_face_under_two_identities_is_not_compared_for_spread(
    consenting_recipient: Identity, stranger: Identity, enroll: Enroll
) -> None:
    assert enroll(consenting_recipient, face_bytes(OBAMA)).status == PhotoStatus.ACCEPTED
    services.consent_give(identity=stranger)
    photo = enroll(stranger, face_bytes("examples/obama-720p.jpg"))
    assert photo.status == PhotoStatus.ACCEPTED


@requires_faces
def test_the_spread_floor_is_a_setting(consenting_recipient: Identity, enroll: Enroll) -> None:
    enroll(consenting_recipient, face_bytes(OBAMA))
    with override_settings(FACE_TEMPLATE_MIN_SPREAD=0.0):
        photo = enroll(consenting_recipient, face_bytes("examples/obama-720p.jpg"))
    assert photo.status == PhotoStatus.ACCEPTED


def test_enrollment_asks_for_three_photos_by_default_and_says_why(
    consenting_recipient: Identity,
) -> None:
    overview = selectors.enrollment_overview(identity=consenting_recipient)
    assert overview.photos_wanted == 3
    assert overview.photos_why.startswith("Take 3 selfies at different moments")
    assert "recognises you more often" in overview.photos_why
    assert overview.as_dict()["photos_wanted"] == 3
    with override_settings(FACE_ENROLLMENT_PHOTOS=1):
        one = selectors.enrollment_overview(identity=consenting_recipient)
    assert (one.photos_wanted, one.photos_why) == (1, "Take one selfie, facing the camera.")
    # Never more than the templates a person keeps.
    with override_settings(FACE_ENROLLMENT_PHOTOS=10):
        assert selectors.enrollment_overview(identity=consenting_recipient).photos_wanted == 3
