"""Periodic link tasks. House rule for tasks and services, in every app: a service imports the
`*_task` it schedules at module level; a task imports its service inside its body."""

from __future__ import annotations

from celery import shared_task


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def cabinets_liveness_sync_task() -> dict[str, int]:
    from cabinets.services.liveness import cabinets_liveness_sync

    return cabinets_liveness_sync()


@shared_task(ignore_result=True, soft_time_limit=30, time_limit=60)
def commands_expire_task() -> int:
    from cabinets.services.commands import commands_expire

    return commands_expire()


@shared_task(ignore_result=True, soft_time_limit=30, time_limit=60)
def cabinet_credentials_overlap_expire_task() -> int:
    from cabinets.services.credentials import cabinet_credentials_overlap_expire

    return cabinet_credentials_overlap_expire()
