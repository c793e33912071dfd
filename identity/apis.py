"""REST API for the person enrolling: the same flows as the page. Output holds statuses,
codes and reasons only; never a photo, a template or an ID number."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.translation import gettext
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.actors import Actor, ActorKind
from core.ratelimit import client_address
from identity import selectors, services
from identity.authentication import EnrollmentTokenAuthentication, IsEnrollingPerson
from identity.face_pipeline import UPLOAD_REFUSALS
from identity.models import Identity, RealIdCheck
from identity.phones import PhoneField


@extend_schema_field({"type": "boolean", "enum": [True]})
class ConsentField(serializers.BooleanField):
    """Consent is given explicitly: only `true` is accepted."""


# The forms the schema states. The services refuse anything else with their own code
# (invalid_code, invalid_id_number), in the one error shape.
@extend_schema_field({"type": "string", "pattern": r"^[0-9]{6}$"})
class LoginCodeField(serializers.CharField):
    """The six digits of a texted login code."""


@extend_schema_field({"type": "string", "pattern": r"^[1-9][0-9]{16}[0-9Xx]$"})
class IdNumberField(serializers.CharField):
    """A resident ID number: 17 digits, then a digit or X."""


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()


class PhotoSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["pending", "accepted", "refused"])
    refusal_code = serializers.CharField(help_text="Stable code, e.g. too_dark, no_face.")
    message = serializers.CharField(help_text="What to do about it, for the person.")
    created_at = serializers.DateTimeField()


class OverviewSerializer(serializers.Serializer):
    name = serializers.CharField()
    consent = serializers.BooleanField()
    policy_version = serializers.CharField()
    status = serializers.ChoiceField(
        choices=["none", "pending", "processing", "enrolled", "failed"]
    )
    templates = serializers.IntegerField(help_text="How many face templates are stored.")
    pending = serializers.IntegerField(help_text="Photos still waiting for a worker.")
    real_name_verified = serializers.BooleanField()
    photos = PhotoSerializer(many=True)
    photos_wanted = serializers.IntegerField(help_text="How many selfies to send.")
    photos_why = serializers.CharField(help_text="Why that many, for the person.")


class RealIdCheckSerializer(serializers.ModelSerializer):
    class Meta:
        model = RealIdCheck
        fields = [
            "id",
            "decision",
            "distance",
            "threshold",
            "refusal_code",
            "refusal_message",
            "created_at",
            "decided_at",
        ]


ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid input (code says which)."),
    403: OpenApiResponse(ErrorSerializer, description="Missing or expired token, or no consent."),
}
UPLOAD_ERRORS = {
    **ERRORS,
    400: OpenApiResponse(
        ErrorSerializer,
        description=(
            "Invalid input (code says which); a file that is not a photo read here: "
            + ", ".join(f"`{code}`" for code in UPLOAD_REFUSALS)
            + "."
        ),
    ),
}
THROTTLED = {
    429: OpenApiResponse(
        ErrorSerializer,
        description="Too many attempts from this address, for this number or overall.",
    ),
}


def _remember_language(request: Request, identity: Identity) -> None:
    # LocaleMiddleware chose it from the page's language cookie or Accept-Language.
    services.identity_language_remember(
        identity=identity, language=getattr(request, "LANGUAGE_CODE", "")
    )


def _actor(identity: Identity) -> Actor:
    return Actor(kind=ActorKind.RECIPIENT, label=f"identity {identity.pk} (API)")


class PersonApi(APIView):
    authentication_classes = [EnrollmentTokenAuthentication]
    permission_classes = [IsEnrollingPerson]

    def person(self, request: Request) -> Identity:
        # IsEnrollingPerson has checked that request.auth is an Identity.
        assert isinstance(request.auth, Identity)
        return request.auth

    def overview(self, request: Request, code: int = status.HTTP_200_OK) -> Response:
        overview = selectors.enrollment_overview(identity=self.person(request))
        return Response(overview.as_dict(), status=code)


class LoginCodeSendApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    class LoginCodeSendInputSerializer(serializers.Serializer):
        phone = PhoneField(max_length=32)

    @extend_schema(
        request=LoginCodeSendInputSerializer,
        responses={
            202: inline_serializer("LoginCodeSent", {"sent": serializers.BooleanField()}),
            **ERRORS,
            **THROTTLED,
        },
        summary="Text a login code to a recipient's phone",
        description="Answers the same for unknown numbers, throttles included.",
    )
    def post(self, request: Request) -> Response:
        data = self.LoginCodeSendInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.login_code_send(
            phone=data.validated_data["phone"], client_address=client_address(request.META)
        )
        return Response({"sent": True}, status=status.HTTP_202_ACCEPTED)


class LoginCodeVerifyApi(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    class LoginCodeVerifyInputSerializer(serializers.Serializer):
        phone = PhoneField(max_length=32)
        code = LoginCodeField(max_length=6)

    @extend_schema(
        request=LoginCodeVerifyInputSerializer,
        responses={
            200: inline_serializer(
                "EnrollmentToken",
                {"token": serializers.CharField(), "expires_in": serializers.IntegerField()},
            ),
            **ERRORS,
            **THROTTLED,
        },
        summary="Exchange the texted code for an enrollment token",
    )
    def post(self, request: Request) -> Response:
        data = self.LoginCodeVerifyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        identity = services.login_code_verify(
            **data.validated_data, client_address=client_address(request.META)
        )
        _remember_language(request, identity)
        response = Response(
            {
                "token": services.api_token_issue(identity=identity),
                "expires_in": settings.ENROLLMENT_API_TOKEN_TTL_S,
            }
        )
        # A credential: no cache, shared or private, may keep it.
        response["Cache-Control"] = "no-store"
        return response


class LogoutApi(PersonApi):
    @extend_schema(
        request=None,
        responses={204: None, **ERRORS},
        summary="Log out: revoke this token, every other one and every outstanding link",
    )
    def post(self, request: Request) -> Response:
        services.login_revoke(identity=self.person(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class EnrollmentDetailApi(PersonApi):
    @extend_schema(responses={200: OverviewSerializer, **ERRORS}, summary="Consent and status")
    def get(self, request: Request) -> Response:
        return self.overview(request)


class ConsentApi(PersonApi):
    class ConsentInputSerializer(serializers.Serializer):
        agree = ConsentField(help_text="Must be true: explicit consent.")

    @extend_schema(
        request=ConsentInputSerializer,
        responses={200: OverviewSerializer, **ERRORS},
        summary="Give consent to biometric processing",
    )
    def post(self, request: Request) -> Response:
        data = self.ConsentInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if not data.validated_data["agree"]:
            raise serializers.ValidationError(
                {"agree": [gettext("Consent must be given explicitly.")]}
            )
        services.consent_give(identity=self.person(request), source="api")
        _remember_language(request, self.person(request))
        return self.overview(request)

    @extend_schema(
        responses={200: OverviewSerializer, **ERRORS},
        summary="Withdraw consent; deletes every face template and photo at once",
    )
    def delete(self, request: Request) -> Response:
        identity = self.person(request)
        services.consent_withdraw(identity=identity, actor=_actor(identity))
        return self.overview(request)


class FaceDataDeleteApi(PersonApi):
    @extend_schema(
        request=None,
        responses={200: OverviewSerializer, **ERRORS},
        summary="Delete face templates and photos; consent stays",
    )
    def delete(self, request: Request) -> Response:
        identity = self.person(request)
        services.face_data_delete(
            identity=identity, actor=_actor(identity), reason="deleted by the person (API)"
        )
        return self.overview(request)


class PhotoSubmitApi(PersonApi):
    parser_classes = [MultiPartParser, FormParser]

    class PhotoSubmitInputSerializer(serializers.Serializer):
        photo = serializers.FileField(help_text="A selfie: JPEG, PNG or WEBP.")

    @extend_schema(
        request={"multipart/form-data": PhotoSubmitInputSerializer},
        responses={202: PhotoSerializer, **UPLOAD_ERRORS},
        summary="Send a selfie; a worker processes it (poll the photo or the status)",
    )
    def post(self, request: Request) -> Response:
        data = self.PhotoSubmitInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        identity = self.person(request)
        _remember_language(request, identity)
        photo = services.enrollment_photo_submit(
            identity=identity,
            data=services.photo_read(upload=data.validated_data["photo"]),
            actor=_actor(identity),
        )
        return Response(selectors.photo_view(photo).__dict__, status=status.HTTP_202_ACCEPTED)


class PhotoDetailApi(PersonApi):
    @extend_schema(responses={200: PhotoSerializer, **ERRORS}, summary="One photo's outcome")
    def get(self, request: Request, photo_id: int) -> Response:
        photo = selectors.enrollment_photo_get(identity=self.person(request), photo_id=photo_id)
        return Response(selectors.photo_view(photo).__dict__)


class RealIdCheckSubmitApi(PersonApi):
    parser_classes = [MultiPartParser, FormParser]

    class RealIdCheckSubmitInputSerializer(serializers.Serializer):
        id_number = IdNumberField(max_length=32, help_text="18-character resident ID.")
        portrait = serializers.FileField(help_text="Photo of the ID document's portrait.")

    @extend_schema(
        request={"multipart/form-data": RealIdCheckSubmitInputSerializer},
        responses={202: RealIdCheckSerializer, **UPLOAD_ERRORS},
        summary="Real-name verification: ID number and ID portrait, matched 1:1 by a worker",
    )
    def post(self, request: Request) -> Response:
        data = self.RealIdCheckSubmitInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        check = services.real_id_check_submit(
            identity=self.person(request),
            id_number=data.validated_data["id_number"],
            portrait=services.photo_read(upload=data.validated_data["portrait"]),
        )
        return Response(RealIdCheckSerializer(check).data, status=status.HTTP_202_ACCEPTED)


class RealIdCheckDetailApi(PersonApi):
    @extend_schema(responses={200: RealIdCheckSerializer, **ERRORS}, summary="A check's decision")
    def get(self, request: Request, check_id: int) -> Response:
        check = selectors.real_id_check_get(identity=self.person(request), check_id=check_id)
        return Response(RealIdCheckSerializer(check).data)
