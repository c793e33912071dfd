"""How an admin operation runs: one service call per selected object, refusals reported
without stopping, and the intermediate page of a bulk action (count, warning, reason).

The one operations mechanism: an OperationTable over a transition map (cabinets.models)
generates the bulk actions and the change page's buttons; where an operation is offered and
why it is refused come from the map, never from a second list of states here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from django import forms
from django.contrib import admin, messages
from django.db.models import Choices, Count, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    # django-stubs is a development dependency: for the type checker only.
    from django_stubs_ext import StrOrPromise

from cabinets.admin.forms import ConfirmReasonForm, OperationForm
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
from core.admin import StaffScopedAdmin
from core.admin_confirm import ConfirmForm, bulk_confirmation_page
from core.errors import ApplicationError
from core.transitions import check_transition


class StaffOperationsAdmin(StaffScopedAdmin):
    """The acting staff user, for every service call an admin page makes. With an
    `operation_table`, the changelist filtered on one state offers only the table's actions
    the map allows from it, and `operation_context` names the change page's list of the
    operations offered in the object's state."""

    operation_table: OperationTable | None = None
    operation_context = ""

    def _actor(self, request: HttpRequest) -> Actor:
        return Actor.staff(request.user)  # type: ignore[arg-type]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        table = self.operation_table
        if obj is not None and table is not None and self.operation_context:
            context[self.operation_context] = table.available(getattr(obj, table.state_field))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        table = self.operation_table
        state = request.GET.get(f"{table.state_field}__exact", "") if table else ""
        if table is None or state not in table.transitions:
            return actions
        refused = {op.name + table.suffix for op in table.operations} - {
            op.name + table.suffix for op in table.available(state)
        }
        return {name: action for name, action in actions.items() if name not in refused}


def run_each(request: HttpRequest, objects: Any, operation: Callable[[Any], Any], done: str) -> int:
    """Apply one service call per selected object; report refusals without stopping."""
    ok = 0
    for obj in objects:
        try:
            operation(obj)
        except ApplicationError as exc:
            messages.error(request, f"{obj}: {exc.message}")
        else:
            ok += 1
    if ok:
        messages.success(request, f"{done}: {ok}.")
    return ok


# --- One operations mechanism: tables over the transition maps -------------------------------

ReasonAsk = Literal["", "optional", "required"]


@dataclass(frozen=True)
class Operation:
    """One operator move to `to_state`. Where it is offered comes from the transition map:
    every state the map allows the move from (narrowed by `from_states` when two operations
    reach one state, e.g. Activate and Back from maintenance)."""

    name: str  # the change page's operation key; the bulk action is `name + table.suffix`
    label: StrOrPromise  # the bulk action's description
    to_state: str
    from_states: frozenset[str] = frozenset()
    # States in which it acts without moving the object (Retry failed in a running rollout).
    also_while: frozenset[str] = frozenset()
    # Destructive: a confirmation page stating the count; `title` may use {count}.
    warning: StrOrPromise = ""
    title: StrOrPromise = ""
    reason: ReasonAsk = ""  # asked on the confirmation page ("required": the form is a reason)
    default_reason: str = ""  # recorded when no reason is asked
    records_reason: bool = True  # the service takes a reason
    button: StrOrPromise = ""  # the change page's shorter label, if any


@dataclass(frozen=True)
class OperationTable:
    kind: str  # "cabinet", as the map's refusals read
    transitions: Mapping[str, frozenset[str]]
    state_field: str
    choices: type[Choices]
    operations: tuple[Operation, ...]
    # Calls the service for one object: (operation, object, actor, reason).
    run: Callable[[Operation, Any, Actor, str], Any]
    suffix: str = ""
    # Moves the map allows that no operator makes (the rollout driver completing a rollout).
    automatic: frozenset[tuple[str, str]] = frozenset()

    def __getitem__(self, name: str) -> Operation:
        return next(op for op in self.operations if op.name == name)

    def __contains__(self, name: object) -> bool:
        return any(op.name == name for op in self.operations)

    def sources(self, op: Operation) -> frozenset[str]:
        allowed = frozenset(s for s, targets in self.transitions.items() if op.to_state in targets)
        return allowed & op.from_states if op.from_states else allowed

    def moves(self, op: Operation) -> frozenset[tuple[str, str]]:
        return frozenset((s, op.to_state) for s in self.sources(op))

    def offered_in(self, op: Operation) -> frozenset[str]:
        return self.sources(op) | op.also_while

    def available(self, state: str) -> list[Operation]:
        return [op for op in self.operations if state in self.offered_in(op)]

    def refusal(self, op: Operation, state: str) -> str:
        """Why `op` is not offered in `state`, in the map's words."""
        try:
            check_transition(self.transitions, kind=self.kind, current=state, target=op.to_state)
        except ApplicationError as exc:
            return exc.message
        shown = ", ".join(f"'{self.choices(s).label}'" for s in sorted(self.offered_in(op)))
        return gettext("“%(operation)s” is for a %(kind)s in %(states)s, not '%(state)s'.") % {
            "operation": op.label,
            "kind": gettext(self.kind),
            "states": shown,
            "state": self.choices(state).label,
        }

    def form_class(self, op: Operation) -> type[forms.Form] | None:
        if op.reason == "required":
            return OperationForm
        if op.reason == "optional":
            return ConfirmReasonForm
        return ConfirmForm if op.warning else None

    def actions(self) -> list[Callable[..., Any]]:
        """The changelist's bulk actions, one per operation."""
        return [self._action(op) for op in self.operations]

    def _action(self, op: Operation) -> Callable[..., Any]:
        table = self

        def action(
            model_admin: StaffOperationsAdmin, request: HttpRequest, queryset: QuerySet[Any]
        ) -> Any:
            return table.bulk(model_admin, request, queryset, op)

        action.__name__ = op.name + self.suffix
        return admin.action(description=op.label, permissions=["change"])(action)

    def bulk(
        self,
        model_admin: StaffOperationsAdmin,
        request: HttpRequest,
        queryset: QuerySet[Any],
        op: Operation,
    ) -> Any:
        offered = self.offered_in(op)
        eligible = queryset.filter(**{f"{self.state_field}__in": offered}).order_by("pk")
        refused = (
            queryset.exclude(**{f"{self.state_field}__in": offered})
            .order_by()
            .values_list(self.state_field)
            .annotate(n=Count("pk"))
        )
        count = eligible.count()
        form_class = self.form_class(op)
        reason = op.default_reason
        if count and form_class is not None:
            asked = "confirm" in request.POST or "reason" in request.POST
            form = form_class(request.POST if asked else None)
            if not form.is_valid():
                return bulk_confirmation_page(
                    request,
                    model_admin,
                    eligible,
                    action=op.name + self.suffix,
                    title=(str(op.title) or f"{op.label}: {{count}}?").format(count=count),
                    form=form,
                    warning=str(op.warning),
                )
            reason = form.cleaned_data.get("reason") or reason
        for state, n in refused:
            messages.error(
                request,
                gettext("Left as they are: %(count)d. %(why)s")
                % {"count": n, "why": self.refusal(op, state)},
            )
        if count:
            actor = model_admin._actor(request)
            run_each(request, eligible, lambda obj: self.run(op, obj, actor, reason), str(op.label))
        return None


# --- The tables ------------------------------------------------------------------------------


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
            also_while=frozenset({RolloutState.RUNNING, RolloutState.PAUSED}),
            records_reason=False,
        ),
    ),
)
