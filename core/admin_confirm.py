"""The confirmation page of a destructive bulk admin action: what it does, to how many, and
a reason when one is asked. The cabinets' operations table (cabinets/admin/operations.py)
and the courier and identity admins' destructive actions all go through `bulk_confirmed`,
so every such page states the count the same way."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse


class ConfirmForm(forms.Form):
    confirm = forms.BooleanField(widget=forms.HiddenInput, initial=True)


def bulk_confirmation_page(
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


def bulk_confirmed(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    queryset: QuerySet[Any],
    *,
    action: str,
    title: str,
    warning: str,
) -> TemplateResponse | None:
    """None once the staff user confirmed this action on its page; otherwise that page. The
    action runs only on the second post, so a reload of the result runs nothing again."""
    form = ConfirmForm(request.POST if "confirm" in request.POST else None)
    if form.is_valid():
        return None
    return bulk_confirmation_page(
        request, model_admin, queryset, action=action, title=title, form=form, warning=warning
    )
