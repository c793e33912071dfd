"""Phone numbers as people type them, made into the one stored form (E.164, "+8613800138000").

Recipients in mainland China type their national number ("138 0013 8000"); without a
country code the number is taken to be in PHONE_DEFAULT_COUNTRY_CODE (86)."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

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


# What the APIs accept, exactly as their schema states it: E.164, or a national number
# (an optional trunk 0, then 8-13 digits, not starting with 0). Every string it matches
# normalises; separators are for the pages, not the API.
PHONE_INPUT_PATTERN = r"^(\+[1-9][0-9]{6,14}|0?[1-9][0-9]{7,12})$"


@extend_schema_field({"type": "string", "pattern": PHONE_INPUT_PATTERN})
class PhoneField(serializers.CharField):
    """A phone number as an API client sends it, stored form out (E.164, +86 assumed)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 20)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        try:
            return phone_normalize(value)
        except ValidationError as exc:
            raise serializers.ValidationError(exc.messages[0]) from exc

    def run_validation(self, data: Any = empty) -> Any:
        # The pattern is checked on what the client sent, before normalising.
        if isinstance(data, str) and data and not re.match(PHONE_INPUT_PATTERN, data):
            raise serializers.ValidationError(str(e164_validator.message))
        return super().run_validation(data)
