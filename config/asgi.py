"""ASGI entry point: HTTP through Django, cabinet websockets through Channels."""

from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
# Django must be set up before the routing imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from cabinets.admission import AdmissionGate  # noqa: E402
from cabinets.redaction import link_url_redaction_install  # noqa: E402
from cabinets.routing import CabinetLinkUrlOnly, websocket_urlpatterns  # noqa: E402

# No AllowedHostsOriginValidator on purpose: cabinets are devices, not browsers, and send
# no Origin; they authenticate with their own credential before the socket is accepted.
application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": CabinetLinkUrlOnly(AdmissionGate(URLRouter(websocket_urlpatterns))),
    }
)
# After Django's logging setup, in the ASGI server's process: a credential put in a URL by a
# misconfigured cabinet must not reach the server's log (cabinets/redaction.py).
link_url_redaction_install()

if settings.CABINET_ASGI_GC_FREEZE:
    # Everything imported so far (Django, the apps, their modules) lives as long as the
    # process. A full collection walks every tracked object, and with 10,000 sockets it
    # took 0.9-1.2 s, stalling every heartbeat and unlock in the process (CHANNELS-NOTES).
    # Frozen objects are skipped by every later collection; new garbage is still collected.
    gc.collect()
    gc.freeze()
