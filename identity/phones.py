"""Phone numbers as people type them, made into the one stored form (E.164, "+8613800138000").

Recipients in mainland China type their national number ("138 0013 8000"); without a
country code the number is taken to be in PHONE_DEFAULT_COUNTRY_CODE (86)."""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy

from identity.models import phone_validator

# The model's rule, with the message people see (in their language).
e164_validator = RegexValidator(
    phone_validator.regex,
    gettext_lazy("Enter a phone number such as 13800138000, or +8613800138000 from abroad."),
)

_SEPARATORS = re.compile(r"[\s\-().]")
NATIONAL_MIN_DIGITS = 8


def phone_normalize(raw: str) -> str:
    """E.164 for `raw`, or ValidationError with the message people see."""
    phone = _SEPARATORS.sub("", raw or "")
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    elif phone and not phone.startswith("+"):
        # A national number; a leading trunk 0 (021 for Shanghai landlines) is dropped. Shorter
        # than 8 digits it is no subscriber number (a mainland mobile has 11).
        national = phone.removeprefix("0")
        if not (national.isdigit() and len(national) >= NATIONAL_MIN_DIGITS):
            raise ValidationError(e164_validator.message, code="invalid")
        phone = f"+{settings.PHONE_DEFAULT_COUNTRY_CODE}{national}"
    e164_validator(phone)
    return phone


def phone_normalize_or_none(raw: str) -> str | None:
    try:
        return phone_normalize(raw)
    except ValidationError:
        return None
