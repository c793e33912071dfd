"""ASGI entry point: HTTP through Django, cabinet websockets through Channels."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
# Django must be set up before the routing imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from cabinets.admission import AdmissionGate, admission_log_filter_install  # noqa: E402
from cabinets.gc_policy import gc_policy  # noqa: E402
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
# Nor the ERROR line uvicorn writes after each busy refusal (cabinets/admission.py).
admission_log_filter_install()

# The start-up objects out of the garbage collector; later freezes follow from the first
# handshake (cabinets/gc_policy.py: the whole policy in one place).
gc_policy.freeze_start_up()
