from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from django.conf import settings

from cabinets.presence import PRESENCE_KEY
from cabinets.services.credentials import cabinet_credential_issue
from core.actors import Actor
from tests.factories import CabinetFactory, CompartmentFactory


@pytest.fixture(autouse=True)
def _clean_presence() -> Iterator[None]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(PRESENCE_KEY)
    yield
    client.delete(PRESENCE_KEY)
    client.close()


@pytest.fixture
def provisioned():  # type: ignore[no-untyped-def]
    """A cabinet with one compartment, A01, and its credential: what the link tests connect."""
    cabinet = CabinetFactory(serial="SH-LINK-1")
    compartment = CompartmentFactory(cabinet=cabinet, label="A01")
    issued = cabinet_credential_issue(cabinet=cabinet, actor=Actor.system("test"))
    return cabinet, compartment, issued
