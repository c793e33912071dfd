"""The fleet channel layer: a Redis pool that waits when busy, no socket timeout."""

from __future__ import annotations

import asyncio
import gc

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from redis.asyncio import BlockingConnectionPool

from cabinets.channel_layer import FleetRedisChannelLayer


def test_the_configured_layer_waits_for_a_connection_and_never_times_out_reads() -> None:
    layer = get_channel_layer()
    assert isinstance(layer, FleetRedisChannelLayer)
    assert layer.capacity == 10_000

    async def scenario() -> None:
        pool = layer.create_pool(0)
        assert isinstance(pool, BlockingConnectionPool)
        assert pool.connection_kwargs["socket_timeout"] is None
        assert pool.max_connections == 100
        await pool.disconnect()

    async_to_sync(scenario)()


def test_a_burst_larger_than_the_pool_is_queued_not_refused() -> None:
    # Two connections for two hundred concurrent group operations: the stock pool raises
    # MaxConnectionsError here; this one makes the callers wait their turn.
    layer = FleetRedisChannelLayer(
        hosts=[{"address": settings.REDIS_URL, "socket_timeout": None, "max_connections": 2}],
        prefix="test-burst",
        capacity=1000,
    )

    async def scenario() -> None:
        channel = await layer.new_channel()
        await asyncio.gather(
            *(layer.group_add(f"burst.{n}", channel) for n in range(200)),
        )
        await asyncio.gather(
            *(layer.group_send(f"burst.{n}", {"type": "x.y", "n": n}) for n in range(200))
        )
        received = {(await asyncio.wait_for(layer.receive(channel), 10))["n"] for _ in range(200)}
        assert received == set(range(200))
        await layer.flush()

    async_to_sync(scenario)()


def test_the_asgi_module_freezes_start_up_objects_out_of_the_collector() -> None:
    import config.asgi  # noqa: F401

    assert settings.CABINET_ASGI_GC_FREEZE
    assert gc.get_freeze_count() > 10_000
