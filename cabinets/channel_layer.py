"""The Channels layer for a fleet: RedisChannelLayer with a pool that waits when busy, fewer
round trips on the link's hot paths, and direct sends routed to the host their receiver reads.

redis-py 8's ConnectionPool raises `MaxConnectionsError` once `max_connections` are in use.
In a reconnect storm every handshake does a `group_send` and a `group_add`, so thousands of
handshakes at once exhaust the pool and fail with HTTP 500, which makes more cabinets retry
(../shared/CHANNELS-NOTES.md: 1,901 of 5,000 failed). A BlockingConnectionPool queues them
instead: 5,000 of 5,000 connected in 4.7 s.

Round trips (channels_redis 4.3 awaits each command on its own): every handshake joins its
cabinet's group (`group_add`: two, here one) and every command is pushed to it
(`group_send`: four, here two, the group read and one script per host). The messages, their
serialisation and what is kept are channels_redis's own; only the commands are batched.

Several hosts: channels_redis's `send` picks the host of a process-specific channel
("specific.X!Y") by hashing the whole name, while its `receive` and `group_send` hash the
process part ("specific.X!"), so with two or more hosts about half of the direct sends were
written where nobody reads them (django/channels#1492, channels_redis PR #220, still open).
The link's "newest connection replaces the older" message is such a send; here it goes to
the host the receiving process reads.

Host options besides redis-py's (`socket_timeout` etc., see config/settings/base.py):
`max_connections` (default 100) and `pool_timeout`, the seconds a caller waits for a free
connection before redis-py raises (default 30; None waits for ever).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels_redis.core import RedisChannelLayer
from redis import asyncio as aioredis

logger = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS = 100
DEFAULT_POOL_TIMEOUT_S = 30.0

# For each channel key: drop its expired messages, then add the message unless the channel is
# at capacity (channels_redis's send and group_send, in one script). KEYS: the channel keys;
# ARGV: their messages, their capacities, the expiry cutoff, now, the expiry in seconds.
# Returns how many channels were at capacity.
_ENQUEUE = """
local n = #KEYS
local cutoff, now, expiry = ARGV[2 * n + 1], ARGV[2 * n + 2], ARGV[2 * n + 3]
local full = 0
for i = 1, n do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, cutoff)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
        redis.call('ZADD', KEYS[i], now, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        full = full + 1
    end
end
return full
"""


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

    async def _enqueue(
        self, index: int, keys: list[str], messages: list[bytes], capacities: list[int]
    ) -> int:
        now = time.time()
        full: int = await self.connection(index).eval(
            _ENQUEUE,
            len(keys),
            *keys,
            *messages,
            *capacities,
            int(now) - int(self.expiry),
            now,
            int(self.expiry),
        )
        return full

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """As channels_redis's, in one round trip, on the host `receive` reads."""
        assert isinstance(message, dict), "message is not a dict"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        assert "__asgi_channel__" not in message
        if "!" in channel:
            message = {**message, "__asgi_channel__": channel}
            name = self.non_local_name(channel)
            index = self.consistent_hash(name)
        else:
            name = channel
            index = next(self._send_index_generator)
        capacity = self.get_capacity(channel)
        if await self._enqueue(index, [self.prefix + name], [self.serialize(message)], [capacity]):
            raise ChannelFull()

    async def group_add(self, group: str, channel: str) -> None:
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        key = self._group_key(group)
        async with self.connection(self.consistent_hash(group)).pipeline(transaction=False) as pipe:
            pipe.zadd(key, {channel: time.time()})
            pipe.expire(key, self.group_expiry)
            await pipe.execute()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """As channels_redis's: members past the group expiry are dropped, a channel at
        capacity loses this message (logged), nothing is raised."""
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        async with self.connection(self.consistent_hash(group)).pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
            pipe.zrange(key, 0, -1)
            _, members = await pipe.execute()
        channels = [member.decode("utf8") for member in members]
        by_host, messages, capacities = self._map_channel_keys_to_connection(channels, message)
        for index, keys in by_host.items():
            full = await self._enqueue(
                index, keys, [messages[k] for k in keys], [capacities[k] for k in keys]
            )
            if full:
                logger.info(
                    "%s of %s channels over capacity in group %s", full, len(channels), group
                )
