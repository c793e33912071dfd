"""The cabinets' operations tables: the cabinet lifecycle, the compartments' service state
and rollout control, each over its transition map (cabinets.models), with the service each
operation calls. The mechanism that turns a table into bulk actions, change-page operations
and refusals is core/admin_operations.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.translation import gettext_lazy as _

from cabinets.models import (
    CABINET_TRANSITIONS,
    ROLLOUT_TRANSITIONS,
    SERVICE_TRANSITIONS,
    Cabinet,
    CabinetState,
    Compartment,
    Rollout,
    RolloutState,
    ServiceState,
)
from cabinets.rollouts.services import (
    rollout_abort,
    rollout_pause,
    rollout_resume,
    rollout_retry_failed,
    rollout_start,
)
from cabinets.services.lifecycle import cabinet_transition, compartment_service_set
from core.actors import Actor
from core.admin_operations import Operation, OperationTable


def _cabinet_move(op: Operation, cabinet: Cabinet, actor: Actor, reason: str) -> Any:
    return cabinet_transition(
        cabinet_id=cabinet.pk, to_state=op.to_state, actor=actor, reason=reason
    )


def _compartment_move(op: Operation, compartment: Compartment, actor: Actor, reason: str) -> Any:
    return compartment_service_set(
        compartment_id=compartment.pk, to_state=op.to_state, actor=actor, reason=reason
    )


ROLLOUT_SERVICES: dict[str, Callable[..., Any]] = {
    "start": rollout_start,
    "pause": rollout_pause,
    "resume": rollout_resume,
    "abort": rollout_abort,
    "retry_failed": rollout_retry_failed,
}


def _rollout_run(op: Operation, rollout: Rollout, actor: Actor, reason: str) -> Any:
    kwargs: dict[str, Any] = {"reason": reason} if op.records_reason else {}
    return ROLLOUT_SERVICES[op.name](rollout_id=rollout.pk, actor=actor, **kwargs)


CABINET_LIFECYCLE = OperationTable(
    kind="cabinet",
    transitions=CABINET_TRANSITIONS,
    state_field="state",
    choices=CabinetState,
    run=_cabinet_move,
    operations=(
        Operation(
            "activate",
            _("Activate (provisioned cabinets go live)"),
            CabinetState.ACTIVE,
            from_states=frozenset({CabinetState.PROVISIONING}),
            default_reason="activated in the admin",
        ),
        Operation(
            "maintenance_on",
            _("Put into maintenance (asks for a reason)"),
            CabinetState.MAINTENANCE,
            warning=_(
                "Cabinets in maintenance take no new parcels; parcels inside stay collectable."
            ),
            title=_("Put {count} cabinet(s) into maintenance?"),
            reason="required",
        ),
        Operation(
            "maintenance_off",
            _("Back from maintenance"),
            CabinetState.ACTIVE,
            from_states=frozenset({CabinetState.MAINTENANCE}),
            default_reason="maintenance ended in the admin",
        ),
        Operation(
            "retire",
            _("Retire (asks for a reason; cannot be undone)"),
            CabinetState.RETIRED,
            warning=_(
                "A retired cabinet is closed for good: its link is cut and no operation "
                "brings it back."
            ),
            title=_("Retire {count} cabinet(s)?"),
            reason="required",
        ),
    ),
)

COMPARTMENT_SERVICE = OperationTable(
    kind="compartment",
    transitions=SERVICE_TRANSITIONS,
    state_field="service_state",
    choices=ServiceState,
    run=_compartment_move,
    operations=(
        Operation(
            "out_of_service",
            _("Take out of service"),
            ServiceState.OUT_OF_SERVICE,
            default_reason="admin action",
        ),
        Operation(
            "back_in_service",
            _("Return to service"),
            ServiceState.IN_SERVICE,
            default_reason="admin action",
        ),
    ),
)

ROLLOUT_CONTROL = OperationTable(
    kind="rollout",
    transitions=ROLLOUT_TRANSITIONS,
    state_field="state",
    choices=RolloutState,
    run=_rollout_run,
    suffix="_selected",
    # The driver completes a running rollout when its last wave passes.
    automatic=frozenset({(RolloutState.RUNNING, RolloutState.COMPLETED)}),
    operations=(
        Operation(
            "start",
            _("Start"),
            RolloutState.RUNNING,
            from_states=frozenset({RolloutState.DRAFT}),
            records_reason=False,
        ),
        Operation("pause", _("Pause"), RolloutState.PAUSED),
        Operation(
            "resume",
            _("Resume"),
            RolloutState.RUNNING,
            from_states=frozenset({RolloutState.PAUSED}),
            records_reason=False,
        ),
        Operation(
            "abort",
            _("Abort (asks to confirm)"),
            RolloutState.ABORTED,
            button=_("Abort"),
            warning=_(
                "Cabinets not yet sent the version are cancelled; an aborted "
                "rollout cannot be resumed."
            ),
            title=_("Abort {count} rollout(s)?"),
            reason="optional",
        ),
        Operation(
            "retry_failed",
            _("Retry failed"),
            RolloutState.RUNNING,
            button=_("Retry failed"),
            # Reopens a completed rollout; a running or paused one stays as it is.
            from_states=frozenset({RolloutState.COMPLETED}),
            acts_in_place=frozenset({RolloutState.RUNNING, RolloutState.PAUSED}),
            records_reason=False,
        ),
    ),
)
