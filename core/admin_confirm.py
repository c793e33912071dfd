"""The confirmation page of a destructive bulk admin action: what it does, to how many, and
a reason when one is asked. Every such page goes through `bulk_confirmed` (the operations
tables of core/admin_operations.py, the credential actions, the identity admin's face-data
actions), and `confirmation_form` is the one decision of whether a post confirms."""

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


class OperationForm(forms.Form):
    """A required reason: the form of an operation the service records a reason for."""

    reason = forms.CharField(max_length=255, widget=forms.TextInput(attrs={"size": 60}))


class ConfirmReasonForm(ConfirmForm):
    """A confirmation with an optional reason (the service records it when given)."""

    reason = forms.CharField(
        max_length=255, required=False, widget=forms.TextInput(attrs={"size": 60})
    )


def confirmation_form(
    request: HttpRequest, form_class: type[forms.Form] = ConfirmForm
) -> forms.Form:
    """The confirmation page's form, bound only to the post that page sends: it carries the
    form's fields, the changelist's first post of the action none of them. Valid means
    confirmed."""
    answered = any(name in request.POST for name in form_class.base_fields)
    return form_class(request.POST if answered else None)


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
        "admin/action_confirmation.html",
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
    warning: str = "",
    form: forms.Form | None = None,
) -> TemplateResponse | None:
    """None once the staff user confirmed this action on its page; otherwise that page.
    `form` (from `confirmation_form`) when the page asks more than a confirmation, a reason:
    read its cleaned data once this returns None. The action runs only on the confirming
    post, so a reload of the result runs nothing again."""
    form = form if form is not None else confirmation_form(request)
    if form.is_valid():
        return None
    return bulk_confirmation_page(
        request, model_admin, queryset, action=action, title=title, form=form, warning=warning
    )
