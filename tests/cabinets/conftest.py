from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from django.conf import settings

from cabinets.presence import PRESENCE_KEY


@pytest.fixture(autouse=True)
def _clean_presence() -> Iterator[None]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(PRESENCE_KEY)
    yield
    client.delete(PRESENCE_KEY)
    client.close()
