"""Parcel admin with two audiences: platform staff see every carrier; a carrier's staff
(a CarrierStaff row) see only their own carrier's records and nothing of the others, in lists,
filters, detail pages and permissions alike."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from core.actors import Actor
from core.admin import ReadOnlyEventAdmin
from core.errors import ApplicationError
from courier.authentication import carrier_api_key_issue
from courier.models import (
    AccessAttempt,
    Carrier,
    CarrierApiKey,
    CarrierStaff,
    Courier,
    Notification,
    Parcel,
    ParcelEvent,
)
from courier.services.parcels import parcel_cancel, parcel_extend
from courier.services.people import carrier_api_key_revoke, courier_pin_reset

_UNSET = object()


def staff_carrier_id(request: HttpRequest) -> int | None:
    """The carrier a user works for, or None for platform staff. One query per request."""
    cached = getattr(request, "_staff_carrier_id", _UNSET)
    if cached is _UNSET:
        user = request.user
        cached = (
            CarrierStaff.objects.filter(user_id=user.pk)
            .values_list("carrier_id", flat=True)
            .first()
            if user.is_authenticated and not user.is_superuser
            else None
        )
        request._staff_carrier_id = cached  # type: ignore[attr-defined]
    return cached  # type: ignore[return-value]


class CarrierScopedAdmin(admin.ModelAdmin):
    """Limits a carrier's staff to rows of their carrier (`carrier_path` leads to it). They
    may look, never add or delete: parcels change through the API and the cabinets."""

    carrier_path = "carrier"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs = super().get_queryset(request)
        carrier_id = staff_carrier_id(request)
        if carrier_id is not None:
            qs = qs.filter(**{f"{self.carrier_path}_id": carrier_id})
        return qs

    def _own(self, request: HttpRequest, obj: Any) -> bool:
        carrier_id = staff_carrier_id(request)
        if carrier_id is None or obj is None:
            return True
        *path, last = self.carrier_path.split("__")
        for part in path:
            obj = getattr(obj, part)
        return getattr(obj, f"{last}_id") == carrier_id

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) and self._own(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if staff_carrier_id(request) is not None:
            return False
        return super().has_change_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if staff_carrier_id(request) is not None:
            return False
        return super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if staff_carrier_id(request) is not None:
            return False
        return super().has_delete_permission(request, obj)

    def get_list_filter(self, request: HttpRequest) -> Any:
        # A carrier filter would list every carrier's name.
        filters = super().get_list_filter(request)
        if staff_carrier_id(request) is None:
            return filters
        return tuple(f for f in filters if f != self.carrier_path)


@admin.register(Carrier)
class CarrierAdmin(CarrierScopedAdmin):
    list_display = ("name", "code", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name", "code")
    actions = ["issue_api_key"]

    @admin.action(description=_("Issue an API key (shown once)"))
    def issue_api_key(self, request: HttpRequest, queryset: QuerySet[Carrier]) -> None:
        if staff_carrier_id(request) is not None:
            return
        for carrier in queryset:
            key = carrier_api_key_issue(carrier=carrier, name=f"admin:{request.user}")
            self.message_user(
                request,
                f"API key for {carrier.code}: {key} (copy it now: only a hash is kept)",
                messages.WARNING,
            )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs = admin.ModelAdmin.get_queryset(self, request)
        carrier_id = staff_carrier_id(request)
        return qs if carrier_id is None else qs.filter(pk=carrier_id)

    def _own(self, request: HttpRequest, obj: Any) -> bool:
        carrier_id = staff_carrier_id(request)
        return carrier_id is None or obj is None or obj.pk == carrier_id


@admin.register(CarrierStaff)
class CarrierStaffAdmin(admin.ModelAdmin):
    """Platform staff decide who works for which carrier."""

    list_display = ("user", "carrier", "created_at")
    list_filter = ("carrier",)
    search_fields = ("user__username", "carrier__code")
    list_select_related = ("user", "carrier")
    raw_id_fields = ("user",)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return staff_carrier_id(request) is None and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return staff_carrier_id(request) is None and super().has_view_permission(request, obj)


@admin.register(Courier)
class CourierAdmin(CarrierScopedAdmin):
    list_display = ("name", "carrier", "badge_number", "phone", "is_active")
    list_filter = ("is_active", "carrier")
    search_fields = ("name", "badge_number", "phone")
    list_select_related = ("carrier",)
    raw_id_fields = ("user",)
    exclude = ("pin_hash",)
    show_full_result_count = False
    actions = ["reset_pin"]

    @admin.action(description=_("Set a new cabinet PIN (shown once)"))
    def reset_pin(self, request: HttpRequest, queryset: QuerySet[Courier]) -> None:
        if staff_carrier_id(request) is not None:
            return
        for courier in queryset:
            pin = courier_pin_reset(courier=courier)
            self.message_user(
                request, f"New PIN for {courier.badge_number}: {pin}", messages.WARNING
            )


@admin.register(CarrierApiKey)
class CarrierApiKeyAdmin(CarrierScopedAdmin):
    """Keys are issued from the carrier list; here they are only listed and revoked."""

    list_display = ("prefix", "carrier", "name", "created_at", "revoked_at")
    list_filter = ("revoked_at",)
    list_select_related = ("carrier",)
    fields = ("carrier", "name", "prefix", "created_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description=_("Revoke the selected keys"))
    def revoke(self, request: HttpRequest, queryset: QuerySet[CarrierApiKey]) -> None:
        if staff_carrier_id(request) is not None:
            return
        for key in queryset:
            carrier_api_key_revoke(key=key)
        self.message_user(request, f"{queryset.count()} key(s) revoked.")


@admin.register(AccessAttempt)
class AccessAttemptAdmin(ReadOnlyEventAdmin):
    """Who tried to open a door at a cabinet, and the figures of the decision."""

    list_display = (
        "at",
        "cabinet",
        "method",
        "purpose",
        "success",
        "outcome",
        "distance",
        "margin",
    )
    list_filter = ("method", "success", "outcome")
    search_fields = ("=cabinet__serial",)
    list_select_related = ("cabinet",)
    raw_id_fields = ("identity", "courier", "parcels")
    show_full_result_count = False

    def has_module_permission(self, request: HttpRequest) -> bool:
        return staff_carrier_id(request) is None and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return staff_carrier_id(request) is None and super().has_view_permission(request, obj)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyEventAdmin, CarrierScopedAdmin):
    carrier_path = "parcel__carrier"
    list_display = ("created_at", "parcel", "kind", "channel", "sent_at", "error")
    list_filter = ("kind", "channel")
    search_fields = ("=parcel__tracking_number",)
    list_select_related = ("parcel__carrier",)
    show_full_result_count = False


class ParcelEventInline(admin.TabularInline):
    model = ParcelEvent
    extra = 0
    can_delete = False
    fields = ("at", "from_status", "to_status", "actor_kind", "actor_label", "reason")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Parcel)
class ParcelAdmin(CarrierScopedAdmin):
    list_display = (
        "tracking_number",
        "carrier",
        "status",
        "size",
        "cabinet",
        "compartment",
        "pickup_deadline",
        "created_at",
    )
    list_filter = ("status", "size", "carrier")
    search_fields = ("=tracking_number", "=recipient__phone", "=cabinet__serial")
    list_select_related = ("carrier", "cabinet", "compartment__cabinet")
    raw_id_fields = ("recipient", "sender", "cabinet", "compartment")
    readonly_fields = (
        "status",
        "direction",
        "reserved_at",
        "release_authorized_at",
        "extension_count",
        "deposited_at",
        "picked_up_at",
        "created_at",
        "updated_at",
    )
    exclude = ("pickup_code_hash",)
    inlines = [ParcelEventInline]
    actions = ["cancel", "extend"]

    @admin.action(description=_("Cancel (announced parcels not yet in a cabinet)"))
    def cancel(self, request: HttpRequest, queryset: QuerySet[Parcel]) -> None:
        actor = Actor.staff(request.user)  # type: ignore[arg-type]
        self._each(
            request,
            queryset,
            lambda p: parcel_cancel(parcel=p, actor=actor, reason="cancelled in the admin"),
        )

    @admin.action(description=_("Extend the pickup deadline (once)"))
    def extend(self, request: HttpRequest, queryset: QuerySet[Parcel]) -> None:
        actor = Actor.staff(request.user)  # type: ignore[arg-type]
        self._each(request, queryset, lambda p: parcel_extend(parcel=p, actor=actor))

    def _each(self, request: HttpRequest, queryset: QuerySet[Parcel], change: Any) -> None:
        if staff_carrier_id(request) is not None:
            return
        done = 0
        for parcel in queryset:
            try:
                change(parcel)
                done += 1
            except ApplicationError as exc:
                self.message_user(
                    request, f"{parcel.tracking_number}: {exc.message}", messages.ERROR
                )
        if done:
            self.message_user(request, f"{done} parcel(s) changed.")

    # No date_hierarchy: its year/month links are a scan of every parcel on each page view.
    # Newest first by primary key (ids grow with creation): the model's created_at ordering
    # has no index and sorts a million rows per page.
    ordering = ("-id",)
    list_per_page = 100
    show_full_result_count = False


@admin.register(ParcelEvent)
class ParcelEventAdmin(ReadOnlyEventAdmin, CarrierScopedAdmin):
    carrier_path = "parcel__carrier"
    list_display = (
        "at",
        "parcel",
        "from_status",
        "to_status",
        "actor_kind",
        "actor_label",
        "reason",
    )
    list_filter = ("to_status", "actor_kind")
    search_fields = ("=parcel__tracking_number",)
    list_select_related = ("parcel__carrier",)
    show_full_result_count = False
