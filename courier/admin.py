"""Parcel admin with two audiences (core/staff.py): platform staff see every carrier; a
carrier's staff (a CarrierStaff row) see only their own carrier's records and nothing of the
others, in lists, filters, detail pages and permissions alike, and only look. Scoping is
core.admin.StaffScopedAdmin's `carrier_scope`; actions declare their permissions. A parcel's
operations (Cancel, Extend) come from PARCEL_OPERATIONS, a table over PARCEL_TRANSITIONS
(core/admin_operations.py)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from core.actors import Actor, shown_time
from core.admin import ReadOnlyEventAdmin, StaffScopedAdmin, figure
from core.admin_operations import Operation, OperationTable, StaffOperationsAdmin
from core.shown_once import shown_once_redirect, shown_once_take
from core.staff_otp import otp_required
from courier.authentication import carrier_api_key_issue
from courier.models import (
    PARCEL_EXTENDABLE,
    PARCEL_TRANSITIONS,
    AccessAttempt,
    Carrier,
    CarrierApiKey,
    CarrierStaff,
    Courier,
    Notification,
    Parcel,
    ParcelEvent,
    ParcelStatus,
)
from courier.selectors import parcel_attempts, parcel_release
from courier.services.parcels import parcel_cancel, parcel_extend
from courier.services.people import carrier_api_key_revoke, courier_pin_reset


def _secrets_redirect(
    request: HttpRequest, *, title: str, columns: list[str], rows: list[list[str]]
) -> HttpResponse:
    """API keys and PINs go to a page shown once (core/shown_once.py), never in a message."""
    return shown_once_redirect(
        request,
        url_name="admin:courier_secrets_once",
        payload={"title": title, "columns": columns, "rows": rows},
    )


@admin.register(Carrier)
class CarrierAdmin(StaffScopedAdmin):
    carrier_scope = "pk"
    list_display = ("name", "code", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name", "code")
    actions = ["issue_api_key"]

    def has_issue_api_key_permission(self, request: HttpRequest) -> bool:
        return self.has_staff_permission(request, "courier.issue_api_key")

    @admin.action(description=_("Issue an API key (shown once)"), permissions=["issue_api_key"])
    @otp_required
    def issue_api_key(self, request: HttpRequest, queryset: QuerySet[Carrier]) -> HttpResponse:
        rows = [
            [carrier.code, carrier_api_key_issue(carrier=carrier, name=f"admin:{request.user}")]
            for carrier in queryset.order_by("pk")
        ]
        return _secrets_redirect(
            request,
            title=gettext("New carrier API keys"),
            columns=[gettext("carrier"), gettext("API key")],
            rows=rows,
        )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "secrets/<str:stash_id>/",
                self.admin_site.admin_view(self.secrets_view),
                name="courier_secrets_once",
            ),
            *super().get_urls(),
        ]

    def secrets_view(self, request: HttpRequest, stash_id: str) -> HttpResponse:
        """The page an API key or PIN is shown on, once; it lives in the viewer's session."""
        shown = shown_once_take(request, stash_id)
        response = TemplateResponse(
            request,
            "admin/courier/secrets_once.html",
            {
                **self.admin_site.each_context(request),
                "title": shown["title"] if shown else "Already shown",
                "shown": shown,
            },
        )
        response["Cache-Control"] = "no-store"
        return response


@admin.register(CarrierStaff)
class CarrierStaffAdmin(StaffScopedAdmin):
    """Platform staff decide who works for which carrier."""

    list_display = ("user", "carrier", "created_at")
    list_filter = ("carrier",)
    search_fields = ("user__username", "carrier__code")
    list_select_related = ("user", "carrier")
    raw_id_fields = ("user",)


@admin.register(Courier)
class CourierAdmin(StaffScopedAdmin):
    carrier_scope = "carrier"
    list_display = ("name", "carrier", "badge_number", "phone", "is_active")
    list_filter = ("is_active", "carrier")
    search_fields = ("name", "badge_number", "phone")
    list_select_related = ("carrier",)
    raw_id_fields = ("user",)
    exclude = ("pin_hash",)
    show_full_result_count = False
    actions = ["reset_pin"]

    def has_reset_pin_permission(self, request: HttpRequest) -> bool:
        return self.has_staff_permission(request, "courier.reset_courier_pin")

    @admin.action(description=_("Set a new cabinet PIN (shown once)"), permissions=["reset_pin"])
    @otp_required
    def reset_pin(self, request: HttpRequest, queryset: QuerySet[Courier]) -> HttpResponse:
        rows = [
            [courier.badge_number, courier_pin_reset(courier=courier)]
            for courier in queryset.order_by("pk")
        ]
        return _secrets_redirect(
            request,
            title=gettext("New cabinet PINs"),
            columns=[gettext("badge"), gettext("PIN")],
            rows=rows,
        )


@admin.register(CarrierApiKey)
class CarrierApiKeyAdmin(StaffScopedAdmin):
    """Keys are issued from the carrier list; here they are only listed and revoked."""

    carrier_scope = "carrier"
    list_display = ("prefix", "carrier", "name", "created_at", "revoked_at")
    list_filter = ("revoked_at",)
    list_select_related = ("carrier",)
    fields = ("carrier", "name", "prefix", "created_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return self.has_staff_permission(request, "courier.revoke_api_key")

    @admin.action(description=_("Revoke the selected keys"), permissions=["revoke"])
    @otp_required
    def revoke(self, request: HttpRequest, queryset: QuerySet[CarrierApiKey]) -> None:
        for key in queryset:
            carrier_api_key_revoke(key=key)
        self.message_user(
            request, gettext("Keys revoked: %(count)d.") % {"count": queryset.count()}
        )


@admin.register(AccessAttempt)
class AccessAttemptAdmin(ReadOnlyEventAdmin):
    """Who tried to open a door at a cabinet, and the figures of the decision. Carrier staff
    see the attempts on their own carrier's parcels (the parcel page links to them)."""

    carrier_scope = "parcels__carrier"
    list_display = (
        "at",
        "cabinet",
        "method",
        "purpose",
        "success",
        "outcome",
        "distance_shown",
        "margin_shown",
    )
    list_filter = ("method", "success", "outcome")
    search_fields = ("=cabinet__serial", "=parcels__tracking_number")
    list_select_related = ("cabinet",)
    # The face figures are shown rounded (core.admin.figure), never as raw floats.
    exclude = ("distance", "second_distance", "threshold", "margin")
    readonly_fields = (
        "distance_shown",
        "second_distance_shown",
        "threshold_shown",
        "margin_shown",
        "parcels_shown",
    )
    raw_id_fields = ("identity", "courier", "parcels")
    show_full_result_count = False

    @admin.display(description=_("distance"), ordering="distance")
    def distance_shown(self, obj: AccessAttempt) -> str:
        return figure(obj.distance)

    @admin.display(description=_("second distance"))
    def second_distance_shown(self, obj: AccessAttempt) -> str:
        return figure(obj.second_distance)

    @admin.display(description=_("threshold"))
    def threshold_shown(self, obj: AccessAttempt) -> str:
        return figure(obj.threshold)

    @admin.display(description=_("margin"), ordering="margin")
    def margin_shown(self, obj: AccessAttempt) -> str:
        return figure(obj.margin)

    @admin.display(description=_("parcels"))
    def parcels_shown(self, obj: AccessAttempt) -> SafeString:
        return format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            (
                (reverse("admin:courier_parcel_change", args=[p.pk]), str(p))
                for p in obj.parcels.select_related("carrier")
            ),
        ) or format_html("{}", "—")


@admin.register(Notification)
class NotificationAdmin(ReadOnlyEventAdmin):
    carrier_scope = "parcel__carrier"
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


def _parcel_run(op: Operation, parcel: Parcel, actor: Actor, reason: str) -> Parcel:
    if op.name == "extend":
        return parcel_extend(parcel=parcel, actor=actor)
    return parcel_cancel(parcel=parcel, actor=actor, reason=reason)


PARCEL_OPERATIONS = OperationTable(
    kind="parcel",
    transitions=PARCEL_TRANSITIONS,
    state_field="status",
    choices=ParcelStatus,
    run=_parcel_run,
    # The map's other moves are no operator's: they happen at the cabinet (deposit, drop-off,
    # pickup, return and collection by a courier) or in the expiry task. A new move in the map
    # fails tests/courier/test_admin.py until it is an operation here or listed here.
    automatic=frozenset(
        {
            (ParcelStatus.ANNOUNCED, ParcelStatus.READY),
            (ParcelStatus.ANNOUNCED, ParcelStatus.DROPPED_OFF),
            (ParcelStatus.READY, ParcelStatus.PICKED_UP),
            (ParcelStatus.READY, ParcelStatus.EXPIRED),
            (ParcelStatus.EXPIRED, ParcelStatus.RETURNED),
            (ParcelStatus.DROPPED_OFF, ParcelStatus.COLLECTED),
        }
    ),
    operations=(
        Operation(
            "cancel",
            _("Cancel (announced parcels not yet in a cabinet)"),
            ParcelStatus.CANCELLED,
            warning=_(
                "A cancelled parcel cannot be deposited any more; parcels already in a cabinet"
                " are left as they are."
            ),
            title=_("Cancel {count} parcel(s)?"),
            default_reason="cancelled in the admin",
        ),
        Operation(
            "extend",
            _("Extend the pickup deadline (once)"),
            # Not a move: the deadline is pushed back where parcel_extend allows it, and the
            # service refuses a second extension.
            acts_in_place=PARCEL_EXTENDABLE,
            records_reason=False,
        ),
    ),
)


@admin.register(Parcel)
class ParcelAdmin(StaffOperationsAdmin):
    """Parcels are announced through the carrier API and move through the services: nothing
    is added, edited or deleted here; Cancel and Extend are operations (PARCEL_OPERATIONS)."""

    carrier_scope = "carrier"
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
    exclude = ("pickup_code_hash",)
    inlines = [ParcelEventInline]
    actions = PARCEL_OPERATIONS.actions()
    operation_table, operation_context = PARCEL_OPERATIONS, "parcel_operations"
    change_form_template = "admin/courier/parcel/change_form.html"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Where a parcel is, whose it is and until when are the services' to change (deposit,
        # release, extension, expiry: each with its event row), so every field is shown and
        # none edited, fields added later included.
        return (
            *(
                f.name
                for f in Parcel._meta.concrete_fields
                if f.name not in ("id", "pickup_code_hash")
            ),
            "release_shown",
            "attempts_shown",
        )

    @admin.display(description=_("taken out"))
    def release_shown(self, obj: Parcel) -> str:
        release = parcel_release(parcel=obj)
        if release is None:
            return "—"
        return gettext("%(status)s at %(at)s: compartment %(compartment)s, opened by %(by)s") % {
            "status": release.status_label,
            "at": shown_time(release.at),
            "compartment": release.compartment,
            "by": release.opened_by,
        }

    @admin.display(description=_("access attempts"))
    def attempts_shown(self, obj: Parcel) -> SafeString:
        attempts = parcel_attempts(parcel=obj)
        if not attempts:
            return format_html("{}", gettext("none"))
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td>' + "<td>{}</td>" * 5 + "</tr>",
            (
                (
                    reverse("admin:courier_accessattempt_change", args=[a.pk]),
                    shown_time(a.at),
                    a.cabinet.serial,
                    a.get_method_display(),
                    gettext("yes") if a.success else gettext("no"),
                    a.outcome,
                    figure(a.distance),
                )
                for a in attempts
            ),
        )
        heads = format_html_join(
            "",
            "<th>{}</th>",
            (
                (h,)
                for h in (
                    _("when"),
                    _("cabinet"),
                    _("method"),
                    _("opened"),
                    _("outcome"),
                    _("distance"),
                )
            ),
        )
        return format_html(
            '<table id="parcel-attempts"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
            heads,
            rows,
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        extra = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False}
        return super().change_view(request, object_id, form_url, extra)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # No date_hierarchy: its year/month links are a scan of every parcel on each page view.
    # Newest first by primary key (ids grow with creation): the model's created_at ordering
    # has no index and sorts a million rows per page.
    ordering = ("-id",)
    list_per_page = 100
    show_full_result_count = False


@admin.register(ParcelEvent)
class ParcelEventAdmin(ReadOnlyEventAdmin):
    carrier_scope = "parcel__carrier"
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
