"""End to end: a photo posted through the API is turned into a template by a real Celery
worker process on Redis (no eager mode)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from identity.models import EnrollmentPhoto, EnrollmentStatus, FaceTemplate, PhotoStatus
from identity.selectors import face_candidates
from identity.services import face_probe
from tests.factories import BiometricConsentFactory, IdentityFactory
from tests.identity.conftest import OBAMA, OBAMA2, TWO_PEOPLE
from tests.identity.faces import face_bytes, requires_faces
from tests.identity.test_api import API, as_person
from tests.live.worker import WorkerProcess, wait_for

pytestmark = [pytest.mark.slow, requires_faces]


def processed(photo_id: int) -> bool:
    return EnrollmentPhoto.objects.filter(pk=photo_id).exclude(status=PhotoStatus.PENDING).exists()


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_computes_the_template_for_a_photo_posted_to_the_api(
    celery_worker: WorkerProcess,
) -> None:
    person = IdentityFactory()
    BiometricConsentFactory(identity=person)
    api = as_person(person)

    good = api.post(API + "photos/", {"photo": SimpleUploadedFile("a.jpg", face_bytes(OBAMA))})
    assert good.status_code == 202
    photo_id = good.json()["id"]
    wait_for(lambda: processed(photo_id), what="the photo to be processed", worker=celery_worker)

    photo = EnrollmentPhoto.objects.get(pk=photo_id)
    assert photo.status == PhotoStatus.ACCEPTED
    assert photo.data is None
    assert photo.enrollment.status == EnrollmentStatus.ENROLLED
    template = FaceTemplate.objects.get(identity=person)
    assert template.model_name == "dlib_face_recognition_resnet_model_v1"
    assert "Task identity.tasks.enrollment_photo_process_task[" in celery_worker.log()

    probe = face_probe(image=face_bytes(OBAMA2)).encoding
    stored = face_candidates(identity_ids=[person.pk])[0].encodings[0]
    assert float(((stored - probe) ** 2).sum() ** 0.5) < 0.44

    bad = api.post(API + "photos/", {"photo": SimpleUploadedFile("b.jpg", face_bytes(TWO_PEOPLE))})
    bad_id = bad.json()["id"]
    wait_for(lambda: processed(bad_id), what="the second photo", worker=celery_worker)
    refused = api.get(API + f"photos/{bad_id}/").json()
    assert refused["status"] == "refused"
    assert refused["refusal_code"] == "multiple_faces"
    assert api.get(API + "enrollment/").json()["status"] == "enrolled"
