from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.live.worker", "tests.live.server", "tests.live.fixtures"]


def pytest_sessionstart(session: pytest.Session) -> None:
    """CI must exercise the real services: fail loudly instead of skipping."""
    if os.environ.get("REQUIRE_SERVICES") != "1":
        return
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        raise pytest.UsageError(f"REQUIRE_SERVICES=1 but the database engine is {engine}")
    import redis

    redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3).ping()


@pytest.fixture
def admin_client(client, admin_user):  # type: ignore[no-untyped-def]
    """pytest-django's superuser client, logged in with the staff second factor (as the admin
    login with a TOTP code leaves it): credential operations require it."""
    from tests.staff import verified_client

    return verified_client(client, admin_user)


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """Throttle counters live in the cache: every test starts with none."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _loop_connections_closed() -> Iterator[None]:
    """Each scenario runs on an event loop of its own, and a handshake on PostgreSQL opens a
    connection for that loop (core/loop_reads.py): closed once the loop is gone, or the test
    database could not be dropped."""
    yield
    from core.loop_reads import loop_connections

    loop_connections.close_idle()


@pytest.fixture(scope="session", autouse=True)
def _loop_connections_closed_at_the_end(django_db_setup: None) -> Iterator[None]:
    """Torn down before the test database is dropped: a loop still running in a thread of
    some test's (a simulated fleet's) would otherwise hold a connection to it."""
    yield
    from core.loop_reads import loop_connections

    loop_connections.close_all()


@pytest.fixture(autouse=True)
def _language_of_the_test_settings() -> Iterator[None]:
    """A request through LocaleMiddleware leaves its language active in the thread; the next
    test starts in LANGUAGE_CODE again (English in the test settings)."""
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()
