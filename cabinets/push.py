"""The one way to push something to a connected cabinet: through the channel layer, after
the transaction that decided it has committed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def cabinet_group(cabinet_id: int) -> str:
    return f"cabinet.{cabinet_id}"


def push_now(cabinet_id: int, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:  # pragma: no cover - a misconfiguration, surfaced loudly
        raise RuntimeError("CHANNEL_LAYERS is not configured")
    try:
        async_to_sync(layer.group_send)(cabinet_group(cabinet_id), message)
    except Exception:
        # The database row is the truth: an undelivered command is re-sent on reconnect.
        logger.exception("push to cabinet %s failed", cabinet_id)


def push_after_commit(cabinet_id: int, message: dict[str, Any]) -> None:
    # A cabinet must never act on a decision that was rolled back.
    transaction.on_commit(lambda: push_now(cabinet_id, message))


def push_many_after_commit(messages: Mapping[int, dict[str, Any]]) -> None:
    """A message to each of many cabinets (cabinet id -> its message), concurrently (a bulk
    rotation of thousands)."""
    ids = list(messages)

    async def send_all() -> None:
        layer = get_channel_layer()
        assert layer is not None
        results = await asyncio.gather(
            *(layer.group_send(cabinet_group(pk), messages[pk]) for pk in ids),
            return_exceptions=True,
        )
        failed = sum(isinstance(result, Exception) for result in results)
        if failed:
            logger.error("push to %d of %d cabinets failed", failed, len(ids))

    if ids:
        transaction.on_commit(lambda: async_to_sync(send_all)())
