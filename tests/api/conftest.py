from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core import signals
from django.db import close_old_connections


@pytest.fixture
def connection_kept_open() -> Iterator[None]:
    """The WSGI app is called inside the test's transaction: like Django's test client, it
    must not close the database connection when a request finishes."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
