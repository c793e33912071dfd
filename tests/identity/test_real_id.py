from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.conf import settings
from django.test import override_settings

from core.errors import ApplicationError
from identity import services
from identity.id_numbers import (
    InvalidIdNumber,
    id_number_check_character,
    id_number_hash,
    id_number_validate,
)
from identity.models import Identity, RealIdCheck, RealIdDecision
from tests.identity.conftest import BIDEN, OBAMA, OBAMA2, TWO_PEOPLE, Enroll
from tests.identity.faces import face_bytes, requires_faces

VALID = "11010519491231002X"  # the standard's own example
VALID_DIGIT = "440524198001010013"

# The 1:1 bar of the shipped settings (0.38 at 10 jitters; docs/face-calibration.md).
VERIFY = settings.FACE_VERIFY_THRESHOLD


def with_check(first17: str) -> str:
    return first17 + id_number_check_character(first17)


def test_it_accepts_valid_numbers_and_normalises_the_x() -> None:
    assert id_number_validate(VALID) == VALID
    assert id_number_validate(" 11010519491231002x ") == VALID
    assert id_number_validate(VALID_DIGIT) == VALID_DIGIT
    assert id_number_validate(with_check("31010120000229123")) == with_check("31010120000229123")


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("11010519491231002", "length"),
        ("1101051949123100200", "length"),
        ("11010519491231002Y", "characters"),
        ("1101051949123A002X", "characters"),
        ("11010519491231003X", "check_digit"),
        ("110105194912310021", "check_digit"),
        (with_check("11010519490230002"), "birth_date"),  # 30 February
        (with_check("11010519491301002"), "birth_date"),  # month 13
        (with_check("11010518991231002"), "birth_date"),  # before 1900
        (with_check("31010120010229123"), "birth_date"),  # 2001 is no leap year
        (with_check("01010519491231002"), "region"),
    ],
)
def test_it_refuses_invalid_numbers_saying_why(number: str, reason: str) -> None:
    with pytest.raises(InvalidIdNumber) as caught:
        id_number_validate(number)
    assert caught.value.details["reason"] == reason
    assert caught.value.code == "invalid_id_number"


def test_a_birth_date_in_the_future_is_refused() -> None:
    with (
        time_machine.travel(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
        pytest.raises(InvalidIdNumber),
    ):
        id_number_validate(with_check("11010520300101002"))


def test_the_number_is_stored_only_as_a_keyed_hash() -> None:
    digest = id_number_hash(VALID)
    assert len(digest) == 64
    assert VALID not in digest
    assert id_number_hash("11010519491231002x") == digest
    with override_settings(ID_NUMBER_HASH_KEY="another key"):
        assert id_number_hash(VALID) != digest


@pytest.fixture
def enrolled(consenting_recipient: Identity, enroll: Enroll) -> Identity:
    enroll(consenting_recipient, face_bytes(OBAMA))
    return consenting_recipient


def submit(
    identity: Identity, portrait: bytes, django_capture: object, number: str = VALID
) -> RealIdCheck:
    with django_capture(execute=True):  # type: ignore[operator]
        check = services.real_id_check_submit(
            identity=identity, id_number=number, portrait=portrait
        )
    check.refresh_from_db()
    return check


@requires_faces
@pytest.mark.django_db
def test_an_id_portrait_of_the_same_person_verifies_them_and_records_the_distance(
    enrolled: Identity, django_capture_on_commit_callbacks: object
) -> None:
    check = submit(enrolled, face_bytes(OBAMA2), django_capture_on_commit_callbacks)
    assert check.decision == RealIdDecision.VERIFIED
    assert check.distance is not None and check.distance <= VERIFY
    assert check.threshold == VERIFY
    assert check.portrait is None
    assert check.id_number_hash == id_number_hash(VALID)
    enrolled.refresh_from_db()
    assert enrolled.real_name_verified_at == check.decided_at
    assert enrolled.id_number_hash == id_number_hash(VALID)


@requires_faces
@pytest.mark.django_db
def test_an_id_portrait_of_another_person_is_refused_with_its_distance(
    enrolled: Identity, django_capture_on_commit_callbacks: object
) -> None:
    check = submit(enrolled, face_bytes(BIDEN), django_capture_on_commit_callbacks)
    assert check.decision == RealIdDecision.NOT_VERIFIED
    assert check.distance is not None and check.distance > VERIFY
    assert check.portrait is None
    enrolled.refresh_from_db()
    assert enrolled.real_name_verified_at is None
    assert enrolled.id_number_hash is None


@requires_faces
@pytest.mark.django_db
def test_an_unusable_id_portrait_is_recorded_with_its_reason(
    enrolled: Identity, django_capture_on_commit_callbacks: object
) -> None:
    check = submit(enrolled, face_bytes(TWO_PEOPLE), django_capture_on_commit_callbacks)
    assert check.decision == RealIdDecision.REFUSED
    assert check.refusal_code == "multiple_faces"
    assert check.distance is None


@requires_faces
@pytest.mark.django_db
def test_verification_needs_an_enrolled_face_and_a_valid_free_number(
    consenting_recipient: Identity, stranger: Identity, enroll: Enroll
) -> None:
    with pytest.raises(ApplicationError) as caught:
        services.real_id_check_submit(
            identity=consenting_recipient, id_number=VALID, portrait=face_bytes(OBAMA2)
        )
    assert caught.value.code == "no_enrolled_face"
    with pytest.raises(InvalidIdNumber):
        services.real_id_check_submit(
            identity=consenting_recipient, id_number="123", portrait=face_bytes(OBAMA2)
        )
    Identity.objects.filter(pk=stranger.pk).update(id_number_hash=id_number_hash(VALID))
    enroll(consenting_recipient, face_bytes(OBAMA))
    with pytest.raises(ApplicationError) as taken:
        services.real_id_check_submit(
            identity=consenting_recipient, id_number=VALID, portrait=face_bytes(OBAMA2)
        )
    assert taken.value.code == "id_number_taken"
    assert not RealIdCheck.objects.exists()
