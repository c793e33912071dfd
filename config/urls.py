from __future__ import annotations

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_replace
from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from core.views import favicon


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


# Swagger UI and ReDoc insert <style> elements from their scripts (which stay 'self' only).
_DOCS_CSP = csp_replace({"style-src": [SELF, UNSAFE_INLINE]})

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("favicon.ico", favicon, name="favicon"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file: no inline script (CSP).
    path(
        "api/docs/",
        _DOCS_CSP(SpectacularSwaggerSplitView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path(
        "api/redoc/",
        _DOCS_CSP(SpectacularRedocView.as_view(url_name="api-schema")),
        name="api-redoc",
    ),
    path("api/v1/carrier/", include("courier.api_urls")),
    path("api/v1/identity/", include("identity.api_urls")),
    path("enroll/", include("identity.urls")),
    path("", include("courier.urls")),
]
