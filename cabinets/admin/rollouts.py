"""Rollouts: creating one (a draft), its operations and the audit.

The live rollout page: per-wave counts derived from the commands' states
(cabinets.rollouts.selectors.rollout_progress), polled as JSON every few seconds; the targets
Start would reach, shown before it; and a confirmation page before Abort that says what the
abort cancels. Mixed into RolloutAdmin; scoped like the change page (carrier staff see no
rollouts: a 404 in the one error shape)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from cabinets.admin.doors import json_error
from cabinets.admin.forms import RolloutCreateForm
from cabinets.admin.operations import ROLLOUT_CONTROL
from cabinets.models import (
    Rollout,
    RolloutEvent,
    RolloutTarget,
    RolloutTargetState,
)
from cabinets.rollouts.selectors import WaveProgress, rollout_progress, rollout_target_preview
from cabinets.rollouts.services import (
    rollout_create,
)
from core.admin import ReadOnlyEventAdmin
from core.admin_confirm import confirmation_form
from core.admin_operations import StaffOperationsAdmin
from core.errors import ApplicationError
from core.timefmt import admin_time, time_column

ROLLOUT_POLL_MS = 3000


def progress_totals(progress: list[WaveProgress]) -> dict[str, Any]:
    counts = {state: sum(p.counts[state] for p in progress) for state in RolloutTargetState.values}
    total = sum(counts.values())
    delivered = sum(p.counts.delivered for p in progress)
    return {
        "counts": counts,
        "total": total,
        "done_pct": round(100.0 * delivered / total, 1) if total else 0.0,
    }


class RolloutLiveAdmin(admin.ModelAdmin):
    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:object_id>/progress.json",
                self.admin_site.admin_view(require_GET(self.progress_view)),
                name="cabinets_rollout_progress",
            ),
            *super().get_urls(),
        ]

    def rollout_live_context(self, rollout: Rollout) -> dict[str, Any]:
        progress = rollout_progress(rollout)
        return {
            "progress": progress,
            "totals": progress_totals(progress),
            "preview": rollout_target_preview(rollout)
            if rollout.state in ROLLOUT_CONTROL.offered_in(ROLLOUT_CONTROL["start"])
            else None,
            "live": {
                "url": reverse("admin:cabinets_rollout_progress", args=[rollout.pk]),
                "poll_ms": ROLLOUT_POLL_MS,
                "state": rollout.state,
                # The page's script writes these; it holds no text of its own.
                "texts": {
                    "as_of": gettext("as of %(time)s"),
                    "not_updated": gettext("not updated: %(error)s"),
                },
            },
        }

    def progress_view(self, request: HttpRequest, object_id: int) -> JsonResponse:
        rollout = self.get_queryset(request).filter(pk=object_id).first()
        if rollout is None or not self.has_view_permission(request, rollout):
            return json_error("not_found", gettext("No such rollout."), 404)
        progress = rollout_progress(rollout)
        now = timezone.now()
        return JsonResponse(
            {
                "as_of": now.isoformat(),
                # As the page shows it (core.timefmt's policy): the script writes it as is.
                "as_of_shown": admin_time(now),
                "state": rollout.state,
                "state_label": rollout.get_state_display(),
                "state_reason": rollout.state_reason,
                "planned": rollout.planned_at is not None,
                "waves": [p.as_dict() for p in progress],
                "totals": progress_totals(progress),
            }
        )

    def abort_confirmation(self, request: HttpRequest, rollout: Rollout) -> TemplateResponse:
        """Abort cancels every cabinet not yet sent the version: say how many, ask again."""
        totals = progress_totals(rollout_progress(rollout))
        counts = totals["counts"]
        return TemplateResponse(
            request,
            "admin/cabinets/rollout/abort_confirm.html",
            {
                **self.admin_site.each_context(request),
                "title": gettext("Abort %(rollout)s?") % {"rollout": rollout},
                "original": rollout,
                "opts": self.model._meta,
                "unsent": counts[RolloutTargetState.SCHEDULED]
                if rollout.planned_at
                else rollout_target_preview(rollout).total,
                "in_flight": counts[RolloutTargetState.SENT] + counts[RolloutTargetState.RECEIVED],
                "reason": request.POST.get("reason", "")[:255],
            },
        )


@admin.register(Rollout)
class RolloutAdmin(RolloutLiveAdmin, StaffOperationsAdmin):
    list_display = (
        "name",
        "kind",
        "version",
        "state",
        "progress",
        "target_summary",
        "created_at",
        "actor_label",
    )
    list_filter = ("state", "kind")
    search_fields = ("name", "version")
    list_select_related = ("target_tag",)
    show_full_result_count = False
    # Generated from the one table over ROLLOUT_TRANSITIONS.
    actions = ROLLOUT_CONTROL.actions()
    operation_table = ROLLOUT_CONTROL
    change_form_template = "admin/cabinets/rollout/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Rollout]:
        def count(*states: str) -> Any:
            return Coalesce(
                Subquery(
                    RolloutTarget.objects.filter(rollout=OuterRef("pk"), state__in=states)
                    .order_by()
                    .values("rollout")
                    .annotate(n=Count("id"))
                    .values("n"),
                    output_field=IntegerField(),
                ),
                0,
            )

        return (
            super()
            .get_queryset(request)
            .annotate(
                n_total=Coalesce(
                    Subquery(
                        RolloutTarget.objects.filter(rollout=OuterRef("pk"))
                        .order_by()
                        .values("rollout")
                        .annotate(n=Count("id"))
                        .values("n"),
                        output_field=IntegerField(),
                    ),
                    0,
                ),
                n_done=count("succeeded", "skipped"),
                n_errors=count("failed", "timed_out"),
            )
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in Rollout._meta.fields if f.name != "id"]

    @admin.display(description=_("progress"))
    def progress(self, obj: Any) -> str:
        if not obj.n_total:
            return gettext("not planned")
        return gettext("%(done)s/%(total)s done, %(errors)s errors") % {
            "done": obj.n_done,
            "total": obj.n_total,
            "errors": obj.n_errors,
        }

    @admin.display(description=_("targets"))
    def target_summary(self, obj: Rollout) -> str:
        parts = [
            f"region={obj.target_region}" if obj.target_region else "",
            f"tag={obj.target_tag}" if obj.target_tag_id else "",
            f"model={obj.target_hardware_model}" if obj.target_hardware_model else "",
        ]
        return ", ".join(p for p in parts if p) or gettext("all cabinets")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> Any:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = RolloutCreateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                rollout = rollout_create(**form.cleaned_data, actor=self._actor(request))
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(
                    request,
                    gettext("Rollout %(rollout)s created as a draft; start it here.")
                    % {"rollout": rollout},
                )
                return HttpResponseRedirect(
                    reverse("admin:cabinets_rollout_change", args=[rollout.pk])
                )
        return TemplateResponse(
            request,
            "admin/cabinets/rollout/create.html",
            {
                **self.admin_site.each_context(request),
                "title": gettext("New rollout"),
                "form": form,
                "opts": self.model._meta,
            },
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        rollout = self.get_object(request, object_id)
        extra: dict[str, Any] = dict(extra_context or {})
        if rollout is not None:
            extra.update(
                **self.rollout_live_context(rollout),
                events=RolloutEvent.objects.filter(rollout=rollout).order_by("-at", "-id")[:50],
                operations=[
                    (op.name, op.button or op.label, op.records_reason, bool(op.warning))
                    for op in ROLLOUT_CONTROL.available(rollout.state)
                ],
                show_save=False,
                show_save_and_continue=False,
                show_save_and_add_another=False,
                show_delete=False,
            )
        return super().change_view(request, object_id, form_url, extra)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:object_id>/operation/<str:operation>/",
                self.admin_site.admin_view(self.operation_view),
                name="cabinets_rollout_operation",
            ),
            *super().get_urls(),
        ]

    def operation_view(self, request: HttpRequest, object_id: int, operation: str) -> Any:
        rollout = get_object_or_404(self.get_queryset(request), pk=object_id)
        if (
            request.method != "POST"
            or operation not in ROLLOUT_CONTROL
            or not self.has_change_permission(request, rollout)
        ):
            raise PermissionDenied
        op = ROLLOUT_CONTROL[operation]
        if op.warning and not confirmation_form(request).is_valid():
            return self.abort_confirmation(request, rollout)
        label = op.button or op.label
        try:
            ROLLOUT_CONTROL.run(
                op, rollout, self._actor(request), request.POST.get("reason", "")[:255]
            )
        except ApplicationError as exc:
            messages.error(request, f"{label}: {exc.message}")
        else:
            messages.success(request, gettext("%(operation)s: done.") % {"operation": label})
        return HttpResponseRedirect(reverse("admin:cabinets_rollout_change", args=[rollout.pk]))


@admin.register(RolloutEvent)
class RolloutEventAdmin(ReadOnlyEventAdmin):
    at_shown = time_column("at", _("at"))
    list_display = (
        "at_shown",
        "rollout",
        "action",
        "from_state",
        "to_state",
        "wave_number",
        "actor_kind",
        "actor_label",
        "detail",
    )
    list_filter = ("action", "actor_kind")
    list_select_related = ("rollout",)
    show_full_result_count = False
