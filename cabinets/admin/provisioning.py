"""Credentials and the CSV import: rotating (over the link), revoking at once, issuing to
install by hand, and the page that shows new credentials once. Needs
`cabinets.manage_credentials` and a session verified with the staff second factor."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from cabinets.admin.forms import CabinetImportForm
from cabinets.models import (
    Cabinet,
    CabinetCredential,
    CabinetImport,
)
from cabinets.provisioning import (
    REQUIRED_COLUMNS,
    cabinets_import,
    credentials_csv,
    import_errors_csv,
)
from cabinets.services.credentials import (
    IssuedCredential,
    RotationStarted,
    cabinet_credential_revoke,
    cabinet_credentials_rotate,
)
from core.admin import ReadOnlyEventAdmin
from core.admin_confirm import OperationForm, bulk_confirmed, confirmation_form
from core.admin_operations import StaffOperationsAdmin
from core.errors import ApplicationError
from core.shown_once import shown_once_redirect, shown_once_take
from core.staff_otp import otp_refused, otp_required


def overlap_text() -> str:
    hours = settings.CABINET_CREDENTIAL_OVERLAP_S / 3600
    return f"{hours:g} h"


def rotation_message(started: list[RotationStarted]) -> str:
    delivered = sum(1 for s in started if s.old_valid_until is not None)
    text = gettext(
        "Rotation started for %(count)s cabinet(s): each new credential is delivered over "
        "the link; the old one stays valid until the cabinet uses the new one, at most "
        "%(overlap)s."
    ) % {"count": delivered, "overlap": overlap_text()}
    if delivered < len(started):
        text += " " + gettext(
            "%(count)s had no credential to rotate: issue one to install by hand."
        ) % {"count": len(started) - delivered}
    return text


def credentials_redirect(request: HttpRequest, issued: list[IssuedCredential]) -> HttpResponse:
    """Post-redirect-get for operations that issue credentials (core/shown_once.py)."""
    return shown_once_redirect(
        request, url_name="admin:cabinets_credentials_once", payload=[asdict(c) for c in issued]
    )


def credentials_response(
    request: HttpRequest, admin_site: admin.AdminSite, stash_id: str
) -> HttpResponse:
    """The one response that shows credentials. Never cached; gone from the session once shown."""
    issued = [IssuedCredential(**c) for c in shown_once_take(request, stash_id) or []]
    response = TemplateResponse(
        request,
        "admin/cabinets/credentials_once.html",
        {
            **admin_site.each_context(request),
            "title": gettext("New cabinet credentials")
            if issued
            else gettext("Credentials already shown"),
            "credentials": issued,
            "csv_href": "data:text/csv;charset=utf-8," + quote(credentials_csv(issued)),
        },
    )
    response["Cache-Control"] = "no-store"
    return response


class CabinetProvisioningAdmin(StaffOperationsAdmin):
    """The credential actions and the import of CabinetAdmin."""

    def has_manage_credentials_permission(self, request: HttpRequest) -> bool:
        return self.has_staff_permission(request, "cabinets.manage_credentials")

    @admin.action(
        description=_("Rotate credentials (delivered over the link; asks to confirm)"),
        permissions=["manage_credentials"],
    )
    @otp_required
    def rotate_credentials(self, request: HttpRequest, queryset: QuerySet[Cabinet]) -> Any:
        page = bulk_confirmed(
            request,
            self,
            queryset,
            action="rotate_credentials",
            title=gettext("Rotate the credentials of %(count)s cabinet(s)?")
            % {"count": queryset.count()},
            warning=gettext(
                "Each cabinet receives its new credential over its link and stays online; "
                "the old credential is accepted until the cabinet connects with the new one, "
                "at most %(overlap)s. A stolen key: use “Revoke now” instead."
            )
            % {"overlap": overlap_text()},
        )
        if page is not None:
            return page
        started = cabinet_credentials_rotate(
            cabinets=list(queryset.order_by("pk")), actor=self._actor(request)
        )
        messages.success(request, rotation_message(started))
        return None

    @admin.action(
        description=_("Revoke now (a stolen key: the cabinet goes offline)"),
        permissions=["manage_credentials"],
    )
    @otp_required
    def revoke_credentials(self, request: HttpRequest, queryset: QuerySet[Cabinet]) -> Any:
        form = confirmation_form(request, OperationForm)
        page = bulk_confirmed(
            request,
            self,
            queryset,
            action="revoke_credentials",
            title=gettext("Revoke the credentials of these cabinets"),
            warning=gettext("The cabinets go offline at once and stay offline until rotated."),
            form=form,
        )
        if page is not None:
            return page
        actor, reason = self._actor(request), form.cleaned_data["reason"]
        revoked = sum(
            cabinet_credential_revoke(cabinet=c, actor=actor, reason=reason)
            for c in queryset.order_by("pk")
        )
        messages.success(request, gettext("Credentials revoked: %(count)d.") % {"count": revoked})
        return None

    def credentials_view(self, request: HttpRequest, stash_id: str) -> HttpResponse:
        if not self.has_manage_credentials_permission(request):
            raise PermissionDenied
        return credentials_response(request, self.admin_site, stash_id)

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not (
            self.has_add_permission(request)
            and self.has_change_permission(request)
            and self.has_manage_credentials_permission(request)
        ):
            raise PermissionDenied
        # The import issues each new cabinet's credential.
        if otp_refused(request):
            return HttpResponseRedirect(reverse("admin:cabinets_cabinet_changelist"))
        form = CabinetImportForm(request.POST or None, request.FILES or None)
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": gettext("Import cabinets from CSV"),
            "form": form,
            "opts": self.model._meta,
            "columns": ", ".join(REQUIRED_COLUMNS),
        }
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                result = cabinets_import(
                    text=upload.read().decode("utf-8-sig"),
                    actor=self._actor(request),
                    filename=upload.name,
                    dry_run=form.cleaned_data["dry_run"],
                )
            except UnicodeDecodeError:
                form.add_error("file", "The file is not UTF-8 text.")
            except ApplicationError as exc:
                form.add_error("file", exc.message)
            else:
                errors_csv = import_errors_csv(result.errors)
                context.update(
                    result=result,
                    errors_shown=result.errors[:500],
                    errors_href="data:text/csv;charset=utf-8," + quote(errors_csv),
                    credentials_href="data:text/csv;charset=utf-8,"
                    + quote(credentials_csv(result.credentials)),
                )
        response = TemplateResponse(request, "admin/cabinets/import.html", context)
        # The result page carries new credentials: never cached.
        response["Cache-Control"] = "no-store"
        return response


@admin.register(CabinetCredential)
class CabinetCredentialAdmin(ReadOnlyEventAdmin):
    """The secret's hash is never shown; issuing and revoking are cabinet operations."""

    list_display = (
        "key_id",
        "cabinet",
        "created_at",
        "revoked_at",
        "revoked_reason",
        "actor_label",
    )
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("=cabinet__serial", "=key_id")
    list_select_related = ("cabinet",)
    show_full_result_count = False
    fields = (
        "key_id",
        "cabinet",
        "created_at",
        "revoked_at",
        "revoked_reason",
        "actor_kind",
        "actor_label",
    )
    readonly_fields = fields


@admin.register(CabinetImport)
class CabinetImportAdmin(ReadOnlyEventAdmin):
    list_display = (
        "at",
        "filename",
        "rows",
        "created",
        "updated",
        "unchanged",
        "errors",
        "actor_label",
    )
    show_full_result_count = False
