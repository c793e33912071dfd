from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from core.admin import ReadOnlyEventAdmin
from courier.models import Carrier, Courier, Parcel, ParcelEvent


@admin.register(Carrier)
class CarrierAdmin(admin.ModelAdmin):
    list_display = ("name", "code", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name", "code")


@admin.register(Courier)
class CourierAdmin(admin.ModelAdmin):
    list_display = ("name", "carrier", "badge_number", "phone", "is_active")
    list_filter = ("is_active", "carrier")
    search_fields = ("name", "badge_number", "phone")
    list_select_related = ("carrier",)
    raw_id_fields = ("user",)


class ParcelEventInline(admin.TabularInline):
    model = ParcelEvent
    extra = 0
    can_delete = False
    fields = ("at", "from_status", "to_status", "actor_kind", "actor_label", "reason")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Parcel)
class ParcelAdmin(admin.ModelAdmin):
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
    search_fields = ("tracking_number", "recipient__phone", "cabinet__serial")
    list_select_related = ("carrier", "cabinet", "compartment__cabinet")
    raw_id_fields = ("recipient", "sender", "cabinet", "compartment")
    readonly_fields = (
        "status",
        "deposited_at",
        "picked_up_at",
        "created_at",
        "updated_at",
    )
    exclude = ("pickup_code_hash",)
    inlines = [ParcelEventInline]
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(ParcelEvent)
class ParcelEventAdmin(ReadOnlyEventAdmin):
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
    search_fields = ("parcel__tracking_number",)
    list_select_related = ("parcel__carrier",)
