"""Chinese resident identity numbers (GB 11643-1999): 17 digits and an ISO 7064 MOD 11-2
check character. Validated, then kept only as a keyed hash."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django.utils.translation import gettext

from core.errors import ApplicationError
from identity.crypto import keyed_hash

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


class InvalidIdNumber(ApplicationError):
    code = "invalid_id_number"


def id_number_check_character(first17: str) -> str:
    total = sum(int(digit) * weight for digit, weight in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def id_number_validate(value: str) -> str:
    """The number in canonical form (upper-case X), or `InvalidIdNumber` saying what is wrong."""
    number = "".join(value.split()).upper()
    if len(number) != 18:
        raise InvalidIdNumber(
            gettext("An ID number has 18 characters."), details={"reason": "length"}
        )
    if not number[:17].isdigit() or not (number[17].isdigit() or number[17] == "X"):
        raise InvalidIdNumber(
            gettext("An ID number has 17 digits followed by a digit or X."),
            details={"reason": "characters"},
        )
    if number[0] == "0":
        raise InvalidIdNumber(
            gettext("The region code is not valid."), details={"reason": "region"}
        )
    try:
        born = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        born = None
    if born is None or born.year < 1900 or born > timezone.localdate():
        raise InvalidIdNumber(
            gettext("The birth date in the ID number is not valid."),
            details={"reason": "birth_date"},
        )
    if id_number_check_character(number[:17]) != number[17]:
        raise InvalidIdNumber(
            gettext("The ID number's check character does not match: check for a typo."),
            details={"reason": "check_digit"},
        )
    return number


def id_number_hash(number: str) -> str:
    return keyed_hash(purpose="resident-id", value=id_number_validate(number))
