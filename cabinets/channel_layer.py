"""The Channels layer for a fleet: RedisChannelLayer whose connection pool waits when busy.

redis-py 8's ConnectionPool raises `MaxConnectionsError` once `max_connections` are in use.
In a reconnect storm every handshake does a `group_send` and a `group_add`, so thousands of
handshakes at once exhaust the pool and fail with HTTP 500, which makes more cabinets retry
(../shared/CHANNELS-NOTES.md: 1,901 of 5,000 failed). A BlockingConnectionPool queues them
instead: 5,000 of 5,000 connected in 4.7 s.

Host options besides redis-py's (`socket_timeout` etc., see config/settings/base.py):
`max_connections` (default 100) and `pool_timeout`, the seconds a caller waits for a free
connection before redis-py raises (default 30; None waits for ever).
"""

from __future__ import annotations

from typing import Any

from channels_redis.core import RedisChannelLayer
from redis import asyncio as aioredis

DEFAULT_MAX_CONNECTIONS = 100
DEFAULT_POOL_TIMEOUT_S = 30.0


class FleetRedisChannelLayer(RedisChannelLayer):  # type: ignore[misc]
    def create_pool(self, index: int) -> aioredis.ConnectionPool:
        host: dict[str, Any] = dict(self.hosts[index])
        if "address" not in host:
            # Sentinel or host/port dicts keep channels_redis's own pool.
            return super().create_pool(index)
        address = host.pop("address")
        host.setdefault("max_connections", DEFAULT_MAX_CONNECTIONS)
        # BlockingConnectionPool names its wait `timeout`; `pool_timeout` avoids confusing it
        # with the socket timeouts next to it.
        host["timeout"] = host.pop("pool_timeout", DEFAULT_POOL_TIMEOUT_S)
        return aioredis.BlockingConnectionPool.from_url(address, **host)
