"""Signed commands and the messages (telemetry) cabinets send: read-only records."""

from __future__ import annotations

from django.contrib import admin
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from cabinets.admin.display import pretty_json
from cabinets.models import (
    CabinetCommand,
    CabinetMessage,
)
from core.admin import ReadOnlyEventAdmin
from core.timefmt import time_column


@admin.register(CabinetCommand)
class CabinetCommandAdmin(ReadOnlyEventAdmin):
    issued_shown = time_column("issued_at", _("issued"))
    expires_shown = time_column("expires_at", _("expires"))
    sent_shown = time_column("sent_at", _("sent"))
    received_shown = time_column("received_at", _("received"))
    completed_shown = time_column("completed_at", _("completed"))
    list_display = (
        "issued_shown",
        "cabinet",
        "compartment_label",
        "action",
        "status",
        "actor_label",
        "reason",
        "completed_shown",
    )
    list_filter = ("status", "action", "actor_kind")
    search_fields = ("=cabinet__serial", "=id")
    list_select_related = ("cabinet", "compartment")
    raw_id_fields = ("cabinet", "compartment")
    show_full_result_count = False
    fields = (
        "id",
        "cabinet",
        "compartment",
        "action",
        "payload_pretty",
        "reason",
        "status",
        "issued_shown",
        "expires_shown",
        "sent_shown",
        "send_count",
        "received_shown",
        "completed_shown",
        "result_pretty",
        "actor_kind",
        "actor_label",
    )
    readonly_fields = fields

    @admin.display(description=_("compartment"))
    def compartment_label(self, obj: CabinetCommand) -> str:
        return obj.compartment.label if obj.compartment else "—"

    @admin.display(description=_("payload"))
    def payload_pretty(self, obj: CabinetCommand) -> SafeString:
        return pretty_json(obj.payload)

    @admin.display(description=_("result"))
    def result_pretty(self, obj: CabinetCommand) -> SafeString:
        return pretty_json(obj.result)


@admin.register(CabinetMessage)
class CabinetMessageAdmin(ReadOnlyEventAdmin):
    list_display = ("received_at", "cabinet", "type", "sent_at")
    list_filter = ("type",)
    search_fields = ("=cabinet__serial", "=id")
    list_select_related = ("cabinet",)
    show_full_result_count = False
    fields = ("id", "cabinet", "type", "payload_pretty", "sent_at", "received_at")
    readonly_fields = fields

    @admin.display(description=_("payload"))
    def payload_pretty(self, obj: CabinetMessage) -> SafeString:
        return pretty_json(obj.payload)
