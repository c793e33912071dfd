"""The carrier REST API: a carrier sees and changes only its own parcels."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count, Q
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cabinets.models import Cabinet, CabinetState, CompartmentSize
from cabinets.selectors import compartments_free
from core.actors import Actor, ActorKind
from core.errors import NotFound
from courier.authentication import CarrierApiKeyAuthentication, CarrierClient
from courier.models import Carrier, Parcel, ParcelDirection, ParcelStatus
from courier.selectors import collection_list, parcel_changes, parcel_events, parcel_for_carrier
from courier.services.parcels import parcel_announce, parcel_cancel
from identity.models import Identity
from identity.phones import phone_normalize


class IsCarrier(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, CarrierClient)


class CarrierApi(APIView):
    authentication_classes = [CarrierApiKeyAuthentication]
    permission_classes = [IsCarrier]

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
        parcel = parcel_for_carrier(carrier=self.carrier, tracking_number=tracking_number)
        if parcel is None:
            # Another carrier's parcel is indistinguishable from a missing one.
            raise NotFound(f"No parcel {tracking_number} for this carrier.")
        return parcel


class PersonSerializer(serializers.Serializer):
    phone = serializers.CharField(
        max_length=20, help_text="E.164, or a national number (then +86 is assumed)"
    )
    name = serializers.CharField(max_length=120)
    email = serializers.EmailField(required=False, allow_blank=True)

    def validate_phone(self, value: str) -> str:
        try:
            return phone_normalize(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages[0]) from exc


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


class ParcelDetailSerializer(ParcelOutputSerializer):
    events = serializers.SerializerMethodField()

    def get_events(self, parcel: Parcel) -> list[dict[str, Any]]:
        return EventSerializer(parcel_events(parcel=parcel), many=True).data  # type: ignore[return-value]


class ParcelListApi(CarrierApi):
    class InputSerializer(serializers.Serializer):
        tracking_number = serializers.RegexField(r"^[A-Za-z0-9-]{4,40}$")
        recipient = PersonSerializer()
        sender = PersonSerializer(required=False)
        size = serializers.ChoiceField(choices=CompartmentSize.choices)
        cabinet = serializers.CharField(max_length=32, help_text="Serial of the chosen cabinet.")
        direction = serializers.ChoiceField(
            choices=ParcelDirection.choices, default=ParcelDirection.DELIVERY
        )

    @extend_schema(
        summary="List this carrier's parcels",
        parameters=[OpenApiParameter("status", str, enum=ParcelStatus.values)],
        responses=ParcelOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        parcels = (
            Parcel.objects.filter(carrier=self.carrier)
            .select_related("cabinet", "compartment")
            .order_by("-created_at", "-id")
        )
        status = request.query_params.get("status")
        if status:
            parcels = parcels.filter(status=status)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(parcels, request, view=self)
        return paginator.get_paginated_response(ParcelOutputSerializer(page, many=True).data)

    @extend_schema(
        summary="Announce a parcel",
        request=InputSerializer,
        responses={201: ParcelOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        cabinet = Cabinet.objects.filter(serial=values["cabinet"]).first()
        if cabinet is None or cabinet.state != CabinetState.ACTIVE:
            raise NotFound(f"No active cabinet {values['cabinet']}.", code="unknown_cabinet")
        recipient = _person(values["recipient"])
        sender = _person(values["sender"]) if values.get("sender") else None
        parcel = parcel_announce(
            carrier=self.carrier,
            tracking_number=values["tracking_number"],
            recipient=recipient,
            sender=sender,
            size=values["size"],
            cabinet=cabinet,
            direction=values["direction"],
            actor=self.actor,
        )
        return Response(ParcelOutputSerializer(parcel).data, status=201)


def _person(values: dict[str, Any]) -> Identity:
    person, _ = Identity.objects.get_or_create(
        phone=values["phone"], defaults={"name": values["name"], "email": values.get("email", "")}
    )
    return person


class ParcelDetailApi(CarrierApi):
    @extend_schema(summary="A parcel's status and history", responses=ParcelDetailSerializer)
    def get(self, request: Request, tracking_number: str) -> Response:
        return Response(ParcelDetailSerializer(self.own_parcel(tracking_number)).data)


class ParcelCancelApi(CarrierApi):
    @extend_schema(
        summary="Cancel a parcel before it is deposited",
        request=None,
        responses=ParcelOutputSerializer,
    )
    def post(self, request: Request, tracking_number: str) -> Response:
        parcel = parcel_cancel(
            parcel=self.own_parcel(tracking_number), actor=self.actor, reason="cancelled by carrier"
        )
        return Response(ParcelOutputSerializer(parcel).data)


class ChangeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    tracking_number = serializers.CharField(source="parcel.tracking_number")
    from_status = serializers.CharField()
    to_status = serializers.CharField()
    at = serializers.DateTimeField()
    reason = serializers.CharField()


class ChangesApi(CarrierApi):
    @extend_schema(
        summary="Status changes feed",
        description=(
            "Every status change of this carrier's parcels, oldest first. Poll with "
            "`after` set to the last `next_cursor`; an empty `results` means up to date."
        ),
        parameters=[
            OpenApiParameter("after", int, description="Cursor: last change id seen (0 at start)."),
            OpenApiParameter("limit", int, description="At most 500."),
        ],
        responses=inline_serializer(
            "ChangesPage",
            {"results": ChangeSerializer(many=True), "next_cursor": serializers.IntegerField()},
        ),
    )
    def get(self, request: Request) -> Response:
        params = self.Params(data=request.query_params)
        params.is_valid(raise_exception=True)
        after = params.validated_data["after"]
        changes = parcel_changes(
            carrier=self.carrier, after=after, limit=params.validated_data["limit"]
        )
        return Response(
            {
                "results": ChangeSerializer(changes, many=True).data,
                "next_cursor": changes[-1].pk if changes else after,
            }
        )

    class Params(serializers.Serializer):
        after = serializers.IntegerField(min_value=0, default=0)
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
    @extend_schema(
        summary="Active cabinets with free compartments by size",
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
        city = request.query_params.get("city")
        if city:
            cabinets = cabinets.filter(city=city)
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
