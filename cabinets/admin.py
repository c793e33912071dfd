"""The fleet admin. Every changelist is a fixed number of queries (select_related, subquery
annotations, no full counts); every operation goes through a service and is audited there.
Secrets never appear: credentials are shown once, on the page the operation redirects to.
Operations that issue or revoke credentials need `cabinets.manage_credentials` and a session
verified with the staff second factor (core/staff_otp.py). Cabinets belong to no carrier:
carrier staff see none of this (core.admin.StaffScopedAdmin)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any
from urllib.parse import quote

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from cabinets.admin_doors import DoorGridAdmin
from cabinets.admin_rollouts import RolloutLiveAdmin
from cabinets.dashboard import FLEET_STATUSES, dashboard_get, map_query_parse, map_view_get
from cabinets.models import (
    Cabinet,
    CabinetCommand,
    CabinetCredential,
    CabinetEvent,
    CabinetImport,
    CabinetMessage,
    CabinetState,
    CabinetTag,
    Compartment,
    CompartmentEvent,
    Rollout,
    RolloutEvent,
    RolloutKind,
    RolloutState,
    RolloutTarget,
    RolloutWave,
    ServiceState,
)
from cabinets.provisioning import (
    REQUIRED_COLUMNS,
    cabinets_import,
    credentials_csv,
    import_errors_csv,
)
from cabinets.rollouts.plans import DEFAULT_WAVE_PLAN, wave_plan_parse
from cabinets.rollouts.services import (
    rollout_abort,
    rollout_create,
    rollout_pause,
    rollout_resume,
    rollout_retry_failed,
    rollout_start,
)
from cabinets.selectors import Occupancy, compartments_free
from cabinets.services.commands import compartment_unlock
from cabinets.services.credentials import (
    IssuedCredential,
    RotationStarted,
    cabinet_credential_issue,
    cabinet_credential_revoke,
    cabinet_credentials_rotate,
)
from cabinets.services.lifecycle import cabinet_transition, compartment_service_set
from core.actors import Actor
from core.admin import ReadOnlyEventAdmin, StaffScopedAdmin
from core.errors import ApplicationError
from core.shown_once import shown_once_redirect, shown_once_take
from core.staff_otp import otp_refused, otp_required
from core.timefmt import admin_time, time_column, with_zone

COMMAND_LOG_ROWS = 20
# The fleet dashboard redraws itself this often (seconds).
DASHBOARD_REFRESH_S = 30


def _refresh_s(request: HttpRequest) -> int:
    """The dashboard's refresh period: DASHBOARD_REFRESH_S, or `?refresh=N` (2 to 600 s)."""
    given = request.GET.get("refresh", "")
    return min(max(int(given), 2), 600) if given.isdigit() else DASHBOARD_REFRESH_S


def _pretty_json(value: Any) -> SafeString:
    if not value:
        return format_html("<span>{}</span>", "—")
    return format_html(
        '<pre style="margin:0;white-space:pre-wrap">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False),
    )


def _run(request: HttpRequest, objects: Any, operation: Callable[[Any], Any], done: str) -> int:
    """Apply one service call per selected object; report refusals without stopping."""
    ok = 0
    for obj in objects:
        try:
            operation(obj)
        except ApplicationError as exc:
            messages.error(request, f"{obj}: {exc.message}")
        else:
            ok += 1
    if ok:
        messages.success(request, f"{done}: {ok}.")
    return ok


def _overlap_text() -> str:
    hours = settings.CABINET_CREDENTIAL_OVERLAP_S / 3600
    return f"{hours:g} h"


def _rotation_message(started: list[RotationStarted]) -> str:
    delivered = sum(1 for s in started if s.old_valid_until is not None)
    text = (
        f"Rotation started for {delivered} cabinet(s): each new credential is delivered over "
        f"the link; the old one stays valid until the cabinet uses the new one, at most "
        f"{_overlap_text()}."
    )
    if delivered < len(started):
        text += (
            f" {len(started) - delivered} had no credential to rotate: "
            "issue one to install by hand."
        )
    return text


def _credentials_redirect(request: HttpRequest, issued: list[IssuedCredential]) -> HttpResponse:
    """Post-redirect-get for operations that issue credentials (core/shown_once.py)."""
    return shown_once_redirect(
        request, url_name="admin:cabinets_credentials_once", payload=[asdict(c) for c in issued]
    )


def _credentials_response(
    request: HttpRequest, admin_site: admin.AdminSite, stash_id: str
) -> HttpResponse:
    """The one response that shows credentials. Never cached; gone from the session once shown."""
    issued = [IssuedCredential(**c) for c in shown_once_take(request, stash_id) or []]
    response = TemplateResponse(
        request,
        "admin/cabinets/credentials_once.html",
        {
            **admin_site.each_context(request),
            "title": "New cabinet credentials" if issued else "Credentials already shown",
            "credentials": issued,
            "csv_href": "data:text/csv;charset=utf-8," + quote(credentials_csv(issued)),
        },
    )
    response["Cache-Control"] = "no-store"
    return response


def _selection_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    queryset: QuerySet[Any],
    *,
    action: str,
    title: str,
    form: forms.Form | None,
    warning: str = "",
) -> TemplateResponse:
    """The intermediate page of a bulk action: what it does, to how many, a reason if asked."""
    return TemplateResponse(
        request,
        "admin/cabinets/action_reason.html",
        {
            **model_admin.admin_site.each_context(request),
            "title": title,
            "warning": warning,
            "objects": queryset[:100],
            "count": queryset.count(),
            "form": form,
            "action": action,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "opts": model_admin.model._meta,
        },
    )


class OperationForm(forms.Form):
    reason = forms.CharField(max_length=255, widget=forms.TextInput(attrs={"size": 60}))


class ConfirmForm(forms.Form):
    confirm = forms.BooleanField(widget=forms.HiddenInput, initial=True)


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


class CompartmentInline(admin.TabularInline):
    model = Compartment
    extra = 0
    can_delete = False
    fields = (
        "label",
        "size",
        "service_state",
        "service_reason",
        "door_state",
        "failed_open_count",
        "service_changed_at",
    )
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Cabinet)
class CabinetAdmin(DoorGridAdmin, StaffScopedAdmin):
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
    actions = [
        "activate",
        "maintenance_on",
        "maintenance_off",
        "rotate_credentials",
        "revoke_credentials",
    ]
    change_form_template = "admin/cabinets/cabinet/change_form.html"
    change_list_template = "admin/cabinets/cabinet/change_list.html"
    last_seen_shown = time_column("last_seen_at", _("last seen"))
    telemetry_at_shown = time_column("telemetry_at", _("telemetry at"))

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
        return _pretty_json(obj.telemetry)

    @admin.display(description=_("credential"))
    def credential_status(self, obj: Cabinet) -> str:
        valid = obj.credentials.filter(revoked_at__isnull=True).exclude(
            expires_at__lte=timezone.now()
        )
        rows = sorted(
            valid.values_list("key_id", "created_at", "expires_at"), key=lambda r: r[2] is not None
        )
        if not rows:
            return "none active"
        key_id, created_at, _expires = rows[0]
        text = f"active: {key_id} (issued {admin_time(created_at)})"
        for old_key_id, _issued, expires_at in rows[1:]:
            # A rotation in its overlap (protocol §17): the cabinet has not switched yet.
            text += f"; rotating from {old_key_id}, accepted until {admin_time(expires_at)}"
        return text

    @admin.display(description=f"last {COMMAND_LOG_ROWS} commands")
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
        return format_html(
            "<table><thead><tr><th>{}</th><th>action</th><th>compartment</th><th>status</th>"
            "<th>by</th><th>reason</th></tr></thead><tbody>{}</tbody></table>"
            '<p><a href="{}">All commands of this cabinet</a></p>',
            with_zone("issued"),
            rows or format_html('<tr><td colspan="6">{}</td></tr>', "none"),
            url,
        )

    # -- admin actions (changelist) --

    def _actor(self, request: HttpRequest) -> Actor:
        return Actor.staff(request.user)  # type: ignore[arg-type]

    def has_manage_credentials_permission(self, request: HttpRequest) -> bool:
        return self.has_staff_permission(request, "cabinets.manage_credentials")

    def _move(
        self, request: HttpRequest, queryset: QuerySet[Cabinet], to: CabinetState, reason: str
    ) -> None:
        actor = self._actor(request)
        _run(
            request,
            queryset.order_by("pk"),
            lambda c: cabinet_transition(cabinet_id=c.pk, to_state=to, actor=actor, reason=reason),
            f"Cabinets now {to.label.lower()}",
        )

    @admin.action(description=_("Activate (provisioned cabinets go live)"), permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[Cabinet]) -> None:
        self._move(request, queryset, CabinetState.ACTIVE, "activated in the admin")

    @admin.action(description=_("Put into maintenance (asks for a reason)"), permissions=["change"])
    def maintenance_on(self, request: HttpRequest, queryset: QuerySet[Cabinet]) -> Any:
        form = OperationForm(request.POST if "reason" in request.POST else None)
        if form.is_valid():
            self._move(request, queryset, CabinetState.MAINTENANCE, form.cleaned_data["reason"])
            return None
        return _selection_page(
            request,
            self,
            queryset,
            action="maintenance_on",
            title="Put these cabinets into maintenance",
            form=form,
            warning="Cabinets in maintenance take no new parcels; parcels inside stay collectable.",
        )

    @admin.action(description=_("Back from maintenance"), permissions=["change"])
    def maintenance_off(self, request: HttpRequest, queryset: QuerySet[Cabinet]) -> None:
        self._move(request, queryset, CabinetState.ACTIVE, "maintenance ended in the admin")

    @admin.action(
        description=_("Rotate credentials (delivered over the link; asks to confirm)"),
        permissions=["manage_credentials"],
    )
    @otp_required
    def rotate_credentials(self, request: HttpRequest, queryset: QuerySet[Cabinet]) -> Any:
        if not ConfirmForm(request.POST).is_valid():
            return _selection_page(
                request,
                self,
                queryset,
                action="rotate_credentials",
                title=f"Rotate the credentials of {queryset.count()} cabinet(s)?",
                form=ConfirmForm(),
                warning="Each cabinet receives its new credential over its link and stays "
                "online; the old credential is accepted until the cabinet connects with the new "
                f"one, at most {_overlap_text()}. A stolen key: use “Revoke now” instead.",
            )
        started = cabinet_credentials_rotate(
            cabinets=list(queryset.order_by("pk")), actor=self._actor(request)
        )
        messages.success(request, _rotation_message(started))
        return None

    @admin.action(
        description=_("Revoke now (a stolen key: the cabinet goes offline)"),
        permissions=["manage_credentials"],
    )
    @otp_required
    def revoke_credentials(self, request: HttpRequest, queryset: QuerySet[Cabinet]) -> Any:
        form = OperationForm(request.POST if "reason" in request.POST else None)
        if form.is_valid():
            actor, reason = self._actor(request), form.cleaned_data["reason"]
            revoked = sum(
                cabinet_credential_revoke(cabinet=c, actor=actor, reason=reason)
                for c in queryset.order_by("pk")
            )
            messages.success(request, f"Credentials revoked: {revoked}.")
            return None
        return _selection_page(
            request,
            self,
            queryset,
            action="revoke_credentials",
            title="Revoke the credentials of these cabinets",
            form=form,
            warning="The cabinets go offline at once and stay offline until rotated.",
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

    CABINET_OPERATIONS: dict[str, str] = {
        "maintenance_on": "Put into maintenance",
        "maintenance_off": "Back from maintenance",
        "activate": "Activate",
        "rotate_credential": "Rotate the credential (over the link)",
        "reissue_credential": "Issue a new credential to install by hand",
        "revoke_credential": "Revoke now",
    }

    CREDENTIAL_OPERATIONS = frozenset(
        {"rotate_credential", "reissue_credential", "revoke_credential"}
    )

    def credentials_view(self, request: HttpRequest, stash_id: str) -> HttpResponse:
        if not self.has_manage_credentials_permission(request):
            raise PermissionDenied
        return _credentials_response(request, self.admin_site, stash_id)

    def operation_view(self, request: HttpRequest, object_id: int, operation: str) -> Any:
        cabinet = get_object_or_404(self.get_queryset(request), pk=object_id)
        if operation not in self.CABINET_OPERATIONS or not self.has_change_permission(
            request, cabinet
        ):
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
                    messages.success(request, _rotation_message(started))
                    return HttpResponseRedirect(change_page)
                if operation == "reissue_credential":
                    issued = cabinet_credential_issue(cabinet=cabinet, actor=actor)
                    return _credentials_redirect(request, [issued])
                if operation == "revoke_credential":
                    cabinet_credential_revoke(cabinet=cabinet, actor=actor, reason=reason)
                else:
                    to = {
                        "maintenance_on": CabinetState.MAINTENANCE,
                        "maintenance_off": CabinetState.ACTIVE,
                        "activate": CabinetState.ACTIVE,
                    }[operation]
                    cabinet_transition(
                        cabinet_id=cabinet.pk, to_state=to, actor=actor, reason=reason
                    )
            except ApplicationError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(
                    request, f"{cabinet.serial}: {self.CABINET_OPERATIONS[operation]}: done."
                )
            return HttpResponseRedirect(change_page)
        return TemplateResponse(
            request,
            "admin/cabinets/operation_form.html",
            {
                **self.admin_site.each_context(request),
                "title": f"{self.CABINET_OPERATIONS[operation]}: {cabinet}",
                "object": cabinet,
                "form": form,
                "opts": self.model._meta,
            },
        )

    def dashboard_view(self, request: HttpRequest) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        dashboard = dashboard_get()
        charts = {
            "regions": {
                "labels": [r.region for r in dashboard.regions],
                **{
                    status: [getattr(r, status) for r in dashboard.regions]
                    for status in FLEET_STATUSES
                },
            },
            "occupancy": {
                "labels": list(Occupancy.LABELS.values()),
                "values": [dashboard.occupancy.get(key, 0) for key in Occupancy.LABELS],
            },
            "parcels": {
                "labels": [d.isoformat() for d in dashboard.parcels.days],
                "announced": dashboard.parcels.announced,
                "picked_up": dashboard.parcels.picked_up,
            },
            "refresh_ms": _refresh_s(request) * 1000,
            "map": {
                "url": reverse("admin:cabinets_fleet_map"),
                "change_url": reverse("admin:cabinets_cabinet_change", args=[0]),
                "tiles": settings.FLEET_MAP_TILE_URL,
                "attribution": settings.FLEET_MAP_TILE_ATTRIBUTION,
            },
        }
        return TemplateResponse(
            request,
            "admin/cabinets/dashboard.html",
            {
                **self.admin_site.each_context(request),
                "title": "Fleet dashboard",
                "dashboard": dashboard,
                "charts": charts,
                "alert_settings": {
                    "offline_min": settings.FLEET_ALERT_OFFLINE_AFTER_S // 60,
                    "refresh_s": _refresh_s(request),
                    "door_min": settings.FLEET_ALERT_DOOR_OPEN_AFTER_S // 60,
                    "expiry_h": settings.FLEET_ALERT_PARCEL_EXPIRY_WITHIN_S // 3600,
                },
                "now": timezone.now(),
            },
        )

    def map_view(self, request: HttpRequest) -> JsonResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            zoom, bbox = map_query_parse(request.GET)
        except ApplicationError as exc:
            return JsonResponse(exc.as_dict(), status=exc.status_code)
        return JsonResponse(asdict(map_view_get(zoom=zoom, bbox=bbox)))

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not (
            self.has_add_permission(request)
            and self.has_change_permission(request)
            and self.has_manage_credentials_permission(request)
        ):
            raise PermissionDenied
        # The import issues each new cabinet's credential.
        if otp_refused(request):
            return HttpResponseRedirect(reverse("admin:cabinets_cabinet_changelist"))
        form = CabinetImportForm(request.POST or None, request.FILES or None)
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "Import cabinets from CSV",
            "form": form,
            "opts": self.model._meta,
            "columns": ", ".join(REQUIRED_COLUMNS),
        }
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                result = cabinets_import(
                    text=upload.read().decode("utf-8-sig"),
                    actor=self._actor(request),
                    filename=upload.name,
                    dry_run=form.cleaned_data["dry_run"],
                )
            except UnicodeDecodeError:
                form.add_error("file", "The file is not UTF-8 text.")
            except ApplicationError as exc:
                form.add_error("file", exc.message)
            else:
                errors_csv = import_errors_csv(result.errors)
                context.update(
                    result=result,
                    errors_shown=result.errors[:500],
                    errors_href="data:text/csv;charset=utf-8," + quote(errors_csv),
                    credentials_href="data:text/csv;charset=utf-8,"
                    + quote(credentials_csv(result.credentials)),
                )
        response = TemplateResponse(request, "admin/cabinets/import.html", context)
        # The result page carries new credentials: never cached.
        response["Cache-Control"] = "no-store"
        return response


class CabinetImportForm(forms.Form):
    file = forms.FileField(help_text="UTF-8 CSV with a header row.")
    dry_run = forms.BooleanField(
        required=False,
        label="Dry run",
        help_text="Check the file and count what it would change; store nothing.",
    )


# --- Compartments ----------------------------------------------------------------------------


@admin.register(Compartment)
class CompartmentAdmin(StaffScopedAdmin):
    """Compartments come with their cabinet (provisioning) and change state through the
    services: none is added, moved, resized or deleted here."""

    list_display = (
        "__str__",
        "size",
        "service_state",
        "door_state",
        "failed_open_count",
        "service_changed_at",
    )
    list_filter = ("service_state", "size", "door_state")
    search_fields = ("=cabinet__serial", "label")
    list_select_related = ("cabinet",)
    readonly_fields = (
        "service_state",
        "service_reason",
        "door_state",
        "failed_open_count",
        "service_changed_at",
    )
    show_full_result_count = False
    actions = ["out_of_service", "back_in_service"]
    change_form_template = "admin/cabinets/compartment/change_form.html"

    COMPARTMENT_OPERATIONS: dict[str, str] = {
        "remote_open": "Open remotely",
        "out_of_service": "Take out of service",
        "back_in_service": "Return to service",
    }

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("cabinet", "label", "size", *self.readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _actor(self, request: HttpRequest) -> Actor:
        return Actor.staff(request.user)  # type: ignore[arg-type]

    def _move(
        self, request: HttpRequest, queryset: QuerySet[Compartment], to: str, done: str
    ) -> None:
        actor = self._actor(request)
        _run(
            request,
            queryset.order_by("pk"),
            lambda c: compartment_service_set(
                compartment_id=c.pk, to_state=to, actor=actor, reason="admin action"
            ),
            done,
        )

    @admin.action(description=_("Take out of service"), permissions=["change"])
    def out_of_service(self, request: HttpRequest, queryset: QuerySet[Compartment]) -> None:
        self._move(request, queryset, ServiceState.OUT_OF_SERVICE, "Out of service")

    @admin.action(description=_("Return to service"), permissions=["change"])
    def back_in_service(self, request: HttpRequest, queryset: QuerySet[Compartment]) -> None:
        self._move(request, queryset, ServiceState.IN_SERVICE, "Back in service")

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:object_id>/operation/<str:operation>/",
                self.admin_site.admin_view(self.operation_view),
                name="cabinets_compartment_operation",
            ),
            *super().get_urls(),
        ]

    def operation_view(self, request: HttpRequest, object_id: int, operation: str) -> Any:
        compartment = get_object_or_404(
            self.get_queryset(request).select_related("cabinet"), pk=object_id
        )
        if operation not in self.COMPARTMENT_OPERATIONS or not self.has_change_permission(
            request, compartment
        ):
            raise PermissionDenied
        form = OperationForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            actor, reason = self._actor(request), form.cleaned_data["reason"]
            try:
                if operation == "remote_open":
                    command = compartment_unlock(
                        compartment=compartment,
                        actor=actor,
                        reason=reason,
                        payload={"reason": "remote open", "by": actor.label},
                    )
                    done = f"unlock command {command.pk} issued"
                else:
                    to = (
                        ServiceState.OUT_OF_SERVICE
                        if operation == "out_of_service"
                        else ServiceState.IN_SERVICE
                    )
                    compartment_service_set(
                        compartment_id=compartment.pk, to_state=to, actor=actor, reason=reason
                    )
                    done = f"now {ServiceState(to).label.lower()}"
            except ApplicationError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"{compartment}: {done}.")
            return HttpResponseRedirect(
                reverse("admin:cabinets_compartment_change", args=[compartment.pk])
            )
        return TemplateResponse(
            request,
            "admin/cabinets/operation_form.html",
            {
                **self.admin_site.each_context(request),
                "title": f"{self.COMPARTMENT_OPERATIONS[operation]}: {compartment}",
                "object": compartment,
                "form": form,
                "opts": self.model._meta,
            },
        )


# --- Read-only records -----------------------------------------------------------------------


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


@admin.register(CompartmentEvent)
class CompartmentEventAdmin(ReadOnlyEventAdmin):
    at_shown = time_column("at", _("at"))
    list_display = (
        "at_shown",
        "compartment",
        "from_state",
        "to_state",
        "actor_kind",
        "actor_label",
        "reason",
    )
    list_filter = ("to_state", "actor_kind")
    search_fields = ("=compartment__cabinet__serial", "compartment__label")
    list_select_related = ("compartment__cabinet",)
    show_full_result_count = False


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
        return _pretty_json(obj.payload)

    @admin.display(description=_("result"))
    def result_pretty(self, obj: CabinetCommand) -> SafeString:
        return _pretty_json(obj.result)


@admin.register(CabinetCredential)
class CabinetCredentialAdmin(ReadOnlyEventAdmin):
    """The secret's hash is never shown; issuing and revoking are cabinet operations."""

    list_display = (
        "key_id",
        "cabinet",
        "created_at",
        "revoked_at",
        "revoked_reason",
        "actor_label",
    )
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("=cabinet__serial", "=key_id")
    list_select_related = ("cabinet",)
    show_full_result_count = False
    fields = (
        "key_id",
        "cabinet",
        "created_at",
        "revoked_at",
        "revoked_reason",
        "actor_kind",
        "actor_label",
    )
    readonly_fields = fields


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
        return _pretty_json(obj.payload)


@admin.register(CabinetImport)
class CabinetImportAdmin(ReadOnlyEventAdmin):
    list_display = (
        "at",
        "filename",
        "rows",
        "created",
        "updated",
        "unchanged",
        "errors",
        "actor_label",
    )
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


# --- Rollouts --------------------------------------------------------------------------------


class RolloutCreateForm(forms.Form):
    name = forms.CharField(max_length=120)
    kind = forms.ChoiceField(choices=RolloutKind.choices)
    version = forms.CharField(
        max_length=32, help_text="Firmware version (1.4.2) or config version (an integer)."
    )
    payload = forms.JSONField(
        required=False,
        initial=dict,
        help_text='Extra payload keys, e.g. {"url": "https://…", "sha256": "…"} for firmware.',
    )
    target_region = forms.CharField(max_length=80, required=False, help_text="Empty: all regions.")
    target_tag = forms.ModelChoiceField(CabinetTag.objects.all(), required=False)
    target_hardware_model = forms.CharField(max_length=64, required=False)
    wave_plan = forms.CharField(
        initial=", ".join(DEFAULT_WAVE_PLAN),
        help_text="Cumulative: a count (5 pilots) or a share of the targets (10%).",
    )
    success_threshold_pct = forms.IntegerField(min_value=0, max_value=100, initial=95)
    error_threshold_pct = forms.IntegerField(min_value=0, max_value=100, initial=20)
    min_sample = forms.IntegerField(min_value=1, initial=5)
    command_ttl_s = forms.IntegerField(min_value=60, max_value=86_400, initial=3600)

    def clean_wave_plan(self) -> list[str]:
        try:
            return wave_plan_parse(self.cleaned_data["wave_plan"])
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from exc

    def clean_payload(self) -> dict[str, Any]:
        payload = self.cleaned_data["payload"] or {}
        if not isinstance(payload, dict):
            raise forms.ValidationError("The payload is a JSON object.")
        return payload


ROLLOUT_OPERATIONS: dict[str, tuple[str, Callable[..., Any]]] = {
    "start": ("Start", rollout_start),
    "pause": ("Pause", rollout_pause),
    "resume": ("Resume", rollout_resume),
    "abort": ("Abort", rollout_abort),
    "retry_failed": ("Retry failed", rollout_retry_failed),
}
ROLLOUT_OPERATIONS_BY_STATE: dict[str, tuple[str, ...]] = {
    RolloutState.DRAFT: ("start", "abort"),
    RolloutState.RUNNING: ("pause", "abort", "retry_failed"),
    RolloutState.PAUSED: ("resume", "abort", "retry_failed"),
    RolloutState.COMPLETED: ("retry_failed",),
    RolloutState.ABORTED: (),
}


@admin.register(Rollout)
class RolloutAdmin(RolloutLiveAdmin, StaffScopedAdmin):
    list_display = (
        "name",
        "kind",
        "version",
        "state",
        "progress",
        "target_summary",
        "created_at",
        "actor_label",
    )
    list_filter = ("state", "kind")
    search_fields = ("name", "version")
    list_select_related = ("target_tag",)
    show_full_result_count = False
    actions = ["start_selected", "pause_selected", "resume_selected", "abort_selected"]
    change_form_template = "admin/cabinets/rollout/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Rollout]:
        def count(*states: str) -> Any:
            return Coalesce(
                Subquery(
                    RolloutTarget.objects.filter(rollout=OuterRef("pk"), state__in=states)
                    .order_by()
                    .values("rollout")
                    .annotate(n=Count("id"))
                    .values("n"),
                    output_field=IntegerField(),
                ),
                0,
            )

        return (
            super()
            .get_queryset(request)
            .annotate(
                n_total=Coalesce(
                    Subquery(
                        RolloutTarget.objects.filter(rollout=OuterRef("pk"))
                        .order_by()
                        .values("rollout")
                        .annotate(n=Count("id"))
                        .values("n"),
                        output_field=IntegerField(),
                    ),
                    0,
                ),
                n_done=count("succeeded", "skipped"),
                n_errors=count("failed", "timed_out"),
            )
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in Rollout._meta.fields if f.name != "id"]

    @admin.display(description=_("progress"))
    def progress(self, obj: Any) -> str:
        if not obj.n_total:
            return "not planned"
        return f"{obj.n_done}/{obj.n_total} done, {obj.n_errors} errors"

    @admin.display(description=_("targets"))
    def target_summary(self, obj: Rollout) -> str:
        parts = [
            f"region={obj.target_region}" if obj.target_region else "",
            f"tag={obj.target_tag}" if obj.target_tag_id else "",
            f"model={obj.target_hardware_model}" if obj.target_hardware_model else "",
        ]
        return ", ".join(p for p in parts if p) or "all cabinets"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _actor(self, request: HttpRequest) -> Actor:
        return Actor.staff(request.user)  # type: ignore[arg-type]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> Any:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = RolloutCreateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                rollout = rollout_create(**form.cleaned_data, actor=self._actor(request))
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, f"Rollout {rollout} created as a draft; start it here.")
                return HttpResponseRedirect(
                    reverse("admin:cabinets_rollout_change", args=[rollout.pk])
                )
        return TemplateResponse(
            request,
            "admin/cabinets/rollout/create.html",
            {
                **self.admin_site.each_context(request),
                "title": "New rollout",
                "form": form,
                "opts": self.model._meta,
            },
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        rollout = self.get_object(request, object_id)
        extra: dict[str, Any] = dict(extra_context or {})
        if rollout is not None:
            extra.update(
                **self.rollout_live_context(rollout),
                events=RolloutEvent.objects.filter(rollout=rollout).order_by("-at", "-id")[:50],
                operations=[
                    (op, ROLLOUT_OPERATIONS[op][0])
                    for op in ROLLOUT_OPERATIONS_BY_STATE.get(rollout.state, ())
                ],
                show_save=False,
                show_save_and_continue=False,
                show_save_and_add_another=False,
                show_delete=False,
            )
        return super().change_view(request, object_id, form_url, extra)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:object_id>/operation/<str:operation>/",
                self.admin_site.admin_view(self.operation_view),
                name="cabinets_rollout_operation",
            ),
            *super().get_urls(),
        ]

    def operation_view(self, request: HttpRequest, object_id: int, operation: str) -> Any:
        rollout = get_object_or_404(self.get_queryset(request), pk=object_id)
        if (
            request.method != "POST"
            or operation not in ROLLOUT_OPERATIONS
            or not self.has_change_permission(request, rollout)
        ):
            raise PermissionDenied
        if operation == "abort" and request.POST.get("confirm") != "yes":
            return self.abort_confirmation(request, rollout)
        label, service = ROLLOUT_OPERATIONS[operation]
        kwargs: dict[str, Any] = {"rollout_id": rollout.pk, "actor": self._actor(request)}
        if operation in ("pause", "abort"):
            kwargs["reason"] = request.POST.get("reason", "")[:255]
        try:
            service(**kwargs)
        except ApplicationError as exc:
            messages.error(request, f"{label}: {exc.message}")
        else:
            messages.success(request, f"{label}: done.")
        return HttpResponseRedirect(reverse("admin:cabinets_rollout_change", args=[rollout.pk]))

    def _bulk(self, request: HttpRequest, queryset: QuerySet[Rollout], operation: str) -> None:
        label, service = ROLLOUT_OPERATIONS[operation]
        actor = self._actor(request)
        _run(
            request,
            queryset.order_by("pk"),
            lambda r: service(rollout_id=r.pk, actor=actor),
            label,
        )

    @admin.action(description=_("Start"), permissions=["change"])
    def start_selected(self, request: HttpRequest, queryset: QuerySet[Rollout]) -> None:
        self._bulk(request, queryset, "start")

    @admin.action(description=_("Pause"), permissions=["change"])
    def pause_selected(self, request: HttpRequest, queryset: QuerySet[Rollout]) -> None:
        self._bulk(request, queryset, "pause")

    @admin.action(description=_("Resume"), permissions=["change"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[Rollout]) -> None:
        self._bulk(request, queryset, "resume")

    @admin.action(description=_("Abort (asks to confirm)"), permissions=["change"])
    def abort_selected(self, request: HttpRequest, queryset: QuerySet[Rollout]) -> Any:
        if not ConfirmForm(request.POST).is_valid():
            return _selection_page(
                request,
                self,
                queryset,
                action="abort_selected",
                title=f"Abort {queryset.count()} rollout(s)?",
                form=ConfirmForm(),
                warning="Cabinets not yet sent the version are cancelled; an aborted "
                "rollout cannot be resumed.",
            )
        self._bulk(request, queryset, "abort")
        return None


@admin.register(RolloutEvent)
class RolloutEventAdmin(ReadOnlyEventAdmin):
    at_shown = time_column("at", _("at"))
    list_display = (
        "at_shown",
        "rollout",
        "action",
        "from_state",
        "to_state",
        "wave_number",
        "actor_kind",
        "actor_label",
        "detail",
    )
    list_filter = ("action", "actor_kind")
    list_select_related = ("rollout",)
    show_full_result_count = False
