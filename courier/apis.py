"""The carrier REST API: a carrier sees and changes only its own parcels."""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Count, Q
from django.utils.translation import gettext
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cabinets.models import Cabinet, CabinetState, CompartmentSize, serial_validator
from cabinets.selectors import compartments_free
from core.actors import Actor, ActorKind
from core.errors import Conflict, NotFound
from core.pagination import BoundedLimitOffsetPagination, paginated, paginated_parameters
from core.parsers import BoundedJSONParser
from courier.authentication import CarrierApiKeyAuthentication, CarrierClient
from courier.cursors import CHANGE_CURSOR_PATTERN, change_cursor_decode, change_cursor_encode
from courier.models import Carrier, Parcel, ParcelDirection, ParcelEvent, ParcelStatus
from courier.selectors import collection_list, parcel_changes, parcel_events, parcel_for_carrier
from courier.services.parcels import (
    Contact,
    DuplicateTrackingNumber,
    parcel_announce,
    parcel_cancel,
)
from identity.phones import PhoneField
from identity.services import identity_for_phone

STATUS_VALUES = ", ".join(ParcelStatus.values)
TRACKING_NUMBER_PATTERN = r"^[A-Za-z0-9-]{4,40}$"
TRACKING_NUMBER_PARAMETER = OpenApiParameter(
    "tracking_number", str, OpenApiParameter.PATH, pattern=TRACKING_NUMBER_PATTERN
)


class IsCarrier(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, CarrierClient)


class CarrierApi(APIView):
    authentication_classes = [CarrierApiKeyAuthentication]
    permission_classes = [IsCarrier]
    # JSON only: nested fields (recipient, sender) have no form encoding.
    parser_classes = [BoundedJSONParser]

    @property
    def carrier(self) -> Carrier:
        user = self.request.user
        assert isinstance(user, CarrierClient)
        return user.carrier

    @property
    def actor(self) -> Actor:
        user = self.request.user
        assert isinstance(user, CarrierClient)
        return Actor(kind=ActorKind.CARRIER, label=f"{user.carrier.code}/{user.key_prefix}")

    def own_parcel(self, tracking_number: str) -> Parcel:
        # A number that announcing refuses names no parcel, and is not queried: PostgreSQL
        # refuses a NUL character in a query (a 500 where a 404 belongs).
        if re.fullmatch(TRACKING_NUMBER_PATTERN, tracking_number):
            parcel = parcel_for_carrier(carrier=self.carrier, tracking_number=tracking_number)
        else:
            parcel = None
        if parcel is None:
            # Another carrier's parcel is indistinguishable from a missing one.
            raise NotFound(
                gettext("No parcel %(number)s for this carrier.") % {"number": tracking_number}
            )
        return parcel


class PersonSerializer(serializers.Serializer):
    """A contact as this carrier knows it: stored on this parcel only, and used only for
    this parcel's notifications."""

    phone = PhoneField(help_text="E.164, or a national number (then +86 is assumed)")
    name = serializers.CharField(max_length=120)
    email = serializers.EmailField(
        max_length=254,
        required=False,
        allow_blank=True,
        help_text="Notifications of this parcel go here too (never another carrier's).",
    )


class EventSerializer(serializers.Serializer):
    from_status = serializers.CharField()
    to_status = serializers.CharField()
    at = serializers.DateTimeField()
    reason = serializers.CharField()
    actor = serializers.CharField(source="actor_kind")


class ParcelOutputSerializer(serializers.Serializer):
    tracking_number = serializers.CharField()
    status = serializers.CharField()
    direction = serializers.CharField()
    size = serializers.CharField()
    cabinet = serializers.CharField(source="cabinet.serial")
    compartment = serializers.CharField(source="compartment.label", allow_null=True, default=None)
    pickup_deadline = serializers.DateTimeField(allow_null=True)
    deposited_at = serializers.DateTimeField(allow_null=True)
    picked_up_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class DuplicateParcelErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="duplicate_tracking_number")
    message = serializers.CharField()
    details = inline_serializer("DuplicateParcelDetails", {"parcel": ParcelOutputSerializer()})


class ParcelDetailSerializer(ParcelOutputSerializer):
    events = serializers.SerializerMethodField()

    def get_events(self, parcel: Parcel) -> list[dict[str, Any]]:
        return EventSerializer(parcel_events(parcel=parcel), many=True).data  # type: ignore[return-value]


class ParcelListApi(CarrierApi):
    class ParcelAnnounceInputSerializer(serializers.Serializer):
        tracking_number = serializers.RegexField(TRACKING_NUMBER_PATTERN)
        recipient = PersonSerializer()
        sender = PersonSerializer(required=False)
        size = serializers.ChoiceField(choices=CompartmentSize.choices)
        cabinet = serializers.CharField(
            max_length=32, validators=[serial_validator], help_text="Serial of the chosen cabinet."
        )
        direction = serializers.ChoiceField(
            choices=ParcelDirection.choices, default=ParcelDirection.DELIVERY
        )

    @extend_schema(
        summary="List this carrier's parcels",
        operation_id="v1_carrier_parcels_list",
        parameters=[
            OpenApiParameter("status", str, enum=ParcelStatus.values),
            *paginated_parameters(),
        ],
        responses=paginated(ParcelOutputSerializer, "PaginatedParcelList"),
    )
    def get(self, request: Request) -> Response:
        parcels = (
            Parcel.objects.filter(carrier=self.carrier)
            .select_related("cabinet", "compartment")
            .order_by("-created_at", "-id")
        )
        status = request.query_params.get("status")
        # `?status=` (empty) is refused too, like every value the schema does not list.
        if status is not None:
            if status not in ParcelStatus.values:
                raise ValidationError(
                    {"status": [gettext("One of: %(values)s.") % {"values": STATUS_VALUES}]}
                )
            parcels = parcels.filter(status=status)
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(parcels, request, view=self)
        return paginator.get_paginated_response(ParcelOutputSerializer(page, many=True).data)

    @extend_schema(
        summary="Announce a parcel",
        description=(
            "A tracking number this carrier already announced answers 409 "
            "`duplicate_tracking_number` with that parcel in `details.parcel`: a carrier "
            "retrying after a time-out learns that the first call went through."
        ),
        request=ParcelAnnounceInputSerializer,
        responses={201: ParcelOutputSerializer, 409: DuplicateParcelErrorSerializer},
    )
    def post(self, request: Request) -> Response:
        data = self.ParcelAnnounceInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        cabinet = Cabinet.objects.filter(serial=values["cabinet"]).first()
        if cabinet is None or cabinet.state != CabinetState.ACTIVE:
            raise NotFound(
                gettext("No active cabinet %(serial)s.") % {"serial": values["cabinet"]},
                code="unknown_cabinet",
            )
        recipient = _contact(values["recipient"])
        sender = _contact(values["sender"]) if values.get("sender") else None
        try:
            parcel = parcel_announce(
                carrier=self.carrier,
                tracking_number=values["tracking_number"],
                recipient=identity_for_phone(phone=recipient.phone),
                recipient_contact=recipient,
                sender=identity_for_phone(phone=sender.phone) if sender else None,
                sender_contact=sender,
                size=values["size"],
                cabinet=cabinet,
                direction=values["direction"],
                actor=self.actor,
            )
        except DuplicateTrackingNumber as exc:
            details = {"parcel": ParcelOutputSerializer(exc.parcel).data}
            raise Conflict(exc.message, code=exc.code, details=details) from exc
        return Response(ParcelOutputSerializer(parcel).data, status=201)


def _contact(values: dict[str, Any]) -> Contact:
    # The carrier's contact data stays with its parcel; the shared person record is only
    # looked up (or created bare) by phone number, see identity_for_phone.
    return Contact(phone=values["phone"], name=values["name"], email=values.get("email", ""))


class ParcelDetailApi(CarrierApi):
    @extend_schema(
        summary="A parcel's status and history",
        parameters=[TRACKING_NUMBER_PARAMETER],
        responses=ParcelDetailSerializer,
    )
    def get(self, request: Request, tracking_number: str) -> Response:
        return Response(ParcelDetailSerializer(self.own_parcel(tracking_number)).data)


class ParcelCancelApi(CarrierApi):
    @extend_schema(
        summary="Cancel a parcel before it is deposited",
        parameters=[TRACKING_NUMBER_PARAMETER],
        request=None,
        responses=ParcelOutputSerializer,
    )
    def post(self, request: Request, tracking_number: str) -> Response:
        parcel = parcel_cancel(
            parcel=self.own_parcel(tracking_number), actor=self.actor, reason="cancelled by carrier"
        )
        return Response(ParcelOutputSerializer(parcel).data)


class ChangeSerializer(serializers.Serializer):
    id = serializers.SerializerMethodField(
        help_text="Opaque; pass it as `after` to read the changes after this one."
    )
    tracking_number = serializers.CharField(source="parcel.tracking_number")
    from_status = serializers.CharField()
    to_status = serializers.CharField()
    at = serializers.DateTimeField()
    reason = serializers.CharField()

    def get_id(self, event: ParcelEvent) -> str:
        return change_cursor_encode(carrier_id=self.context["carrier_id"], event_id=event.pk)


class ChangesApi(CarrierApi):
    @extend_schema(
        summary="Status changes feed",
        description=(
            "Every status change of this carrier's parcels, oldest first. Poll with "
            "`after` set to the last `next_cursor`; an empty `results` means up to date. "
            "Cursors are opaque and belong to one carrier."
        ),
        parameters=[
            OpenApiParameter(
                "after",
                str,
                pattern=CHANGE_CURSOR_PATTERN,
                description="Cursor: the last `next_cursor` seen.",
            ),
            OpenApiParameter(
                "limit", {"type": "integer", "minimum": 1, "maximum": 500}, description="1 to 500."
            ),
        ],
        responses=inline_serializer(
            "ChangesPage",
            {
                "results": ChangeSerializer(many=True),
                "next_cursor": serializers.CharField(
                    help_text="Pass as `after`; empty before the first change."
                ),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        # A plain dict: from a QueryDict, DRF reads `?limit=` as "not given" (the default).
        params = self.Params(data=request.query_params.dict())
        params.is_valid(raise_exception=True)
        carrier_id = self.carrier.pk
        after = change_cursor_decode(carrier_id=carrier_id, cursor=params.validated_data["after"])
        changes = parcel_changes(
            carrier=self.carrier, after=after, limit=params.validated_data["limit"]
        )
        results = ChangeSerializer(changes, many=True, context={"carrier_id": carrier_id}).data
        return Response(
            {
                "results": results,
                "next_cursor": results[-1]["id"] if results else params.validated_data["after"],
            }
        )

    class Params(serializers.Serializer):
        # Not trimmed: a cursor is the feed's string exactly, or nothing.
        after = serializers.CharField(
            max_length=64, required=False, default="", allow_blank=True, trim_whitespace=False
        )
        limit = serializers.IntegerField(min_value=1, max_value=500, default=100)


class CollectionsApi(CarrierApi):
    @extend_schema(
        summary="What couriers must collect",
        description="Expired parcels to return and drop-offs to collect, by cabinet.",
        responses=inline_serializer(
            "Collections",
            {
                "cabinets": inline_serializer(
                    "CabinetCollection",
                    {
                        "cabinet": serializers.CharField(),
                        "parcels": ParcelOutputSerializer(many=True),
                    },
                    many=True,
                )
            },
        ),
    )
    def get(self, request: Request) -> Response:
        grouped = collection_list(carrier=self.carrier)
        return Response(
            {
                "cabinets": [
                    {
                        "cabinet": cabinet.serial,
                        "parcels": ParcelOutputSerializer(parcels, many=True).data,
                    }
                    for cabinet, parcels in grouped.items()
                ]
            }
        )


class CabinetListApi(CarrierApi):
    class Params(serializers.Serializer):
        city = serializers.CharField(
            max_length=80, required=False, help_text="Only cabinets in this city."
        )

    @extend_schema(
        summary="Active cabinets with free compartments by size",
        description="At most 500 cabinets, by serial.",
        parameters=[Params],
        responses=inline_serializer(
            "CabinetAvailability",
            {
                "serial": serializers.CharField(),
                "name": serializers.CharField(),
                "address": serializers.CharField(),
                "city": serializers.CharField(),
                "free": serializers.DictField(child=serializers.IntegerField()),
            },
            many=True,
        ),
    )
    def get(self, request: Request) -> Response:
        free_ids = compartments_free().values("pk")
        free = {
            size: Count(
                "compartments",
                filter=Q(compartments__in=free_ids, compartments__size=size),
            )
            for size in CompartmentSize.values
        }
        cabinets = (
            Cabinet.objects.filter(state=CabinetState.ACTIVE)
            .annotate(**{f"free_{size}": count for size, count in free.items()})
            .order_by("serial")
        )
        # A plain dict: from a QueryDict, DRF reads `?city=` as "not given".
        params = self.Params(data=request.query_params.dict())
        params.is_valid(raise_exception=True)
        if "city" in params.validated_data:
            cabinets = cabinets.filter(city=params.validated_data["city"])
        return Response(
            [
                {
                    "serial": c.serial,
                    "name": c.name,
                    "address": c.address,
                    "city": c.city,
                    "free": {size: getattr(c, f"free_{size}") for size in CompartmentSize.values},
                }
                for c in cabinets[:500]
            ]
        )
