from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from django.test import override_settings
from PIL import Image

from core.actors import Actor
from identity import notify, services
from identity.models import EnrollmentPhoto, Identity
from tests.factories import BiometricConsentFactory, IdentityFactory
from tests.identity.faces import face_bytes

OBAMA = "examples/obama.jpg"
OBAMA2 = "examples/obama2.jpg"
BIDEN = "examples/biden.jpg"
BIDEN2 = "examples/knn_examples/train/biden/biden2.jpg"
TWO_PEOPLE = "examples/two_people.jpg"

PERSON = Actor(kind="recipient", label="test person")


def jpeg(image: Image.Image | np.ndarray, **params: object) -> bytes:
    picture = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=92, **params)
    return buffer.getvalue()


def darkened(relative: str, factor: float) -> bytes:
    rgb = np.asarray(Image.open(io.BytesIO(face_bytes(relative))).convert("RGB"))
    return jpeg((rgb.astype(np.float64) * factor).astype(np.uint8))


def exif_rotated(relative: str) -> bytes:
    lying = Image.open(io.BytesIO(face_bytes(relative))).rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display", undoing the rotation above
    return jpeg(lying, exif=exif)


def fifty_megapixels() -> bytes:
    """A real, fully decodable 8200x6100 JPEG: tiny on disk, 50 million pixels inside."""
    return jpeg(Image.new("RGB", (8200, 6100), (120, 110, 100)))


def truncated(relative: str) -> bytes:
    data = face_bytes(relative)
    return data[: len(data) // 2]


@pytest.fixture(autouse=True)
def sms_outbox() -> Iterator[list[notify.SentSms]]:
    notify.outbox.clear()
    with override_settings(SMS_BACKEND="identity.notify.LocmemSmsBackend"):
        yield notify.outbox
    notify.outbox.clear()


@pytest.fixture
def recipient(db: None) -> Identity:
    return IdentityFactory(name="Li Wei", phone="+8613800000001")


@pytest.fixture
def consenting_recipient(recipient: Identity) -> Identity:
    BiometricConsentFactory(identity=recipient)
    return recipient


@pytest.fixture
def stranger(db: None) -> Identity:
    person = IdentityFactory(name="Wang Fang", phone="+8613800000002")
    BiometricConsentFactory(identity=person)
    return person


Enroll = Callable[..., EnrollmentPhoto]


@pytest.fixture
def enroll(django_capture_on_commit_callbacks: Callable[..., object]) -> Enroll:
    """Submit a photo and run its (eager) task at commit, as a request would."""

    def submit(identity: Identity, data: bytes) -> EnrollmentPhoto:
        with django_capture_on_commit_callbacks(execute=True):  # type: ignore[attr-defined]
            photo = services.enrollment_photo_submit(identity=identity, data=data, actor=PERSON)
        photo.refresh_from_db()
        return photo

    return submit


_probe_cache: dict[bytes, object] = {}


@pytest.fixture(autouse=True)
def _cached_face_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline is deterministic: each distinct photo runs through dlib once per session,
    which keeps the suite fast while every test still sees real encodings and refusals."""
    import hashlib

    from identity.face_pipeline import FaceRefused, FaceResult

    real = services.face_probe

    def cached(*, image: bytes) -> FaceResult:
        key = hashlib.sha256(image).digest()
        if key not in _probe_cache:
            try:
                _probe_cache[key] = real(image=image)
            except FaceRefused as refusal:
                _probe_cache[key] = refusal
        found = _probe_cache[key]
        if isinstance(found, FaceRefused):
            raise found
        assert isinstance(found, FaceResult)
        return found

    monkeypatch.setattr(services, "face_probe", cached)
