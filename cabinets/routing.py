from __future__ import annotations

import logging
from typing import Any

from django.urls import path

from cabinet_agent.protocol import WEBSOCKET_PATH
from cabinets.consumers import CabinetConsumer

logger = logging.getLogger(__name__)

websocket_urlpatterns = [
    path(WEBSOCKET_PATH.lstrip("/"), CabinetConsumer.as_asgi()),
]


class CabinetLinkUrlOnly:
    """Refuse every websocket whose URL is not exactly the cabinet link's, before accept.

    Nothing belongs in that URL (protocol §1), and what a misconfigured cabinet puts there is
    usually its credential (`/ws/cabinet/<key_id>.<secret>`). Channels' URLRouter would raise
    "No route found for path '<the path>'": a traceback with the secret in the server's log
    and a broken handshake. Here the handshake ends with HTTP 403, and the warning names the
    client, never the path (cabinets.redaction keeps it out of the ASGI server's own lines).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == WEBSOCKET_PATH and not scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        message = await receive()
        if message["type"] == "websocket.connect":
            # A close before accept is how ASGI refuses a handshake (HTTP 403).
            await send({"type": "websocket.close", "code": 1008})
        client = scope.get("client") or ("?", 0)
        logger.warning("websocket refused: not the cabinet link URL (from %s)", client[0])
