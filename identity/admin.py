"""Admin: statuses and figures only. Face images, templates, ID numbers and login codes are
never displayed (nor filterable: core.admin refuses lookups on them); transitions go through
services as actions, each with its own permission. People belong to no carrier: carrier staff
see none of these models (StaffScopedAdmin without a carrier_scope)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from core.actors import Actor, shown_time
from core.admin import ReadOnlyEventAdmin, StaffScopedAdmin, figure
from core.admin_confirm import bulk_confirmed
from identity import services
from identity.models import (
    BiometricConsent,
    ConsentStatus,
    EnrollmentEvent,
    EnrollmentPhoto,
    EnrollmentStatus,
    FaceEnrollment,
    FaceTemplate,
    Identity,
    OneTimeCode,
    RealIdCheck,
)
from identity.selectors import consent_latest, enrollment_overview


class ReadOnlyAdmin(StaffScopedAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class FaceDataActions(StaffScopedAdmin):
    """The destructive face-data actions: platform staff holding the custom permissions."""

    def has_delete_face_data_permission(self, request: HttpRequest) -> bool:
        return self.has_staff_permission(request, "identity.delete_face_data")

    def has_withdraw_consent_permission(self, request: HttpRequest) -> bool:
        return self.has_staff_permission(request, "identity.withdraw_consent")

    def face_data_delete_confirmed(
        self, request: HttpRequest, queryset: QuerySet[Any], *, people: int
    ) -> Any:
        """None once confirmed; otherwise the page that states how many people lose it."""
        return bulk_confirmed(
            request,
            self,
            queryset,
            action="delete_face_data",
            title=gettext("Delete the face data of %(count)d person(s)?") % {"count": people},
            warning=gettext(
                "Their face templates and photos are deleted at once and cannot be restored;"
                " consent stays, and they can enroll again."
            ),
        )


@admin.register(Identity)
class IdentityAdmin(FaceDataActions):
    list_display = ("name", "phone", "real_name_verified_at", "created_at")
    search_fields = ("name", "phone", "email")
    list_filter = ("real_name_verified_at",)
    raw_id_fields = ("user",)
    # The ID-number hash is a secret-derived value; it is never shown.
    exclude = ("id_number_hash",)
    readonly_fields = ("consent_shown", "enrollment_shown", "real_name_verified_at", "created_at")
    actions = ["delete_face_data", "withdraw_consent"]

    @admin.display(description=_("biometric consent"))
    def consent_shown(self, obj: Identity) -> str:
        if obj.pk is None:
            return "—"
        consent = consent_latest(identity=obj)
        if consent is None:
            return gettext("never given (face pickup off; the pickup code works)")
        if consent.status == ConsentStatus.GIVEN:
            return gettext("given %(at)s (policy %(policy)s, %(source)s)") % {
                "at": shown_time(consent.given_at),
                "policy": consent.policy_version,
                "source": consent.source,
            }
        return gettext("withdrawn %(at)s (given %(given)s)") % {
            "at": shown_time(consent.withdrawn_at),
            "given": shown_time(consent.given_at),
        }

    @admin.display(description=_("face enrollment"))
    def enrollment_shown(self, obj: Identity) -> str:
        if obj.pk is None:
            return "—"
        overview = enrollment_overview(identity=obj)
        if overview.status == "none":
            return gettext("not enrolled")
        text = gettext("%(status)s: %(count)d usable face template(s)") % {
            "status": EnrollmentStatus(overview.status).label,
            "count": overview.templates,
        }
        if overview.pending:
            text += gettext(", %(count)d photo(s) being checked") % {"count": overview.pending}
        return text

    @admin.action(
        description=_("Delete face data (templates and photos) now"),
        permissions=["delete_face_data"],
    )
    def delete_face_data(self, request: HttpRequest, queryset: QuerySet[Identity]) -> Any:
        page = self.face_data_delete_confirmed(request, queryset, people=queryset.count())
        if page is not None:
            return page
        actor = Actor.staff(request.user)  # type: ignore[arg-type]
        deleted = sum(
            services.face_data_delete(identity=identity, actor=actor, reason="deleted by staff")
            for identity in queryset.order_by("pk")
        )
        self.message_user(
            request,
            gettext("Face templates deleted: %(count)d.") % {"count": deleted},
            messages.SUCCESS,
        )

    @admin.action(
        description=_("Withdraw biometric consent (deletes face data)"),
        permissions=["withdraw_consent"],
    )
    def withdraw_consent(self, request: HttpRequest, queryset: QuerySet[Identity]) -> Any:
        page = bulk_confirmed(
            request,
            self,
            queryset,
            action="withdraw_consent",
            title=gettext("Withdraw the biometric consent of %(count)d person(s)?")
            % {"count": queryset.count()},
            warning=gettext(
                "Their face templates and photos are deleted at once and face pickup stops"
                " until they consent again on the enrollment page."
            ),
        )
        if page is not None:
            return page
        actor = Actor.staff(request.user)  # type: ignore[arg-type]
        deleted = sum(
            services.consent_withdraw(identity=identity, actor=actor)
            for identity in queryset.order_by("pk")
        )
        self.message_user(
            request,
            gettext("Consent withdrawn; face templates deleted: %(count)d.") % {"count": deleted},
            messages.SUCCESS,
        )


@admin.register(BiometricConsent)
class BiometricConsentAdmin(StaffScopedAdmin):
    list_display = ("identity", "status", "policy_version", "given_at", "withdrawn_at", "source")
    list_filter = ("status", "policy_version", "source")
    search_fields = ("identity__phone", "identity__name")
    list_select_related = ("identity",)
    readonly_fields = ("identity", "status", "policy_version", "given_at", "withdrawn_at", "source")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EnrollmentEventInline(admin.TabularInline):
    model = EnrollmentEvent
    fields = ("at", "from_status", "to_status", "reason", "actor_kind", "actor_label")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(FaceEnrollment)
class FaceEnrollmentAdmin(FaceDataActions):
    list_display = ("identity", "status", "created_at", "updated_at")
    list_filter = ("status",)
    search_fields = ("identity__phone", "identity__name")
    list_select_related = ("identity",)
    readonly_fields = ("identity", "consent", "status", "created_at", "updated_at")
    inlines = [EnrollmentEventInline]
    actions = ["delete_face_data"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(
        description=_("Delete the person's face data now"), permissions=["delete_face_data"]
    )
    def delete_face_data(self, request: HttpRequest, queryset: QuerySet[FaceEnrollment]) -> Any:
        people = Identity.objects.filter(enrollments__in=queryset).distinct().order_by("pk")
        page = self.face_data_delete_confirmed(request, queryset, people=people.count())
        if page is not None:
            return page
        actor = Actor.staff(request.user)  # type: ignore[arg-type]
        deleted = sum(
            services.face_data_delete(identity=identity, actor=actor, reason="deleted by staff")
            for identity in people
        )
        self.message_user(
            request,
            gettext("Face templates deleted: %(count)d.") % {"count": deleted},
            messages.SUCCESS,
        )


@admin.register(EnrollmentEvent)
class EnrollmentEventAdmin(ReadOnlyEventAdmin):
    list_display = ("enrollment", "from_status", "to_status", "reason", "actor_kind", "at")
    list_filter = ("to_status", "actor_kind")
    search_fields = ("enrollment__identity__phone",)


@admin.register(FaceTemplate)
class FaceTemplateAdmin(StaffScopedAdmin):
    """Metadata only: the embedding is never displayed."""

    list_display = ("identity", "status", "model_name", "model_version", "created_at")
    list_filter = ("status", "model_name")
    search_fields = ("identity__phone",)
    list_select_related = ("identity",)
    fields = ("identity", "enrollment", "status", "model_name", "model_version", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(EnrollmentPhoto)
class EnrollmentPhotoAdmin(ReadOnlyAdmin):
    """Outcome of each photo; the photo itself is never displayed."""

    list_display = ("id", "enrollment", "status", "refusal_code", "size_bytes", "processed_at")
    list_filter = ("status", "refusal_code")
    search_fields = ("enrollment__identity__phone",)
    fields = (
        "enrollment",
        "status",
        "content_type",
        "size_bytes",
        "refusal_code",
        "refusal_message",
        "quality",
        "created_at",
        "processed_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[EnrollmentPhoto]:
        return super().get_queryset(request).defer("data")


@admin.register(OneTimeCode)
class OneTimeCodeAdmin(ReadOnlyAdmin):
    list_display = ("identity", "created_at", "expires_at", "attempts", "used_at")
    search_fields = ("identity__phone",)
    fields = ("identity", "created_at", "expires_at", "attempts", "used_at")
    readonly_fields = fields


@admin.register(RealIdCheck)
class RealIdCheckAdmin(ReadOnlyAdmin):
    list_display = (
        "identity",
        "decision",
        "distance_shown",
        "threshold_shown",
        "created_at",
        "decided_at",
    )
    list_filter = ("decision",)
    search_fields = ("identity__phone", "identity__name")
    fields = (
        "identity",
        "decision",
        "distance_shown",
        "threshold_shown",
        "refusal_code",
        "refusal_message",
        "created_at",
        "decided_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[RealIdCheck]:
        return super().get_queryset(request).defer("portrait")

    @admin.display(description=_("distance"), ordering="distance")
    def distance_shown(self, obj: RealIdCheck) -> str:
        return figure(obj.distance)

    @admin.display(description=_("threshold"))
    def threshold_shown(self, obj: RealIdCheck) -> str:
        return figure(obj.threshold)
