"""DRF authentication for the person enrolling: `Authorization: Enrollment <token>`, the
token a phone login returned (enrollment links are for the page, and single use). Carrier
and staff credentials are deliberately not accepted on these endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from core.errors import ApplicationError
from identity.models import Identity
from identity.selectors import identity_from_api_token

KEYWORD = "Enrollment"


@dataclass(frozen=True)
class EnrollingPerson:
    """`request.user` on the enrollment API; `request.auth` is the Identity."""

    identity: Identity
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_staff: bool = False

    def __str__(self) -> str:
        return f"identity {self.identity.pk}"


class EnrollmentTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[EnrollingPerson, Identity] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(gettext("Send 'Enrollment <token>'."))
        try:
            identity = identity_from_api_token(token=parts[1].decode("ascii"))
        except (ApplicationError, UnicodeDecodeError) as exc:
            raise exceptions.AuthenticationFailed(
                getattr(exc, "message", gettext("Invalid token."))
            ) from exc
        return EnrollingPerson(identity=identity), identity

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


class IsEnrollingPerson(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, Identity)


class EnrollmentTokenScheme(OpenApiAuthenticationExtension):
    target_class = EnrollmentTokenAuthentication
    name = "enrollmentToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                "`Enrollment <token>`: the token returned by POST /api/v1/identity/login/verify/ "
                "(revoked by POST /api/v1/identity/logout/ and by withdrawing consent)."
            ),
        }
