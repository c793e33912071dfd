from __future__ import annotations

from django.contrib import admin

from cabinets.models import Cabinet, CabinetEvent, Compartment, CompartmentEvent
from core.admin import ReadOnlyEventAdmin


class CompartmentInline(admin.TabularInline):
    model = Compartment
    extra = 0
    fields = ("label", "size", "state", "door_state", "state_changed_at")
    readonly_fields = ("state", "door_state", "state_changed_at")
    show_change_link = True


@admin.register(Cabinet)
class CabinetAdmin(admin.ModelAdmin):
    list_display = (
        "serial",
        "name",
        "city",
        "region",
        "state",
        "connection_state",
        "last_seen_at",
        "firmware_version",
    )
    list_filter = ("state", "connection_state", "region", "hardware_model", "firmware_version")
    search_fields = ("serial", "name", "address", "city")
    readonly_fields = ("state", "connection_state", "last_seen_at", "created_at", "updated_at")
    inlines = [CompartmentInline]
    show_full_result_count = False


@admin.register(Compartment)
class CompartmentAdmin(admin.ModelAdmin):
    list_display = ("__str__", "size", "state", "door_state", "state_changed_at")
    list_filter = ("state", "size", "door_state")
    search_fields = ("cabinet__serial", "label")
    list_select_related = ("cabinet",)
    readonly_fields = ("state", "door_state", "state_changed_at")
    raw_id_fields = ("cabinet",)
    show_full_result_count = False


@admin.register(CabinetEvent)
class CabinetEventAdmin(ReadOnlyEventAdmin):
    list_display = (
        "at",
        "cabinet",
        "from_state",
        "to_state",
        "actor_kind",
        "actor_label",
        "reason",
    )
    list_filter = ("to_state", "actor_kind")
    search_fields = ("cabinet__serial",)
    list_select_related = ("cabinet",)


@admin.register(CompartmentEvent)
class CompartmentEventAdmin(ReadOnlyEventAdmin):
    list_display = (
        "at",
        "compartment",
        "from_state",
        "to_state",
        "actor_kind",
        "actor_label",
        "reason",
    )
    list_filter = ("to_state", "actor_kind")
    search_fields = ("compartment__cabinet__serial", "compartment__label")
    list_select_related = ("compartment__cabinet",)
