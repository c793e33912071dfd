"""HTTP concerns around every view: the API's error shape outside DRF, security headers, and
short staff sessions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from http import HTTPStatus

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.translation import gettext

API_PREFIX = "/api/"

# Codes for the errors Django answers before (or instead of) a DRF view.
_CODES = {
    400: "bad_request",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    500: "server_error",
}


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").split(";")[0].strip() == "application/json"


class ApiResponseMiddleware:
    """Under /api/: an error that did not come from DRF (an unmatched path, a body over
    DATA_UPLOAD_MAX_MEMORY_SIZE, CSRF, an unhandled exception turned into a 500 by Django)
    gets the one JSON error shape instead of an HTML page. The exception itself is still
    logged by Django (django.request) before it gets here."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith(API_PREFIX):
            return response
        if response.status_code >= 400 and not _is_json(response):
            response = self._json_error(response.status_code)
        return response

    @staticmethod
    def _json_error(status: int) -> JsonResponse:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        code = _CODES.get(status, phrase.lower().replace(" ", "_").replace("-", "_"))
        message = {
            404: gettext("No such API endpoint."),
            413: gettext("The request body is too large."),
            500: gettext("Internal server error; it has been logged."),
        }.get(status, f"{phrase}.")
        return JsonResponse({"error": code, "message": message, "details": {}}, status=status)


# Browser features no page here uses; the camera is granted per view (settings).
_DENIED_FEATURES = ("camera", "microphone", "geolocation", "payment", "usb", "serial", "bluetooth")


class SecurityHeadersMiddleware:
    """Permissions-Policy: every powerful feature off, except the camera on the views named in
    PERMISSIONS_POLICY_CAMERA_VIEWS (the enrollment page), for this origin only.
    `Cache-Control: no-store` under NO_STORE_PATH_PREFIXES: API answers, enrollment pages
    and link pages carry tokens, codes and people's data that no browser or proxy may keep.
    (The CSP comes from django-csp's middleware; see CONTENT_SECURITY_POLICY.)"""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        camera_views = settings.PERMISSIONS_POLICY_CAMERA_VIEWS
        camera = match is not None and match.view_name in camera_views
        response.setdefault(
            "Permissions-Policy",
            ", ".join(
                f"{feature}=(self)" if feature == "camera" and camera else f"{feature}=()"
                for feature in _DENIED_FEATURES
            ),
        )
        if request.path.startswith(tuple(settings.NO_STORE_PATH_PREFIXES)):
            response["Cache-Control"] = "no-store"
        return response


class StaffSessionAgeMiddleware:
    """Staff sessions are short: whatever the session's default age (14 days for the enrollment
    pages' people and Django's default), a session of a staff user ends at most
    `STAFF_SESSION_AGE_S` after the first request it made as staff, active or not."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Requests without a session cookie (the carrier API, cabinets) never load a session.
        has_session = settings.SESSION_COOKIE_NAME in request.COOKIES
        user = getattr(request, "user", None) if has_session else None
        if user is not None and user.is_authenticated and user.is_staff:
            age = settings.STAFF_SESSION_AGE_S
            # A fixed end time, not an idle timeout: set once, never pushed back.
            if request.session.get_expiry_age() > age:
                request.session.set_expiry(timezone.now() + timedelta(seconds=age))
        return self.get_response(request)
