"""The rollout driver: one idempotent step of a running rollout (plan the targets once, fold in
command outcomes, judge the current wave against its thresholds, send the next batch), run by
Celery (cabinets.rollouts.tasks) on every beat tick and after an operator action."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from cabinets.models import (
    ROLLOUT_KIND_ACTION,
    ROLLOUT_KIND_VERSION_FIELD,
    Cabinet,
    Rollout,
    RolloutKind,
    RolloutState,
    RolloutTarget,
    RolloutTargetState,
    RolloutWave,
    RolloutWaveState,
)
from cabinets.rollouts.plans import wave_sizes
from cabinets.rollouts.results import rollout_targets_reconcile
from cabinets.rollouts.selectors import (
    WaveCounts,
    rollout_current_wave,
    rollout_target_queryset,
    rollouts_running_ids,
    wave_counts,
)
from cabinets.rollouts.transitions import (
    rollout_event_record,
    rollout_lock,
    rollout_move,
    rollout_stop_unsent,
    wave_pass,
)
from cabinets.services.commands import command_issue
from core.actors import Actor

logger = logging.getLogger(__name__)


def _plan(rollout: Rollout) -> None:
    """Assign every target cabinet to a wave: pilots first, then a fixed shuffle (so a wave is
    a sample of the whole fleet, not of the lowest ids). Done once, in the worker."""
    cabinet_ids = list(rollout_target_queryset(rollout).values_list("pk", flat=True))
    pilots = set(
        Cabinet.objects.filter(
            pk__in=rollout_target_queryset(rollout).values("pk"),
            tags__name=settings.ROLLOUT_PILOT_TAG,
        ).values_list("pk", flat=True)
    )

    def order(pk: int) -> tuple[bool, bytes]:
        return (pk not in pilots, hashlib.sha256(f"{rollout.pk}:{pk}".encode()).digest())

    cabinet_ids.sort(key=order)
    waves = list(RolloutWave.objects.filter(rollout=rollout).order_by("number"))
    sizes = wave_sizes(list(rollout.wave_plan), len(cabinet_ids))
    targets: list[RolloutTarget] = []
    start = 0
    for wave, size in zip(waves, sizes, strict=True):
        wave.size = size
        targets.extend(
            RolloutTarget(rollout=rollout, wave=wave, cabinet_id=pk)
            for pk in cabinet_ids[start : start + size]
        )
        start += size
    RolloutWave.objects.bulk_update(waves, ["size"])
    RolloutTarget.objects.bulk_create(targets, batch_size=2000)
    rollout.planned_at = timezone.now()
    rollout.save(update_fields=["planned_at"])
    rollout_event_record(
        rollout,
        action="planned",
        actor=Actor.system("rollout driver"),
        data={"targets": len(cabinet_ids), "waves": sizes},
    )


def _send(rollout: Rollout, *, budget: int) -> int:
    """Issue commands for scheduled targets of started waves, at most `budget` of them.
    Cabinets already at the version are skipped without a command."""
    if budget <= 0:
        return 0
    now = timezone.now()
    started = Q(wave__state__in=(RolloutWaveState.RUNNING, RolloutWaveState.PASSED))
    scheduled = RolloutTarget.objects.filter(
        started, rollout=rollout, state=RolloutTargetState.SCHEDULED
    )
    version_field = ROLLOUT_KIND_VERSION_FIELD[rollout.kind]
    scheduled.filter(**{f"cabinet__{version_field}": rollout.version}).update(
        state=RolloutTargetState.SKIPPED, updated_at=now
    )
    batch = list(scheduled.select_related("cabinet").order_by("wave__number", "id")[:budget])
    payload = dict(rollout.payload)
    if rollout.kind == RolloutKind.CONFIG:
        payload["config_version"] = int(rollout.version)
    else:
        payload["version"] = rollout.version
    actor = Actor.system(f"rollout {rollout.pk}")
    for target in batch:
        command = command_issue(
            cabinet=target.cabinet,
            action=ROLLOUT_KIND_ACTION[rollout.kind],
            actor=actor,
            payload=payload,
            reason=f"rollout {rollout.pk}: {rollout.name}"[:255],
            ttl_s=rollout.command_ttl_s,
        )
        target.state = RolloutTargetState.SENT
        target.command = command
        target.attempts += 1
    RolloutTarget.objects.bulk_update(batch, ["state", "command", "attempts", "updated_at"])
    return len(batch)


@dataclass
class AdvanceOutcome:
    state: str
    sent: int = 0
    wave: int | None = None
    decisions: list[str] = field(default_factory=list)


def _halt(rollout: Rollout, wave: RolloutWave, counts: WaveCounts) -> tuple[str, str, str] | None:
    """What the thresholds make of a wave, as (state, action, reason): abort on too many
    errors once the sample is reached, pause on a finished wave under the success threshold;
    None while the wave may still pass."""
    if counts.sample_reached(rollout) and counts.error_pct() > rollout.error_threshold_pct:
        return (
            RolloutState.ABORTED,
            "auto_aborted",
            f"wave {wave.number}: {counts.error_pct():.0f}% errors "
            f"> {rollout.error_threshold_pct}% ({counts.errors}/{counts.finished})",
        )
    if counts.fell_short(rollout):
        return (
            RolloutState.PAUSED,
            "auto_paused",
            f"wave {wave.number}: {counts.success_pct():.0f}% succeeded "
            f"< {rollout.success_threshold_pct}%",
        )
    return None


def rollout_advance(*, rollout_id: int) -> AdvanceOutcome:
    """One step of a running rollout; idempotent, so a duplicate or late tick does no harm."""
    driver = Actor.system("rollout driver")
    with transaction.atomic():
        rollout = rollout_lock(rollout_id)
        outcome = AdvanceOutcome(state=rollout.state)
        if rollout.state != RolloutState.RUNNING:
            return outcome
        if rollout.planned_at is None:
            _plan(rollout)
        rollout_targets_reconcile(rollout)
        # Waves are judged in order; a passing wave opens the next one in the same step.
        for _ in range(len(rollout.wave_plan) + 1):
            wave = rollout_current_wave(rollout)
            if wave is None:
                rollout_move(
                    rollout, to_state=RolloutState.COMPLETED, action="completed", actor=driver
                )
                outcome.decisions.append("completed")
                break
            outcome.wave = wave.number
            if wave.state == RolloutWaveState.PENDING:
                wave.state = RolloutWaveState.RUNNING
                wave.started_at = timezone.now()
                wave.save(update_fields=["state", "started_at"])
                rollout_event_record(rollout, action="wave_started", actor=driver, wave=wave)
                outcome.decisions.append(f"wave {wave.number} started")
                outcome.sent += _send(rollout, budget=settings.ROLLOUT_SEND_BATCH)
            counts = wave_counts(wave)
            halt = _halt(rollout, wave, counts)
            if halt is not None:
                to_state, action, detail = halt
                rollout_move(
                    rollout,
                    to_state=to_state,
                    action=action,
                    actor=driver,
                    detail=detail,
                    wave=wave,
                )
                if to_state == RolloutState.ABORTED:
                    rollout_stop_unsent(rollout)
                outcome.decisions.append(detail)
                break
            if counts.open:
                break
            wave_pass(rollout, wave, actor=driver, action="wave_passed", counts=counts)
            outcome.decisions.append(f"wave {wave.number} passed")
        if rollout.state == RolloutState.RUNNING:
            outcome.sent += _send(rollout, budget=settings.ROLLOUT_SEND_BATCH - outcome.sent)
        outcome.state = rollout.state
    if outcome.decisions:
        logger.info("rollout %s: %s", rollout_id, "; ".join(outcome.decisions))
    return outcome


def rollouts_advance() -> int:
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
