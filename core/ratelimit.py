"""Fixed-window counters in Django's cache (Redis outside the tests), for throttles that must
hold across processes: phone login per client address, per number and for the platform.

A window is `window_s` long and starts at a multiple of it; each `hit` adds one and says
whether the count is still within `limit`. Counting and checking are one `incr`, so parallel
requests cannot each pass the last free slot.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache

from core.errors import RateLimited


@dataclass(frozen=True)
class Limit:
    """At most `limit` hits per `window_s` seconds for one `scope` and key."""

    scope: str
    limit: int
    window_s: int


def _cache_key(limit: Limit, key: str, now: float) -> str:
    window = int(now // limit.window_s)
    # Hashed: the keys are phone numbers and addresses, which do not belong in Redis as is.
    digest = hashlib.sha256(f"{limit.scope}:{key}".encode()).hexdigest()[:32]
    return f"rl:{limit.scope}:{window}:{digest}"


def hit(limit: Limit, key: str, *, now: float | None = None) -> bool:
    """Count one hit; True while the window's count is within the limit."""
    moment = time.time() if now is None else now
    cache_key = _cache_key(limit, key, moment)
    # add() creates the counter only if absent, with the window as its lifetime; incr()
    # then counts atomically (Redis INCR, or the local-memory cache's lock).
    cache.add(cache_key, 0, timeout=limit.window_s + 1)
    try:
        count = cache.incr(cache_key)
    except ValueError:
        # The counter expired between add() and incr(): this is the first hit of a window.
        cache.add(cache_key, 1, timeout=limit.window_s + 1)
        count = 1
    return count <= limit.limit


def throttle(checks: Iterable[tuple[Limit, str]], *, message: str) -> None:
    """Count a hit against every (limit, key); raise `RateLimited` if any is exceeded. All
    are counted, so trying again during a block keeps it in place."""
    checks = list(checks)
    results = [hit(limit, key) for limit, key in checks]
    if not all(results):
        # The same answer whichever limit refused: which one it was (the number's or the
        # address's) must not tell anything about the number.
        retry_after = max(limit.window_s for limit, _ in checks)
        raise RateLimited(message, details={"retry_after_s": retry_after})


def client_address(meta: Mapping[str, Any]) -> str:
    """The client's address (from `request.META`) as the server saw it. Behind a reverse
    proxy run uvicorn with `--proxy-headers --forwarded-allow-ips=<proxy>` so that this is
    the client, not the proxy; a header the client sets itself is never trusted here."""
    return str(meta.get("REMOTE_ADDR") or "unknown")
