"""The door grid on a cabinet's change page: every compartment with its live state and an Open
button that asks a reason. The page polls a small JSON endpoint (no reload); Open goes through
the one remote-open service (`compartment_unlock`), audited there. Both endpoints are scoped
like the change page itself (core.admin.StaffScopedAdmin): a cabinet the staff user may not
see is a 404, an Open without the change permission a 403, both in the one error shape."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from cabinets.models import (
    Cabinet,
    Compartment,
)
from cabinets.selectors import cabinet_doors
from cabinets.services.commands import compartment_unlock
from core.actors import Actor
from core.errors import ApplicationError
from core.timefmt import admin_time

# How often the page asks for the doors' state (milliseconds); the endpoint costs two queries.
DOOR_GRID_POLL_MS = 3000


class DoorOpenForm(forms.Form):
    reason = forms.CharField(max_length=255, strip=True)


def json_error(code: str, message: str, status: int, **details: Any) -> JsonResponse:
    return JsonResponse({"error": code, "message": message, "details": details}, status=status)


class DoorGridAdmin(admin.ModelAdmin):
    """Mixed into CabinetAdmin, before StaffScopedAdmin."""

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "<int:object_id>/doors.json",
                view(require_GET(self.doors_view)),
                name="cabinets_cabinet_doors",
            ),
            path(
                "<int:object_id>/doors/<int:compartment_id>/open/",
                view(require_POST(self.door_open_view)),
                name="cabinets_cabinet_door_open",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        cabinet = self._cabinet(request, int(object_id)) if object_id.isdigit() else None
        if cabinet is not None:
            extra_context = {
                **(extra_context or {}),
                "door_grid": self.door_grid_context(request, cabinet),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def _cabinet(self, request: HttpRequest, object_id: int) -> Cabinet | None:
        return self.get_queryset(request).filter(pk=object_id).only("pk", "serial").first()

    def door_grid_context(self, request: HttpRequest, cabinet: Cabinet) -> dict[str, Any]:
        return {
            "doors_url": reverse("admin:cabinets_cabinet_doors", args=[cabinet.pk]),
            "open_url": reverse("admin:cabinets_cabinet_door_open", args=[cabinet.pk, 0]),
            "may_open": self.has_change_permission(request, cabinet),
            "poll_ms": DOOR_GRID_POLL_MS,
            # The page's script writes these; it holds no text of its own.
            "texts": {
                "opening": gettext("Opening…"),
                "empty": gettext("empty"),
                "open": gettext("Open"),
                "no_compartments": gettext("This cabinet has no compartments."),
                "as_of": gettext("as of %(time)s"),
                "not_updated": gettext("not updated: %(error)s"),
                "open_door": gettext("Open door %(door)s"),
                "open_door_parcel": gettext("Open door %(door)s (parcel %(parcel)s)"),
                "say_why": gettext("Say why the door is opened."),
                "not_opened": gettext("The door could not be opened."),
                "not_opened_because": gettext("The door could not be opened: %(error)s"),
            },
        }

    def doors_view(self, request: HttpRequest, object_id: int) -> JsonResponse:
        cabinet = self._cabinet(request, object_id)
        if cabinet is None or not self.has_view_permission(request, cabinet):
            return json_error("not_found", gettext("No such cabinet."), 404)
        now = timezone.now()
        # Each time twice: ISO for scripts, and as the page shows it (core.timefmt's policy).
        return JsonResponse(
            {
                "cabinet": cabinet.serial,
                "as_of": now.isoformat(),
                "as_of_shown": admin_time(now),
                "doors": [
                    {**asdict(row), "last_event_shown": admin_time(row.last_event_at)}
                    for row in cabinet_doors(cabinet_id=cabinet.pk)
                ],
            }
        )

    def door_open_view(
        self, request: HttpRequest, object_id: int, compartment_id: int
    ) -> JsonResponse:
        cabinet = self._cabinet(request, object_id)
        if cabinet is None or not self.has_view_permission(request, cabinet):
            return json_error("not_found", gettext("No such cabinet."), 404)
        if not self.has_change_permission(request, cabinet):
            return json_error("permission_denied", gettext("You may not open doors here."), 403)
        compartment = (
            Compartment.objects.select_related("cabinet")
            .filter(pk=compartment_id, cabinet_id=cabinet.pk)
            .first()
        )
        if compartment is None:
            return json_error("not_found", gettext("No such compartment in this cabinet."), 404)
        form = DoorOpenForm(request.POST)
        if not form.is_valid():
            return json_error(
                "invalid",
                gettext("Say why the door is opened."),
                400,
                fields=form.errors.get_json_data(),
            )
        actor = Actor.staff(request.user)  # type: ignore[arg-type]
        try:
            command = compartment_unlock(
                compartment=compartment,
                actor=actor,
                reason=form.cleaned_data["reason"],
                payload={"reason": "remote open", "by": actor.label},
            )
        except ApplicationError as exc:
            return json_error(exc.code, exc.message, exc.status_code, **exc.details)
        return JsonResponse(
            {
                "command": str(command.pk),
                "status": command.status,
                "message": gettext("%(compartment)s: unlock command sent.")
                % {"compartment": compartment},
            }
        )
