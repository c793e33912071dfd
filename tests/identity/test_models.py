from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from identity.models import BiometricConsent, ConsentStatus, Identity
from tests.factories import IdentityFactory

pytestmark = pytest.mark.django_db


def _consent(identity: Identity, **kwargs: object) -> BiometricConsent:
    fields = {"status": ConsentStatus.GIVEN, "policy_version": "2026-1", "given_at": timezone.now()}
    fields.update(kwargs)
    return BiometricConsent.objects.create(identity=identity, **fields)


def test_the_database_refuses_two_given_consents_for_one_person() -> None:
    person = IdentityFactory()
    _consent(person)
    with pytest.raises(IntegrityError), transaction.atomic():
        _consent(person)


def test_a_person_can_consent_again_after_withdrawing() -> None:
    person = IdentityFactory()
    _consent(person, status=ConsentStatus.WITHDRAWN, withdrawn_at=timezone.now())
    _consent(person)
    assert person.consents.count() == 2


def test_the_database_refuses_a_withdrawn_consent_without_a_time() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        _consent(IdentityFactory(), status=ConsentStatus.WITHDRAWN)


def test_the_database_refuses_real_name_verification_without_an_id_number() -> None:
    person = IdentityFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Identity.objects.filter(pk=person.pk).update(real_name_verified_at=timezone.now())


def test_the_database_refuses_a_duplicate_phone() -> None:
    IdentityFactory(phone="+8613800000009")
    with pytest.raises(IntegrityError), transaction.atomic():
        IdentityFactory(phone="+8613800000009")
