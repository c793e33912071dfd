"""A rollout's state changes, shared by the operator actions and the driver: the lock, the
checked move with its audit row, a wave passing, and the stop of everything not yet sent."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from cabinets.models import (
    ROLLOUT_TARGET_TRANSITIONS,
    ROLLOUT_TRANSITIONS,
    CabinetCommand,
    CommandStatus,
    Rollout,
    RolloutEvent,
    RolloutState,
    RolloutTarget,
    RolloutTargetState,
    RolloutWave,
    RolloutWaveState,
)
from cabinets.rollouts.selectors import WaveCounts
from core.actors import Actor
from core.transitions import check_transition


def target_sources(to_state: str) -> list[str]:
    """The target states from which the transition map allows `to_state`: every bulk update
    of targets filters on them, so the map holds for updates of thousands of rows too."""
    return [s for s, targets in ROLLOUT_TARGET_TRANSITIONS.items() if to_state in targets]


def rollout_lock(rollout_id: int) -> Rollout:
    # Locked: the beat tick, the worker after an operator action and two operators all change
    # one rollout; each waits for the other and then sees its outcome.
    return Rollout.objects.select_for_update().get(pk=rollout_id)


def rollout_event_record(
    rollout: Rollout,
    *,
    action: str,
    actor: Actor,
    from_state: str = "",
    to_state: str = "",
    wave: RolloutWave | None = None,
    detail: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    RolloutEvent.objects.create(
        rollout=rollout,
        action=action,
        from_state=from_state,
        to_state=to_state,
        wave_number=wave.number if wave else None,
        detail=detail[:255],
        data=data or {},
        **actor.event_fields(),
    )


def rollout_move(
    rollout: Rollout,
    *,
    to_state: str,
    action: str,
    actor: Actor,
    detail: str = "",
    wave: RolloutWave | None = None,
) -> None:
    """Change a locked rollout's state, checked against the map, with its audit row."""
    from_state = rollout.state
    check_transition(ROLLOUT_TRANSITIONS, kind="rollout", current=from_state, target=to_state)
    rollout.state = to_state
    rollout.state_reason = detail[:255]
    fields = ["state", "state_reason"]
    now = timezone.now()
    if to_state == RolloutState.RUNNING and rollout.started_at is None:
        rollout.started_at = now
        fields.append("started_at")
    if to_state in (RolloutState.COMPLETED, RolloutState.ABORTED):
        rollout.finished_at = now
        fields.append("finished_at")
    elif rollout.finished_at is not None:
        rollout.finished_at = None
        fields.append("finished_at")
    rollout.save(update_fields=fields)
    rollout_event_record(
        rollout,
        action=action,
        actor=actor,
        from_state=from_state,
        to_state=to_state,
        wave=wave,
        detail=detail,
    )


def wave_pass(
    rollout: Rollout, wave: RolloutWave, *, actor: Actor, action: str, counts: WaveCounts
) -> None:
    wave.state = RolloutWaveState.PASSED
    wave.finished_at = timezone.now()
    wave.save(update_fields=["state", "finished_at"])
    rollout_event_record(rollout, action=action, actor=actor, wave=wave, data=counts.as_dict())


def rollout_stop_unsent(rollout: Rollout) -> None:
    """Abort: nothing more goes out. Scheduled targets are cancelled, and so are commands the
    cabinet has not picked up yet (it would otherwise get them when it reconnects)."""
    now = timezone.now()
    RolloutTarget.objects.filter(rollout=rollout, state=RolloutTargetState.SCHEDULED).update(
        state=RolloutTargetState.CANCELLED, updated_at=now
    )
    # Commands before targets, the order the result path takes (command row, then target).
    # Compare-and-set on PENDING: a command the link has already sent is left to finish.
    unsent = CabinetCommand.objects.filter(
        rollout_target__rollout=rollout, status=CommandStatus.PENDING
    )
    cancelled_ids = list(unsent.values_list("pk", flat=True))
    CabinetCommand.objects.filter(pk__in=cancelled_ids, status=CommandStatus.PENDING).update(
        status=CommandStatus.EXPIRED, completed_at=now, result={"cancelled": "rollout aborted"}
    )
    RolloutTarget.objects.filter(
        rollout=rollout,
        command_id__in=cancelled_ids,
        state__in=target_sources(RolloutTargetState.CANCELLED),
    ).update(state=RolloutTargetState.CANCELLED, updated_at=now)
    RolloutWave.objects.filter(
        rollout=rollout, state__in=(RolloutWaveState.PENDING, RolloutWaveState.RUNNING)
    ).update(state=RolloutWaveState.STOPPED, finished_at=now)
