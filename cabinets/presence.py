"""Which cabinets are alive, kept in one Redis sorted set (cabinet id -> last heartbeat).

Heartbeats from 10,000 cabinets every 30 s would be 333 database writes a second; a ZADD
costs Redis next to nothing, and a periodic task folds the set into the database in bulk."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

import redis
import redis.asyncio as aioredis
from django.conf import settings

logger = logging.getLogger(__name__)
PRESENCE_KEY = "cabinets:presence"

_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)


def _async_client() -> aioredis.Redis:
    # One client per event loop: a client is bound to the loop that created it.
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        # A pool that waits for a free connection: redis-py 8's default pool raises "Too
        # many connections" when thousands of cabinets connect at once (CHANNELS-NOTES #3).
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=50, timeout=30, socket_timeout=5
        )
        client = aioredis.Redis(connection_pool=pool)
        _async_clients[loop] = client
    return client


async def presence_touch(cabinet_id: int, at: float | None = None) -> None:
    """Best effort: a heartbeat whose write fails (Redis away, or its pool exhausted in a
    reconnect storm) is logged, not raised. Raised, it dropped the link, and 1,000 cabinets
    reconnecting at once after a restart fed the storm that exhausted the pool (2,720 links
    dropped this way in one run); the next heartbeat writes again, and the liveness task only
    marks a cabinet offline after several missed ones."""
    try:
        await _async_client().zadd(PRESENCE_KEY, {str(cabinet_id): at or time.time()})
    except (redis.RedisError, OSError) as exc:
        logger.warning("presence of cabinet %s not written: %s", cabinet_id, exc)


def _sync_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)


def presence_snapshot() -> dict[int, float]:
    client = _sync_client()
    try:
        entries: list[tuple[bytes, float]] = client.zrange(  # type: ignore[assignment]
            PRESENCE_KEY, 0, -1, withscores=True
        )
        return {int(member): float(score) for member, score in entries}
    finally:
        client.close()


def presence_drop(cabinet_ids: list[int]) -> None:
    if not cabinet_ids:
        return
    client = _sync_client()
    try:
        client.zrem(PRESENCE_KEY, *[str(pk) for pk in cabinet_ids])
    finally:
        client.close()


def _link_key(cabinet_id: int) -> str:
    return f"cabinets:link:{cabinet_id}"


async def presence_claim(cabinet_id: int, channel_name: str) -> str | None:
    """Mark the cabinet present and make `channel_name` its current connection, in one round
    trip; return the connection it replaces (a group_send would cost four round trips per
    handshake, which a reconnect storm of thousands cannot afford)."""
    async with _async_client().pipeline(transaction=True) as pipe:
        pipe.set(_link_key(cabinet_id), channel_name, get=True, ex=7 * 24 * 3600)
        pipe.zadd(PRESENCE_KEY, {str(cabinet_id): time.time()})
        previous, _ = await pipe.execute()
    return previous.decode() if previous else None


# Delete the link key only if it still names this connection: a newer one may own it.
_RELEASE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)


async def presence_release(
    cabinet_id: int, channel_name: str, *, reconnecting: bool = False
) -> None:
    """This connection is gone: the cabinet is offline at the next liveness tick. Unless it
    is `reconnecting` at once (closed so that it switches to the credential it just stored):
    then its last heartbeat stays, and a planned reconnect is no offline moment; a cabinet
    that does not come back ages out at the liveness cutoff like any silent one."""
    client = _async_client()
    await client.eval(_RELEASE, 1, _link_key(cabinet_id), channel_name)  # type: ignore[misc]
    if not reconnecting:
        await client.zrem(PRESENCE_KEY, str(cabinet_id))
