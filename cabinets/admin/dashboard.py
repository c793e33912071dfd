"""The fleet dashboard and its map endpoint (cabinets/dashboard.py computes both)."""

from __future__ import annotations

from dataclasses import asdict

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from cabinets.dashboard import FLEET_STATUSES, dashboard_get, map_query_parse, map_view_get
from cabinets.selectors import Occupancy
from core.errors import ApplicationError

# The fleet dashboard redraws itself this often (seconds).
DASHBOARD_REFRESH_S = 30


def _refresh_s(request: HttpRequest) -> int:
    """The dashboard's refresh period: DASHBOARD_REFRESH_S, or `?refresh=N` (2 to 600 s)."""
    given = request.GET.get("refresh", "")
    return min(max(int(given), 2), 600) if given.isdigit() else DASHBOARD_REFRESH_S


class FleetDashboardAdmin(admin.ModelAdmin):
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
                "labels": [str(label) for label in Occupancy.LABELS.values()],
                "values": [dashboard.occupancy.get(key, 0) for key in Occupancy.LABELS],
            },
            "parcels": {
                "labels": [d.isoformat() for d in dashboard.parcels.days],
                "announced": dashboard.parcels.announced,
                "picked_up": dashboard.parcels.picked_up,
            },
            "refresh_ms": _refresh_s(request) * 1000,
            # The page's script writes these; it holds no text of its own.
            "texts": {
                "online": gettext("online"),
                "offline": gettext("offline"),
                "never": gettext("never connected"),
                "maintenance": gettext("maintenance"),
                "provisioning": gettext("provisioning"),
                "announced": gettext("announced"),
                "picked_up": gettext("picked up"),
                "cabinets": gettext("cabinets"),
                "map_failed": gettext("The map could not load:"),
                "not_refreshed": gettext("Not refreshed: %(error)s (showing the last data)"),
            },
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
                "title": gettext("Fleet dashboard"),
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
