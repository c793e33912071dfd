"""Phone numbers as recipients type them: a national number is a mainland Chinese one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from identity import notify, services
from identity.models import Identity
from identity.phones import phone_normalize
from tests.factories import IdentityFactory


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("13800000003", "+8613800000003"),
        ("138 0000 0003", "+8613800000003"),
        ("138-0000-0003", "+8613800000003"),
        ("+8613800000003", "+8613800000003"),
        ("008613800000003", "+8613800000003"),
        ("021 6432 0000", "+862164320000"),
        ("+44 20 7946 0000", "+442079460000"),
    ],
)
def test_a_number_without_a_country_code_is_taken_to_be_chinese(typed: str, stored: str) -> None:
    assert phone_normalize(typed) == stored


@pytest.mark.parametrize("typed", ["", "12", "12345", "hello", "+0123456789", "138000000031234567"])
def test_what_is_not_a_phone_number_is_refused(typed: str) -> None:
    with pytest.raises(ValidationError):
        phone_normalize(typed)


@pytest.mark.django_db
def test_the_login_accepts_a_national_number_and_the_code_it_sends_logs_in(
    sms_outbox: list[notify.SentSms], django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    person = IdentityFactory(phone="+8613800000003")

    with django_capture_on_commit_callbacks(execute=True):
        services.login_code_send(phone="13800000003", client_address="203.0.113.7")

    (sms,) = sms_outbox
    assert sms.phone == "+8613800000003"
    code = sms.text[:6]
    assert (
        services.login_code_verify(phone="138 0000 0003", code=code, client_address="203.0.113.7")
        == person
    )
    assert Identity.objects.count() == 1


@pytest.mark.django_db
def test_the_login_text_does_not_read_like_a_pickup_code(
    sms_outbox: list[notify.SentSms], django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    IdentityFactory(phone="+8613800000005")
    with django_capture_on_commit_callbacks(execute=True):
        services.login_code_send(phone="+8613800000005", client_address="203.0.113.7")
    (sms,) = sms_outbox
    assert "login code" in sms.text and "not a pickup code" in sms.text
    assert "locker code" not in sms.text
