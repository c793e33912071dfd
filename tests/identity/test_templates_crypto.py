from __future__ import annotations

from io import StringIO

import numpy as np
import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.test import override_settings

from identity.crypto import (
    TemplateKeyError,
    template_decrypt,
    template_encrypt,
    template_uses_newest_key,
)
from identity.models import FaceTemplate
from identity.selectors import face_candidates
from tests.identity.conftest import OBAMA, Enroll
from tests.identity.faces import face_bytes, requires_faces

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


def test_a_template_round_trips_and_is_not_stored_in_clear() -> None:
    encoding = np.linspace(-0.2, 0.2, 128)
    token = template_encrypt(encoding)
    assert encoding.astype("<f8").tobytes() not in token
    assert np.array_equal(template_decrypt(token), encoding)
    with pytest.raises(ValueError):
        template_encrypt(np.zeros(64))


def test_without_configured_keys_a_key_is_derived_from_the_secret_key() -> None:
    token = template_encrypt(np.ones(128))
    with override_settings(SECRET_KEY="another-secret-key-" * 4), pytest.raises(TemplateKeyError):
        template_decrypt(token)


@requires_faces
@pytest.mark.django_db
def test_key_rotation_reads_old_templates_and_re_encrypts_them_with_the_new_key(
    consenting_recipient: object, enroll: Enroll
) -> None:
    with override_settings(FACE_TEMPLATE_KEYS=[OLD]):
        enroll(consenting_recipient, face_bytes(OBAMA))
        before = face_candidates(identity_ids=[consenting_recipient.pk])[0].encodings[0]
    old_token = bytes(FaceTemplate.objects.get().embedding_encrypted)

    with override_settings(FACE_TEMPLATE_KEYS=[NEW]), pytest.raises(TemplateKeyError):
        face_candidates(identity_ids=[consenting_recipient.pk])

    with override_settings(FACE_TEMPLATE_KEYS=[NEW, OLD]):
        assert not template_uses_newest_key(old_token)
        readable = face_candidates(identity_ids=[consenting_recipient.pk])[0].encodings[0]
        assert np.array_equal(readable, before)
        out = StringIO()
        call_command("face_templates_rotate", stdout=out)
        assert "1 face templates re-encrypted" in out.getvalue()

    new_token = bytes(FaceTemplate.objects.get().embedding_encrypted)
    assert new_token != old_token
    with override_settings(FACE_TEMPLATE_KEYS=[NEW]):
        assert template_uses_newest_key(new_token)
        after = face_candidates(identity_ids=[consenting_recipient.pk])[0].encodings[0]
        assert np.array_equal(after, before)
