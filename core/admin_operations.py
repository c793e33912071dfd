"""The one operations mechanism of the admin: an `OperationTable` over a transition map
generates a changelist's bulk actions and a change page's operations. Where an operation is
offered and why it is refused come from the map (or, for an operation that acts in place,
from the states its service allows), never from a second list of states in an admin.

Each app keeps its tables beside its admin: cabinets/admin/operations.py (cabinet lifecycle,
compartment service, rollout control), courier/admin.py (parcels: Cancel, Extend)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from django import forms
from django.contrib import admin, messages
from django.db.models import Choices, Count, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext

if TYPE_CHECKING:
    # django-stubs is a development dependency: for the type checker only.
    from django_stubs_ext import StrOrPromise

from core.actors import Actor
from core.admin import StaffScopedAdmin
from core.admin_confirm import (
    ConfirmForm,
    ConfirmReasonForm,
    OperationForm,
    bulk_confirmed,
    confirmation_form,
)
from core.errors import ApplicationError
from core.transitions import check_transition


class StaffOperationsAdmin(StaffScopedAdmin):
    """The acting staff user, for every service call an admin page makes. With an
    `operation_table`, the changelist filtered on one state offers only the table's actions
    offered in it, and `operation_context` names the change page's list of the operations
    offered in the object's state."""

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


ReasonAsk = Literal["", "optional", "required"]


@dataclass(frozen=True)
class Operation:
    """One operator operation. A move to `to_state` is offered in every state the transition
    map allows that move from (narrowed by `from_states` when two operations reach one state,
    e.g. Activate and Back from maintenance). An operation without `to_state` acts in place
    (Extend a parcel's deadline): offered in `acts_in_place` only, it never moves the object."""

    name: str  # the change page's operation key; the bulk action is `name + table.suffix`
    label: StrOrPromise  # the bulk action's description
    to_state: str = ""
    from_states: frozenset[str] = frozenset()
    # States in which it acts without moving the object: the states its service allows
    # (Extend in a ready parcel; Retry failed in a running or paused rollout).
    acts_in_place: frozenset[str] = frozenset()
    # Destructive: a confirmation page stating the count; `title` may use {count}.
    warning: StrOrPromise = ""
    title: StrOrPromise = ""
    reason: ReasonAsk = ""  # asked on the confirmation page ("required": the form is a reason)
    default_reason: str = ""  # recorded when no reason is asked
    records_reason: bool = True  # the service takes a reason
    button: StrOrPromise = ""  # the change page's shorter label, if any


@dataclass(frozen=True)
class OperationTable:
    kind: str  # "cabinet", as the map's refusals read (a model's verbose name)
    transitions: Mapping[str, frozenset[str]]
    state_field: str
    choices: type[Choices]
    operations: tuple[Operation, ...]
    # Calls the service for one object: (operation, object, actor, reason).
    run: Callable[[Operation, Any, Actor, str], Any]
    suffix: str = ""
    # Moves the map allows that no operator makes (the rollout driver completing a rollout;
    # a parcel's deposit and pickup at the cabinet).
    automatic: frozenset[tuple[str, str]] = frozenset()

    def __getitem__(self, name: str) -> Operation:
        return next(op for op in self.operations if op.name == name)

    def __contains__(self, name: object) -> bool:
        return any(op.name == name for op in self.operations)

    def sources(self, op: Operation) -> frozenset[str]:
        """The states the map allows `op`'s move from (none for an operation in place)."""
        if not op.to_state:
            return frozenset()
        allowed = frozenset(s for s, targets in self.transitions.items() if op.to_state in targets)
        return allowed & op.from_states if op.from_states else allowed

    def moves(self, op: Operation) -> frozenset[tuple[str, str]]:
        return frozenset((s, op.to_state) for s in self.sources(op))

    def offered_in(self, op: Operation) -> frozenset[str]:
        return self.sources(op) | op.acts_in_place

    def available(self, state: str) -> list[Operation]:
        return [op for op in self.operations if state in self.offered_in(op)]

    def refusal(self, op: Operation, state: str) -> str:
        """Why `op` is not offered in `state`: in the map's words when the map refuses the
        move, else (another operation's move, an operation in place) where it is offered."""
        if op.to_state:
            try:
                check_transition(
                    self.transitions, kind=self.kind, current=state, target=op.to_state
                )
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
        """The bulk action: the selection in states `op` is offered in is asked about (the
        count, a reason if any) and then run; the rest is left as it is, one message per state."""
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
            form = confirmation_form(request, form_class)
            page = bulk_confirmed(
                request,
                model_admin,
                eligible,
                action=op.name + self.suffix,
                title=(str(op.title) or f"{op.label}: {{count}}?").format(count=count),
                warning=str(op.warning),
                form=form,
            )
            if page is not None:
                return page
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
