"""Who a staff user is in the admin, and whether they passed the second factor.

Three audiences, decided once per request:
- platform staff: superusers and members of the `ADMIN_PLATFORM_STAFF_GROUP` group; they see
  every row their model permissions allow;
- carrier staff: a `courier.CarrierStaff` row ties the user to one carrier; they see only rows
  reachable from that carrier, and only look;
- anyone else (a staff flag and nothing more): nothing.

A carrier tie wins over the group: a carrier's employee never becomes platform staff by being
added to a group. Superusers are platform staff whatever else they are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.http import HttpRequest


@dataclass(frozen=True)
class StaffAudience:
    platform: bool = False
    carrier_id: int | None = None

    @property
    def sees_nothing(self) -> bool:
        return not self.platform and self.carrier_id is None


NOBODY = StaffAudience()


def staff_audience_of(user: Any) -> StaffAudience:
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return NOBODY
    if user.is_superuser:
        return StaffAudience(platform=True)
    try:
        return StaffAudience(carrier_id=user.carrier_staff.carrier_id)
    except ObjectDoesNotExist:
        pass
    if user.groups.filter(name=settings.ADMIN_PLATFORM_STAFF_GROUP).exists():
        return StaffAudience(platform=True)
    return NOBODY


def staff_audience(request: HttpRequest) -> StaffAudience:
    """The request user's audience; at most two queries per request."""
    cached = getattr(request, "_staff_audience", None)
    if cached is None:
        cached = staff_audience_of(request.user)
        request._staff_audience = cached  # type: ignore[attr-defined]
    return cached


def staff_carrier_id(request: HttpRequest) -> int | None:
    """The carrier a user works for; None for platform staff and for nobody."""
    return staff_audience(request).carrier_id


def staff_is_verified(request: HttpRequest) -> bool:
    """True when this session logged in with a TOTP code (django_otp's middleware)."""
    is_verified = getattr(request.user, "is_verified", None)
    return bool(is_verified and is_verified())
