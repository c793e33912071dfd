from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from identity.models import BiometricConsent, FaceEnrollment, FaceTemplate, Identity


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    list_display = ("name", "phone", "real_name_verified_at", "created_at")
    search_fields = ("name", "phone", "email")
    list_filter = ("real_name_verified_at",)
    raw_id_fields = ("user",)
    # The ID-number hash is a secret-derived value; it is never shown.
    exclude = ("id_number_hash",)
    readonly_fields = ("real_name_verified_at", "created_at")


@admin.register(BiometricConsent)
class BiometricConsentAdmin(admin.ModelAdmin):
    list_display = ("identity", "status", "policy_version", "given_at", "withdrawn_at", "source")
    list_filter = ("status", "policy_version", "source")
    search_fields = ("identity__phone", "identity__name")
    list_select_related = ("identity",)
    readonly_fields = ("identity", "status", "policy_version", "given_at", "withdrawn_at", "source")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(FaceEnrollment)
class FaceEnrollmentAdmin(admin.ModelAdmin):
    list_display = ("identity", "status", "created_at", "updated_at")
    list_filter = ("status",)
    search_fields = ("identity__phone", "identity__name")
    list_select_related = ("identity",)
    readonly_fields = ("identity", "consent", "status", "created_at", "updated_at")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(FaceTemplate)
class FaceTemplateAdmin(admin.ModelAdmin):
    """Metadata only: the embedding is never displayed."""

    list_display = ("identity", "status", "model_name", "model_version", "created_at")
    list_filter = ("status", "model_name")
    search_fields = ("identity__phone",)
    list_select_related = ("identity",)
    fields = ("identity", "enrollment", "status", "model_name", "model_version", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
