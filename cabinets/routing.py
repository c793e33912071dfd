from __future__ import annotations

from django.urls import path

from cabinet_agent.protocol import WEBSOCKET_PATH
from cabinets.consumers import CabinetConsumer

websocket_urlpatterns = [
    path(WEBSOCKET_PATH.lstrip("/"), CabinetConsumer.as_asgi()),
]
