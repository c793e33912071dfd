"""Compartments: they come with their cabinet and change state through the services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from cabinets.admin.operations import COMPARTMENT_SERVICE
from cabinets.models import (
    Compartment,
    CompartmentEvent,
    ServiceState,
)
from cabinets.services.commands import compartment_unlock
from core.admin import ReadOnlyEventAdmin
from core.admin_confirm import OperationForm
from core.admin_operations import StaffOperationsAdmin
from core.errors import ApplicationError
from core.timefmt import time_column


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


@admin.register(Compartment)
class CompartmentAdmin(StaffOperationsAdmin):
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
    # Generated from the one table over SERVICE_TRANSITIONS.
    actions = COMPARTMENT_SERVICE.actions()
    operation_table, operation_context = COMPARTMENT_SERVICE, "service_operations"
    change_form_template = "admin/cabinets/compartment/change_form.html"

    COMPARTMENT_OPERATIONS: dict[str, str] = {
        "remote_open": "Open remotely",
        **{op.name: str(op.label) for op in COMPARTMENT_SERVICE.operations},
    }

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("cabinet", "label", "size", *self.readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

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
                    done = gettext("unlock command %(id)s issued") % {"id": command.pk}
                else:
                    op = COMPARTMENT_SERVICE[operation]
                    COMPARTMENT_SERVICE.run(op, compartment, actor, reason)
                    done = gettext("now %(state)s") % {
                        "state": str(ServiceState(op.to_state).label).lower()
                    }
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
