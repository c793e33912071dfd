"""The live rollout page: per-wave counts derived from the commands' states
(cabinets.rollouts.selectors.rollout_progress), polled as JSON every few seconds; the targets
Start would reach, shown before it; and a confirmation page before Abort that says what the
abort cancels. Mixed into RolloutAdmin; scoped like the change page (carrier staff see no
rollouts: a 404 in the one error shape)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from cabinets.admin_doors import json_error
from cabinets.models import Rollout, RolloutState, RolloutTargetState
from cabinets.rollouts.selectors import WaveProgress, rollout_progress, rollout_target_preview

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
            if rollout.state == RolloutState.DRAFT
            else None,
            "live": {
                "url": reverse("admin:cabinets_rollout_progress", args=[rollout.pk]),
                "poll_ms": ROLLOUT_POLL_MS,
                "state": rollout.state,
            },
        }

    def progress_view(self, request: HttpRequest, object_id: int) -> JsonResponse:
        rollout = self.get_queryset(request).filter(pk=object_id).first()
        if rollout is None or not self.has_view_permission(request, rollout):
            return json_error("not_found", "No such rollout.", 404)
        progress = rollout_progress(rollout)
        return JsonResponse(
            {
                "as_of": timezone.now().isoformat(),
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
                "title": f"Abort {rollout}?",
                "original": rollout,
                "opts": self.model._meta,
                "unsent": counts[RolloutTargetState.SCHEDULED]
                if rollout.planned_at
                else rollout_target_preview(rollout).total,
                "in_flight": counts[RolloutTargetState.SENT] + counts[RolloutTargetState.RECEIVED],
                "reason": request.POST.get("reason", "")[:255],
            },
        )
