"""The one admin mechanism every ModelAdmin uses: who sees which rows (core/staff.py), which
columns can never be filtered on, and that history is append-only.

A test walks `admin.site` and fails on any ModelAdmin without `StaffScopedAdmin`; the admins
of installed packages (users, groups, TOTP devices, login attempts) are wrapped below."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest

from core.staff import staff_audience
from core.staff_otp import StaffAuthenticationForm

# Any lookup path with one of these in a part's name is refused, at any depth
# (`courier__pin_hash__regex`, `identity__user__password__startswith`).
SECRET_NAME_PARTS = ("hash", "secret", "password", "embedding", "encrypted", "token", "signing")
# Whole field names that hold secrets or raw biometrics without saying so.
SECRET_NAMES = frozenset({"key", "data", "portrait", "session_data"})


def figure(value: float | None, places: int = 3) -> str:
    """A face distance, threshold or margin as people read it: 0.373, not 0.37310608403807977."""
    return "—" if value is None else f"{value:.{places}f}"


def lookup_is_secret(lookup: str) -> bool:
    return any(
        part in SECRET_NAMES or any(word in part for word in SECRET_NAME_PARTS)
        for part in lookup.split(LOOKUP_SEP)
    )


def _multivalued(model: type[Model], path: str) -> bool:
    opts = model._meta
    for name in path.split(LOOKUP_SEP):
        field = opts.pk if name == "pk" else opts.get_field(name)
        if field.many_to_many or field.one_to_many:
            return True
        if field.related_model is None:
            break
        opts = field.related_model._meta  # type: ignore[union-attr]
    return False


class StaffScopedAdmin(admin.ModelAdmin):
    """Default-deny for carrier staff, secret columns never filterable.

    `carrier_scope` is the ORM path from the model to its carrier ("carrier",
    "parcel__carrier"); None means the model is not a carrier's: carrier staff see none of it.
    Carrier staff only look (no add, change, delete or actions); platform staff get what
    their model permissions allow; any other staff user sees nothing."""

    carrier_scope: str | None = None

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs = super().get_queryset(request)
        audience = staff_audience(request)
        if audience.platform:
            return qs
        if audience.carrier_id is None or self.carrier_scope is None:
            return qs.none()
        own = {self.carrier_scope: audience.carrier_id}
        if _multivalued(self.model, self.carrier_scope):
            return qs.filter(pk__in=self.model._base_manager.filter(**own).values("pk"))
        return qs.filter(**own)

    def _audience_may_look(self, request: HttpRequest) -> bool:
        audience = staff_audience(request)
        return audience.platform or (
            audience.carrier_id is not None and self.carrier_scope is not None
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._audience_may_look(request) and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if not (self._audience_may_look(request) and super().has_view_permission(request, obj)):
            return False
        if obj is None or staff_audience(request).platform:
            return True
        return self.get_queryset(request).filter(pk=obj.pk).exists()

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return staff_audience(request).platform and super().has_add_permission(request, *args)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return staff_audience(request).platform and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return staff_audience(request).platform and super().has_delete_permission(request, obj)

    def has_staff_permission(self, request: HttpRequest, perm: str) -> bool:
        """For custom action permissions: platform staff holding `app.codename`."""
        return staff_audience(request).platform and request.user.has_perm(perm)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        if not staff_audience(request).platform:
            return {}
        # An action that does not say which permission it needs is not offered at all.
        return {
            name: action
            for name, action in super().get_actions(request).items()
            if action is not None and getattr(action[0], "allowed_permissions", None)
        }

    def get_list_filter(self, request: HttpRequest) -> Any:
        # A carrier filter would list every carrier's name.
        filters = super().get_list_filter(request)
        if staff_audience(request).platform:
            return filters
        return tuple(f for f in filters if f != self.carrier_scope)

    def lookup_allowed(  # type: ignore[override]
        self, lookup: str, value: str, request: HttpRequest | None = None
    ) -> bool:
        # False makes the changelist answer 400 (DisallowedModelAdminLookup), not data.
        if lookup_is_secret(lookup):
            return False
        return super().lookup_allowed(lookup, value, request)


class ReadOnlyEventAdmin(StaffScopedAdmin):
    """Event rows are append-only: nobody edits or deletes history in the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def scope_registered_admins(site: admin.AdminSite) -> None:
    """Give the admins registered so far (Django's and installed packages') the one mechanism.
    They are platform-only: none of them has a carrier."""
    for model, model_admin in list(site._registry.items()):
        if isinstance(model_admin, StaffScopedAdmin):
            continue
        scoped = type(
            f"Scoped{type(model_admin).__name__}", (StaffScopedAdmin, type(model_admin)), {}
        )
        site.unregister(model)
        site.register(model, scoped)


# Admin modules load in INSTALLED_APPS order: auth, axes and django_otp come before core.
scope_registered_admins(admin.site)
admin.site.login_form = StaffAuthenticationForm
admin.site.login_template = "admin/staff_login.html"
