"""What a command's outcome does to its rollout target: at once for a recorded result,
rejection or unlock expiry (`rollout_command_finished`, called by cabinets.services.commands),
and in bulk on every tick of the driver for receipts, expiries and anything the first path
missed."""

from __future__ import annotations

from django.utils import timezone

from cabinets.models import (
    COMMAND_OPEN_STATUSES,
    COMMAND_TO_TARGET,
    ROLLOUT_KIND_VERSION_FIELD,
    Cabinet,
    CabinetCommand,
    Rollout,
    RolloutTarget,
    RolloutTargetState,
)
from cabinets.rollouts.transitions import target_sources


def rollout_command_finished(*, command: CabinetCommand) -> None:
    """Runs inside the transaction that recorded the result: the target moves with it."""
    to_state = COMMAND_TO_TARGET.get(command.status)
    if to_state is None:
        return
    RolloutTarget.objects.filter(command_id=command.pk, state__in=target_sources(to_state)).update(
        state=to_state, updated_at=timezone.now()
    )


def rollout_targets_reconcile(rollout: Rollout) -> None:
    """Fold command statuses into targets in bulk: receipts (not reported one by one),
    expiries (bulk) and anything the per-command path missed. One UPDATE per command status."""
    now = timezone.now()
    in_flight = RolloutTarget.objects.filter(
        rollout=rollout, state__in=(RolloutTargetState.SENT, RolloutTargetState.RECEIVED)
    )
    for command_status, to_state in COMMAND_TO_TARGET.items():
        in_flight.filter(command__status=command_status, state__in=target_sources(to_state)).update(
            state=to_state, updated_at=now
        )
    # A command still open past its expiry will never run (the cabinet refuses it too).
    in_flight.filter(
        command__status__in=COMMAND_OPEN_STATUSES, command__expires_at__lte=now
    ).update(state=RolloutTargetState.TIMED_OUT, updated_at=now)
    # The cabinet reported success: it runs the version now (telemetry will say so too).
    version_field = ROLLOUT_KIND_VERSION_FIELD[rollout.kind]
    Cabinet.objects.filter(
        rollout_targets__rollout=rollout,
        rollout_targets__state=RolloutTargetState.SUCCEEDED,
    ).exclude(**{version_field: rollout.version}).update(**{version_field: rollout.version})
