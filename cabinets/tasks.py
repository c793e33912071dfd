from __future__ import annotations

from celery import shared_task

from cabinets.services import cabinets_liveness_sync, commands_expire


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def cabinets_liveness_sync_task() -> dict[str, int]:
    return cabinets_liveness_sync()


@shared_task(ignore_result=True, soft_time_limit=30, time_limit=60)
def commands_expire_task() -> int:
    return commands_expire()
