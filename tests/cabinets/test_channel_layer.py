"""The fleet channel layer: a Redis pool that waits when busy, no socket timeout, fewer round
trips, direct sends on the host their receiver reads."""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import Connection

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

    # Two hosts (two databases of this test's Redis, so that a message written to the wrong
    # one is not found): groups are spread over both, and every group_send reaches its
    # member through whichever host holds it.
    layer = two_host_layer("test-hosts")
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


def two_host_layer(prefix: str, **options: Any) -> FleetRedisChannelLayer:
    url = urlsplit(settings.REDIS_URL)
    db = int(url.path.strip("/") or 0)
    hosts = [
        {"address": urlunsplit(url._replace(path=f"/{n}")), "socket_timeout": None}
        for n in (db, (db + 1) % 16)
    ]
    return FleetRedisChannelLayer(
        hosts=hosts, prefix=f"{prefix}-{uuid.uuid4().hex[:8]}", capacity=1000, **options
    )


def test_a_direct_send_to_a_process_channel_goes_to_the_host_its_receiver_reads() -> None:
    # channels_redis hashes the whole name "specific.X!Y" to send and "specific.X!" to
    # receive (django/channels#1492): with two hosts, about half of the direct sends (the
    # link's replace message) went where nobody reads them.
    layer = two_host_layer("test-send")

    async def scenario() -> None:
        channels = [await layer.new_channel() for _ in range(40)]
        # The whole names spread over both hosts: the old hashing would have split them.
        assert {layer.consistent_hash(c) for c in channels} == {0, 1}
        for n, channel in enumerate(channels):
            await layer.send(channel, {"type": "x.y", "n": n})
        # All on the one host the process part of the names hashes to, none on the other.
        key = layer.prefix + layer.non_local_name(channels[0])
        reader = layer.consistent_hash(layer.non_local_name(channels[0]))
        counts = [await layer.connection(i).zcard(key) for i in (0, 1)]
        assert counts[reader] == 40 and counts[1 - reader] == 0
        got = [(await asyncio.wait_for(layer.receive(c), 10))["n"] for c in channels]
        assert got == list(range(40))
        await layer.flush()

    async_to_sync(scenario)()


def _count_writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write to a Redis socket (one per round trip: a pipeline is written at once)."""
    writes: list[bytes] = []
    original = Connection.send_packed_command

    async def counted(self: Connection, command: Any, check_health: bool = True) -> None:
        writes.append(command)
        await original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counted)
    return writes


def test_a_join_is_one_round_trip_a_group_send_two_and_a_direct_send_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A handshake joins its cabinet's group and every command is a group_send (channels_redis
    # makes two and four round trips for them).
    layer = FleetRedisChannelLayer(
        hosts=[{"address": settings.REDIS_URL, "socket_timeout": None}],
        prefix=f"test-trips-{uuid.uuid4().hex[:8]}",
    )

    async def scenario() -> list[int]:
        await layer.connection(0).ping()  # the connection is made (and greeted) beforehand
        writes = _count_writes(monkeypatch)
        channel = await layer.new_channel()
        trips = []
        for call in (
            layer.group_add("cabinet.1", channel),
            layer.group_send("cabinet.1", {"type": "x.y", "n": 1}),
            layer.send(channel, {"type": "x.y", "n": 2}),
        ):
            before = len(writes)
            await call
            trips.append(len(writes) - before)
        monkeypatch.undo()
        got = [(await asyncio.wait_for(layer.receive(channel), 10))["n"] for _ in range(2)]
        assert got == [1, 2]
        await layer.flush()
        return trips

    assert async_to_sync(scenario)() == [1, 2, 1]


def test_expired_messages_and_members_are_dropped_and_a_full_channel_refuses(caplog) -> None:  # type: ignore[no-untyped-def]
    layer = FleetRedisChannelLayer(
        hosts=[{"address": settings.REDIS_URL, "socket_timeout": None}],
        prefix=f"test-expiry-{uuid.uuid4().hex[:8]}",
        capacity=2,
        expiry=60,
        group_expiry=600,
    )

    async def scenario() -> None:
        redis = layer.connection(0)
        channel = await layer.new_channel()
        key = layer.prefix + layer.non_local_name(channel)
        # A channel filled to capacity with messages older than the expiry takes a new one
        # (they are dropped first; left in place, they would not even deserialise).
        await redis.zadd(key, {b"stale-1": 1.0, b"stale-2": 2.0})
        await layer.send(channel, {"type": "x.y", "n": 1})
        assert await redis.zcard(key) == 1
        await layer.send(channel, {"type": "x.y", "n": 2})
        # Full of fresh messages: a direct send raises, a group send drops it and logs.
        with pytest.raises(ChannelFull):
            await layer.send(channel, {"type": "x.y", "n": 3})
        await layer.group_add("cabinet.2", channel)
        with caplog.at_level(logging.INFO, logger="cabinets.channel_layer"):
            await layer.group_send("cabinet.2", {"type": "x.y", "n": 4})
        assert "1 of 1 channels over capacity in group cabinet.2" in caplog.text
        got = [(await asyncio.wait_for(layer.receive(channel), 10))["n"] for _ in range(2)]
        assert got == [1, 2]
        # A member that joined longer ago than the group expiry is dropped by the next send.
        group_key = layer._group_key("cabinet.2")
        await redis.zadd(group_key, {"specific.gone!x": 1.0})
        await layer.group_send("cabinet.2", {"type": "x.y", "n": 5})
        members = {m.decode() for m in await redis.zrange(group_key, 0, -1)}
        assert members == {channel}
        assert (await asyncio.wait_for(layer.receive(channel), 10))["n"] == 5
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
