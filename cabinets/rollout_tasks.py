"""Celery tasks of the rollout driver (cabinets/rollouts.py). Loaded by CabinetsConfig.ready,
which also connects the driver's command_finished receiver in every process."""

from __future__ import annotations

import logging

from celery import shared_task

from cabinets.rollouts import AdvanceOutcome, rollout_advance, rollouts_running_ids

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=180)
def rollout_advance_task(rollout_id: int) -> str:
    outcome: AdvanceOutcome = rollout_advance(rollout_id=rollout_id)
    return outcome.state


@shared_task(ignore_result=True, soft_time_limit=240, time_limit=300)
def rollouts_advance_task() -> int:
    """The beat tick: one step for each running rollout, each in its own transaction, so one
    failing rollout does not hold back the others."""
    advanced = 0
    for rollout_id in rollouts_running_ids():
        try:
            rollout_advance(rollout_id=rollout_id)
            advanced += 1
        except Exception:
            logger.exception("rollout %s could not advance", rollout_id)
    return advanced
