"""What the live end-to-end tests (a real worker, uvicorn, the reference agent) share: Redis
must be there, and a parcel waits in a given compartment with a known pickup code."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from cabinets.models import Compartment
from core.actors import Actor
from courier.codes import pickup_code_hash
from courier.models import Parcel, ParcelStatus
from courier.services.parcels import parcel_transition
from tests.factories import CarrierFactory, ParcelFactory
from tests.live.worker import services_required

TEST = Actor.system("test")
PICKUP_CODE = "123456"


@pytest.fixture
def redis_required() -> None:
    import redis
    from django.conf import settings

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError:
        if services_required():
            pytest.fail(f"Redis is not reachable at {settings.REDIS_URL}")
        pytest.skip(f"Redis is not reachable at {settings.REDIS_URL}")


def parcel_ready_in(cabinet: Any, recipient: Any, label: str) -> Parcel:
    """A parcel for `recipient` waiting in compartment `label`, pickup code PICKUP_CODE."""
    compartment = Compartment.objects.get(cabinet=cabinet, label=label)
    parcel = ParcelFactory(carrier=CarrierFactory(), cabinet=cabinet, recipient=recipient)
    return parcel_transition(
        parcel_id=parcel.pk,
        to_status=ParcelStatus.READY,
        actor=TEST,
        changes={
            "compartment": compartment,
            "deposited_at": timezone.now(),
            "pickup_deadline": timezone.now() + timedelta(days=3),
            "pickup_code_hash": pickup_code_hash(parcel_id=parcel.pk, code=PICKUP_CODE),
        },
    )
