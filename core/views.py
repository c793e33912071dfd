"""Site-wide pages that belong to no app."""

from __future__ import annotations

from django.conf import settings
from django.http import FileResponse, HttpRequest
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

FAVICON = settings.BASE_DIR / "static" / "favicon.ico"


@require_GET
@cache_control(max_age=86400, public=True)
def favicon(request: HttpRequest) -> FileResponse:
    # Browsers ask for /favicon.ico on every page that names no icon (the admin, the API
    # docs); served here rather than answered with a 404 in every log.
    return FileResponse(FAVICON.open("rb"), content_type="image/x-icon")
