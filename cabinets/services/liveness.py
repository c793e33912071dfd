"""Who is online and what cabinets report in their heartbeats: liveness lives in Redis
(cabinets.presence) and is folded into the database by a periodic task; telemetry is written
only when it changed (the consumer coalesces)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cabinets.models import Cabinet, Compartment, ConnectionState, DoorState
from cabinets.presence import presence_drop, presence_snapshot


def cabinet_telemetry_record(*, cabinet_id: int, telemetry: dict[str, Any]) -> None:
    """Store the latest telemetry and the door states it reports."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "telemetry": telemetry,
        "telemetry_at": now,
        "last_seen_at": now,
        "connection_state": ConnectionState.ONLINE,
        "firmware_version": str(telemetry.get("firmware_version", ""))[:32],
        "config_version": str(telemetry.get("config_version", ""))[:32],
    }
    with transaction.atomic():
        Cabinet.objects.filter(pk=cabinet_id).update(**fields)
        doors = telemetry.get("doors") or {}
        for door_state in (DoorState.OPEN, DoorState.CLOSED, DoorState.FAULT):
            labels = [label for label, state in doors.items() if state == door_state]
            if labels:
                Compartment.objects.filter(cabinet_id=cabinet_id, label__in=labels).exclude(
                    door_state=door_state
                ).update(door_state=door_state, door_changed_at=now)


def _stale(stored_at: datetime | None, state: str, *, seen_at: float, resolution: float) -> bool:
    return (
        state != ConnectionState.ONLINE
        or stored_at is None
        or seen_at - stored_at.timestamp() >= resolution
    )


def cabinets_alive(seen: dict[int, float], *, now: float) -> dict[int, float]:
    """The liveness rule: of the presence set's entries (cabinet id -> last heartbeat), the
    cabinets heard from within CABINET_OFFLINE_AFTER_S; any other cabinet is offline."""
    cutoff = now - settings.CABINET_OFFLINE_AFTER_S
    return {pk: ts for pk, ts in seen.items() if ts >= cutoff}


def cabinets_liveness_sync(*, now: float | None = None) -> dict[str, int]:
    """Fold the Redis presence set into the database: refresh last_seen_at of live cabinets,
    mark the silent ones offline."""
    now = now or time.time()
    seen = presence_snapshot()
    alive = cabinets_alive(seen, now=now)
    stale = [pk for pk in seen if pk not in alive]

    updated = 0
    alive_ids = sorted(alive)
    # Rewriting every live cabinet's last_seen_at each tick is most of the fleet's database
    # writes (10,000 cabinets every 15 s: 667 rows a second); a row whose stored time is
    # within CABINET_LAST_SEEN_WRITE_S of the heartbeat, and already online, is left alone.
    # Presence in Redis stays exact; the stored time is that coarse.
    resolution = settings.CABINET_LAST_SEEN_WRITE_S
    for start in range(0, len(alive_ids), 1000):
        chunk = alive_ids[start : start + 1000]
        stored = {
            pk: (seen, state)
            for pk, seen, state in Cabinet.objects.filter(pk__in=chunk).values_list(
                "pk", "last_seen_at", "connection_state"
            )
        }
        cabinets = [
            Cabinet(
                pk=pk,
                last_seen_at=datetime.fromtimestamp(alive[pk], tz=UTC),
                connection_state=ConnectionState.ONLINE,
            )
            for pk in chunk
            if pk in stored and _stale(*stored[pk], seen_at=alive[pk], resolution=resolution)
        ]
        if cabinets:
            updated += Cabinet.objects.bulk_update(cabinets, ["last_seen_at", "connection_state"])

    # Online in the database but silent in Redis (or gone from it): offline.
    offline = (
        Cabinet.objects.filter(connection_state=ConnectionState.ONLINE)
        .exclude(pk__in=alive_ids)
        .update(connection_state=ConnectionState.OFFLINE)
    )
    presence_drop(stale)
    return {"alive": updated, "marked_offline": offline}
