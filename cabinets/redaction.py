"""Keep websocket URLs other than the cabinet link's out of the server's log lines.

A cabinet that puts its credential in the URL (protocol §1 forbids it) must not get it written
to the log by the ASGI server: uvicorn logs every handshake's path ('"WebSocket %s" 403'), and
at debug level the request line and every header, Authorization included. Django logs the path
of a plain HTTP request to such a URL ("Not Found: %s"). The filters rewrite those arguments;
every other line passes untouched.
"""

from __future__ import annotations

import logging

from cabinet_agent.protocol import AUTH_SCHEME, WEBSOCKET_PATH

REDACTED = "[redacted]"


def _link_url(value: object) -> object:
    """A websocket URL as it may be logged: the cabinet link's own, or nothing of it."""
    return value if value == WEBSOCKET_PATH or not isinstance(value, str) else REDACTED


def _http_path(value: object) -> object:
    # HTTP paths stay readable in the access log, except under the websocket prefix.
    if isinstance(value, str) and value.startswith("/ws/") and value != WEBSOCKET_PATH:
        return REDACTED
    return value


class LinkUrlRedaction(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or not args:
            return True
        message = str(record.msg)
        if '"WebSocket %s"' in message and len(args) >= 2:
            record.args = (args[0], _link_url(args[1]), *args[2:])
        elif message.startswith("< GET %s") or message.startswith("GET %s"):
            record.args = (_link_url(args[0]), *args[1:])
        elif message == "< %s %s %s" and len(args) == 3:
            # The sans-I/O websockets implementation (uvicorn --ws websockets-sansio) logs the
            # request line as method, path, protocol.
            record.args = (args[0], _link_url(args[1]), args[2])
        elif message == "< %s: %s" and str(args[0]).lower() == "authorization":
            record.args = (args[0], f"{AUTH_SCHEME} {REDACTED}")
        else:
            record.args = tuple(_http_path(arg) for arg in args)
        return True


# uvicorn's handshake and debug lines (the websockets library logs through uvicorn.error),
# its HTTP access log, and Django's request log.
REDACTED_LOGGERS = ("uvicorn.error", "uvicorn.access", "django.request")


def link_url_redaction_install() -> None:
    """Idempotent: attach the filter to the loggers that write request paths."""
    for name in REDACTED_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, LinkUrlRedaction) for f in target.filters):
            target.addFilter(LinkUrlRedaction())
