"""Celery tasks of the rollout driver; registered by CabinetsConfig.ready (Celery's
autodiscovery finds `cabinets.tasks` only, not this subpackage)."""

from __future__ import annotations

from celery import shared_task


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=180)
def rollout_advance_task(rollout_id: int) -> str:
    from cabinets.rollouts.driver import rollout_advance

    return rollout_advance(rollout_id=rollout_id).state


@shared_task(ignore_result=True, soft_time_limit=240, time_limit=300)
def rollouts_advance_task() -> int:
    from cabinets.rollouts.driver import rollouts_advance

    return rollouts_advance()
