"""Where the platform runs, for the commands that talk to it (the demo and fleet simulator):
one base URL, `PUBLIC_BASE_URL`, which follows `PORT` unless it is set itself."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

from cabinet_agent import protocol


def platform_base_url() -> str:
    return str(settings.PUBLIC_BASE_URL).rstrip("/")


def cabinet_websocket_url(server: str | None = None) -> str:
    """The cabinet endpoint for a base URL (`ws://host:port`, `http://host:port/`) or a full
    endpoint URL; the platform's own base URL when `server` is None."""
    parts = urlsplit(server or platform_base_url())
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path if parts.path not in ("", "/") else protocol.WEBSOCKET_PATH
    return urlunsplit((scheme, parts.netloc, path, "", ""))


SERVER_HELP = (
    "the platform: a base URL (ws://host:port or http://host:port; /ws/cabinet/ is appended"
    " when the path is empty) or the full endpoint; default: PUBLIC_BASE_URL, which is"
    " http://127.0.0.1:$PORT unless set (PORT defaults to 8000)"
)
