"""ASGI entry point: HTTP through Django, cabinet websockets through Channels."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
# Django must be set up before the routing imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from cabinets.routing import websocket_urlpatterns  # noqa: E402

# No AllowedHostsOriginValidator on purpose: cabinets are devices, not browsers, and send
# no Origin; they authenticate with their own credential before the socket is accepted.
application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
