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


def test_several_redis_hosts_share_the_groups_and_deliver_to_each(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys
    from pathlib import Path

    # CHANNEL_LAYER_REDIS_URLS lists the layer's Redis servers, in order.
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "CHANNEL_LAYER_REDIS_URLS": "redis://10.0.0.5:6379/0,redis://10.0.0.6:6379/0",
    }
    out = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; "
         "print([h['address'] for h in settings.CHANNEL_LAYERS['default']['CONFIG']['hosts']])"],
        cwd=root, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "['redis://10.0.0.5:6379/0', 'redis://10.0.0.6:6379/0']"

    # Two hosts (both this test's Redis, so that nothing else is touched): groups are spread
    # over both, and every group_send reaches its member through whichever host holds it.
    host = {"address": settings.REDIS_URL, "socket_timeout": None}
    layer = FleetRedisChannelLayer(hosts=[host, dict(host)], prefix="test-hosts", capacity=1000)
    groups = [f"cabinet.{n}" for n in range(40)]
    assert {layer.consistent_hash(g) for g in groups} == {0, 1}

    async def scenario() -> None:
        channel = await layer.new_channel()
        for group in groups:
            await layer.group_add(group, channel)
        for n, group in enumerate(groups):
            await layer.group_send(group, {"type": "x.y", "n": n})
        received = {(await asyncio.wait_for(layer.receive(channel), 10))["n"] for _ in groups}
        assert received == set(range(len(groups)))
        await layer.flush()

    async_to_sync(scenario)()


def test_pushes_from_sync_threads_share_one_loop_per_process_and_arrive() -> None:
    # A Celery task or a pool thread pushes from sync code: every push goes through the one
    # push loop of the process (its Redis connections kept), not a new loop per call.
    import threading

    from cabinets.push import cabinet_group, push_loop, push_now

    layer = get_channel_layer()
    assert layer is not None
    cabinet_id = 987_654

    async def join() -> str:
        channel = await layer.new_channel()
        await layer.group_add(cabinet_group(cabinet_id), channel)
        return channel

    channel = async_to_sync(join)()
    loops = []

    def push(n: int) -> None:
        push_now(cabinet_id, {"type": "link.send", "n": n})
        loops.append(push_loop._running())

    threads = [threading.Thread(target=push, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    push(3)  # and from this thread

    async def received() -> set[int]:
        got = {(await asyncio.wait_for(layer.receive(channel), 10))["n"] for _ in range(4)}
        await layer.group_discard(cabinet_group(cabinet_id), channel)
        return got

    assert async_to_sync(received)() == {0, 1, 2, 3}
    assert len({id(loop) for loop in loops}) == 1 and loops[0].is_running()
