"""Staff sessions are short: whatever the session's default age (14 days for the enrollment
pages' people and Django's default), a session of a staff user ends at most
`STAFF_SESSION_AGE_S` after the first request it made as staff, active or not."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone


class StaffSessionAgeMiddleware:
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
