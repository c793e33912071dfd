"""How an admin operation runs: one service call per selected object, refusals reported
without stopping, and the intermediate page of a bulk action (count, warning, reason)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from core.actors import Actor
from core.admin import StaffScopedAdmin
from core.errors import ApplicationError


class StaffOperationsAdmin(StaffScopedAdmin):
    """The acting staff user, for every service call an admin page makes."""

    def _actor(self, request: HttpRequest) -> Actor:
        return Actor.staff(request.user)  # type: ignore[arg-type]


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


def selection_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    queryset: QuerySet[Any],
    *,
    action: str,
    title: str,
    form: forms.Form | None,
    warning: str = "",
) -> TemplateResponse:
    """The intermediate page of a bulk action: what it does, to how many, a reason if asked."""
    return TemplateResponse(
        request,
        "admin/cabinets/action_reason.html",
        {
            **model_admin.admin_site.each_context(request),
            "title": title,
            "warning": warning,
            "objects": queryset[:100],
            "count": queryset.count(),
            "form": form,
            "action": action,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "opts": model_admin.model._meta,
        },
    )
