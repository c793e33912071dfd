"""Cabinets: the changelist, the change page with its operations, tags and the audit."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import format_lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from cabinets.admin.compartments import CompartmentInline
from cabinets.admin.dashboard import FleetDashboardAdmin
from cabinets.admin.display import pretty_json
from cabinets.admin.doors import DoorGridAdmin
from cabinets.admin.operations import CABINET_LIFECYCLE
from cabinets.admin.provisioning import (
    CabinetProvisioningAdmin,
    credentials_redirect,
    rotation_message,
)
from cabinets.models import (
    Cabinet,
    CabinetEvent,
    CabinetTag,
    Compartment,
    RolloutWave,
)
from cabinets.selectors import compartments_free
from cabinets.services.credentials import (
    cabinet_credential_issue,
    cabinet_credential_revoke,
    cabinet_credentials_rotate,
)
from core.admin import ReadOnlyEventAdmin, StaffScopedAdmin
from core.admin_confirm import OperationForm
from core.errors import ApplicationError
from core.staff_otp import otp_refused
from core.timefmt import admin_time, time_column, with_zone

COMMAND_LOG_ROWS = 20


# --- Filters ---------------------------------------------------------------------------------


class TagFilter(admin.SimpleListFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in CabinetTag.objects.values_list("name", flat=True)[:200]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(tags__name=self.value()) if self.value() else queryset


class RolloutWaveFilter(admin.SimpleListFilter):
    title = "rollout wave"
    parameter_name = "rollout_wave"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        waves = RolloutWave.objects.select_related("rollout").order_by(
            "-rollout__created_at", "number"
        )[:60]
        return [(str(w.pk), f"{w.rollout.name}: wave {w.number} ({w.spec})") for w in waves]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not self.value() or not self.value().isdigit():  # type: ignore[union-attr]
            return queryset
        return queryset.filter(rollout_targets__wave_id=int(self.value()))  # type: ignore[arg-type]


# --- Cabinets --------------------------------------------------------------------------------


@admin.register(Cabinet)
class CabinetAdmin(DoorGridAdmin, FleetDashboardAdmin, CabinetProvisioningAdmin):
    list_display = (
        "serial",
        "name",
        "city",
        "region",
        "state",
        "connection_state",
        "last_seen_shown",
        "firmware_version",
        "config_version",
        "compartments_free",
    )
    list_filter = (
        "region",
        "state",
        "connection_state",
        "firmware_version",
        "hardware_model",
        TagFilter,
        RolloutWaveFilter,
    )
    search_fields = ("=serial", "name", "city", "address")
    list_per_page = 100
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("serial", "name", "address", "city", "region", "time_zone")}),
        ("Location", {"fields": ("latitude", "longitude")}),
        (
            "Hardware and software",
            {"fields": ("hardware_model", "firmware_version", "config_version")},
        ),
        (
            "Status (changed through operations)",
            {
                "fields": (
                    "state",
                    "connection_state",
                    "last_seen_shown",
                    "credential_status",
                    "created_at",
                    "updated_at",
                )
            },
        ),
        ("Last telemetry", {"fields": ("telemetry_at_shown", "telemetry_pretty")}),
        ("Command log", {"fields": ("command_log",)}),
    )
    readonly_fields = (
        "state",
        "connection_state",
        "last_seen_shown",
        "firmware_version",
        "config_version",
        "credential_status",
        "telemetry_at_shown",
        "telemetry_pretty",
        "command_log",
        "created_at",
        "updated_at",
    )
    inlines = [CompartmentInline]
    # The lifecycle actions come from the one table over CABINET_TRANSITIONS.
    actions = [*CABINET_LIFECYCLE.actions(), "rotate_credentials", "revoke_credentials"]
    operation_table, operation_context = CABINET_LIFECYCLE, "lifecycle_operations"
    change_form_template = "admin/cabinets/cabinet/change_form.html"
    change_list_template = "admin/cabinets/cabinet/change_list.html"
    last_seen_shown = time_column("last_seen_at", _("last seen"))
    telemetry_at_shown = time_column("telemetry_at", _("telemetry at"))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The serial is the cabinet's identity for provisioning (the CSV import upserts by it)
        # and for its credential: set when the cabinet is created, never edited here.
        return self.readonly_fields if obj is None else ("serial", *self.readonly_fields)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Cabinet]:
        # Correlated subqueries run for the rows of the page only, unlike a GROUP BY.
        free = (
            compartments_free()
            .filter(cabinet=OuterRef("pk"))
            .order_by()
            .values("cabinet")
            .annotate(n=Count("id"))
            .values("n")
        )
        total = (
            Compartment.objects.filter(cabinet=OuterRef("pk"))
            .order_by()
            .values("cabinet")
            .annotate(n=Count("id"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .defer("telemetry")
            .annotate(
                free_count=Coalesce(Subquery(free, output_field=IntegerField()), 0),
                compartment_count=Coalesce(Subquery(total, output_field=IntegerField()), 0),
            )
        )

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        # The change page shows the telemetry the changelist defers.
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            obj.refresh_from_db(fields=["telemetry"])
        return obj

    @admin.display(description=_("free / all"), ordering="free_count")
    def compartments_free(self, obj: Any) -> str:
        return f"{obj.free_count} / {obj.compartment_count}"

    @admin.display(description=_("telemetry"))
    def telemetry_pretty(self, obj: Cabinet) -> SafeString:
        return pretty_json(obj.telemetry)

    @admin.display(description=_("credential"))
    def credential_status(self, obj: Cabinet) -> str:
        valid = obj.credentials.filter(revoked_at__isnull=True).exclude(
            expires_at__lte=timezone.now()
        )
        rows = sorted(
            valid.values_list("key_id", "created_at", "expires_at"), key=lambda r: r[2] is not None
        )
        if not rows:
            return gettext("none active")
        key_id, created_at, _expires = rows[0]
        text = gettext("active: %(key)s (issued %(at)s)") % {
            "key": key_id,
            "at": admin_time(created_at),
        }
        for old_key_id, _issued, expires_at in rows[1:]:
            # A rotation in its overlap (protocol §17): the cabinet has not switched yet.
            text += gettext("; rotating from %(key)s, accepted until %(at)s") % {
                "key": old_key_id,
                "at": admin_time(expires_at),
            }
        return text

    @admin.display(description=format_lazy(_("last {count} commands"), count=COMMAND_LOG_ROWS))
    def command_log(self, obj: Cabinet) -> SafeString:
        commands = obj.commands.select_related("compartment").order_by("-issued_at")[
            :COMMAND_LOG_ROWS
        ]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    admin_time(c.issued_at),
                    c.action,
                    c.compartment.label if c.compartment else "—",
                    c.get_status_display(),
                    c.actor_label,
                    c.reason,
                )
                for c in commands
            ),
        )
        url = reverse("admin:cabinets_cabinetcommand_changelist") + f"?cabinet__id__exact={obj.pk}"
        heads = format_html_join(
            "",
            "<th>{}</th>",
            ((h,) for h in (_("action"), _("compartment"), _("status"), _("by"), _("reason"))),
        )
        return format_html(
            "<table><thead><tr><th>{}</th>{}</tr></thead><tbody>{}</tbody></table>"
            '<p><a href="{}">{}</a></p>',
            with_zone(gettext("issued")),
            heads,
            rows or format_html('<tr><td colspan="6">{}</td></tr>', gettext("none")),
            url,
            gettext("All commands of this cabinet"),
        )

    # -- per-cabinet operations (change page buttons), the dashboard and the import --

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("dashboard/", view(self.dashboard_view), name="cabinets_fleet_dashboard"),
            path("dashboard/map.json", view(self.map_view), name="cabinets_fleet_map"),
            path("import/", view(self.import_view), name="cabinets_cabinet_import"),
            path(
                "credentials/<str:stash_id>/",
                view(self.credentials_view),
                name="cabinets_credentials_once",
            ),
            path(
                "<int:object_id>/operation/<str:operation>/",
                view(self.operation_view),
                name="cabinets_cabinet_operation",
            ),
            *super().get_urls(),
        ]

    CREDENTIAL_OPERATIONS: dict[str, str] = {
        "rotate_credential": "Rotate the credential (over the link)",
        "reissue_credential": "Issue a new credential to install by hand",
        "revoke_credential": "Revoke now",
    }

    def _operation_label(self, operation: str) -> str:
        if operation in CABINET_LIFECYCLE:
            return str(CABINET_LIFECYCLE[operation].label)
        return self.CREDENTIAL_OPERATIONS[operation]

    def operation_view(self, request: HttpRequest, object_id: int, operation: str) -> Any:
        cabinet = get_object_or_404(self.get_queryset(request), pk=object_id)
        known = operation in CABINET_LIFECYCLE or operation in self.CREDENTIAL_OPERATIONS
        if not known or not self.has_change_permission(request, cabinet):
            raise PermissionDenied
        change_page = reverse("admin:cabinets_cabinet_change", args=[cabinet.pk])
        if operation in self.CREDENTIAL_OPERATIONS:
            if not self.has_manage_credentials_permission(request):
                raise PermissionDenied
            if otp_refused(request):
                return HttpResponseRedirect(change_page)
        form = OperationForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            actor, reason = self._actor(request), form.cleaned_data["reason"]
            try:
                if operation == "rotate_credential":
                    started = cabinet_credentials_rotate(cabinets=[cabinet], actor=actor)
                    messages.success(request, rotation_message(started))
                    return HttpResponseRedirect(change_page)
                if operation == "reissue_credential":
                    issued = cabinet_credential_issue(cabinet=cabinet, actor=actor)
                    return credentials_redirect(request, [issued])
                if operation == "revoke_credential":
                    cabinet_credential_revoke(cabinet=cabinet, actor=actor, reason=reason)
                else:
                    op = CABINET_LIFECYCLE[operation]
                    CABINET_LIFECYCLE.run(op, cabinet, actor, reason)
            except ApplicationError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(
                    request,
                    gettext("%(serial)s: %(operation)s: done.")
                    % {"serial": cabinet.serial, "operation": self._operation_label(operation)},
                )
            return HttpResponseRedirect(change_page)
        return TemplateResponse(
            request,
            "admin/cabinets/operation_form.html",
            {
                **self.admin_site.each_context(request),
                "title": f"{self._operation_label(operation)}: {cabinet}",
                "warning": CABINET_LIFECYCLE[operation].warning
                if operation in CABINET_LIFECYCLE
                else "",
                "object": cabinet,
                "form": form,
                "opts": self.model._meta,
            },
        )


@admin.register(CabinetEvent)
class CabinetEventAdmin(ReadOnlyEventAdmin):
    at_shown = time_column("at", _("at"))
    list_display = (
        "at_shown",
        "cabinet",
        "from_state",
        "to_state",
        "actor_kind",
        "actor_label",
        "reason",
    )
    list_filter = ("to_state", "actor_kind")
    search_fields = ("=cabinet__serial",)
    list_select_related = ("cabinet",)
    show_full_result_count = False


@admin.register(CabinetTag)
class CabinetTagAdmin(StaffScopedAdmin):
    list_display = ("name", "cabinet_count")
    search_fields = ("name",)
    raw_id_fields = ("cabinets",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[CabinetTag]:
        return super().get_queryset(request).annotate(n=Count("cabinets"))

    @admin.display(description=_("cabinets"), ordering="n")
    def cabinet_count(self, obj: Any) -> int:
        return obj.n
