from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy

from core.actors import ActorFields, event_row_str

phone_validator = RegexValidator(
    r"^\+[1-9]\d{6,14}$", "Enter the phone number in international form, e.g. +8613800138000."
)


class Identity(models.Model):
    """A person, keyed by a phone number: a recipient, a sender, or both.

    Carriers never write here: the name, phone and email a carrier gives travel with its
    parcel (`courier.Parcel.recipient_*`). What this row holds is the person's own, and only
    `phone_verified_at` (set when the person proves the phone with a texted code) makes it
    trusted for enrollment and for face scans."""

    phone = models.CharField(
        max_length=16, unique=True, validators=[phone_validator], verbose_name=gettext_lazy("phone")
    )
    name = models.CharField(max_length=120, blank=True, verbose_name=gettext_lazy("name"))
    # The person's own address; nothing sets it yet (no email proof flow), nothing trusts it.
    email = models.EmailField(blank=True, verbose_name=gettext_lazy("email"))
    # The person's language for texts and emails (cabinet screens still speak the cabinet's
    # CABINET_LANGUAGE_CODE); blank is the platform's RECIPIENT_LANGUAGE_CODE (zh-hans), so the
    # default follows the setting, stored nowhere else. Set from the enrollment page's language
    # when the person logs in, consents or sends a photo (identity_language_remember).
    language = models.CharField(
        gettext_lazy("language"),
        max_length=8,
        blank=True,
        choices=settings.LANGUAGES,
        default="",
    )
    phone_verified_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("phone verified at")
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="identity",
        verbose_name=gettext_lazy("user"),
    )
    # Keyed hash (HMAC) of the resident ID number; the number itself is never stored.
    id_number_hash = models.CharField(
        max_length=64,
        null=True,
        blank=True,
        unique=True,
        verbose_name=gettext_lazy("id number hash"),
    )
    real_name_verified_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("real name verified at")
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))

    class Meta:
        verbose_name = gettext_lazy("identity")
        verbose_name_plural = gettext_lazy("identities")
        ordering = ["id"]
        # Admin actions beyond add/change/delete/view (docs/security-admin.md).
        permissions = [
            ("withdraw_consent", "Can withdraw a person's biometric consent"),
            ("delete_face_data", "Can delete a person's face data"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(real_name_verified_at__isnull=True) | Q(id_number_hash__isnull=False),
                name="identity_verified_needs_id_number",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name or 'person'} ({self.phone[:-4]}****)"


class ConsentStatus(models.TextChoices):
    GIVEN = "given", gettext_lazy("Given")
    WITHDRAWN = "withdrawn", gettext_lazy("Withdrawn")


class BiometricConsent(models.Model):
    """Separate, explicit consent to biometric processing. Withdrawal is a new state, not a
    deletion, so the record of what was agreed survives."""

    identity = models.ForeignKey(
        Identity,
        on_delete=models.CASCADE,
        related_name="consents",
        verbose_name=gettext_lazy("identity"),
    )
    status = models.CharField(
        max_length=16, choices=ConsentStatus.choices, verbose_name=gettext_lazy("status")
    )
    policy_version = models.CharField(max_length=16, verbose_name=gettext_lazy("policy version"))
    given_at = models.DateTimeField(verbose_name=gettext_lazy("given at"))
    withdrawn_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("withdrawn at")
    )
    source = models.CharField(max_length=16, default="web", verbose_name=gettext_lazy("source"))

    class Meta:
        verbose_name = gettext_lazy("biometric consent")
        verbose_name_plural = gettext_lazy("biometric consents")
        ordering = ["-given_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ConsentStatus.values), name="consent_status_valid"
            ),
            models.CheckConstraint(
                condition=(Q(status=ConsentStatus.GIVEN) & Q(withdrawn_at__isnull=True))
                | (Q(status=ConsentStatus.WITHDRAWN) & Q(withdrawn_at__isnull=False)),
                name="consent_withdrawn_has_time",
            ),
            models.UniqueConstraint(
                fields=["identity"],
                condition=Q(status=ConsentStatus.GIVEN),
                name="one_given_consent_per_identity",
            ),
        ]

    def __str__(self) -> str:
        return f"consent {self.policy_version} {self.status}"


class EnrollmentStatus(models.TextChoices):
    PENDING = "pending", gettext_lazy("Waiting for photos")
    PROCESSING = "processing", gettext_lazy("Processing")
    ENROLLED = "enrolled", gettext_lazy("Enrolled")
    FAILED = "failed", gettext_lazy("Failed: retake")
    DELETED = "deleted", gettext_lazy("Deleted")


# Photos are processed one by one; the enrollment follows them: processing while any is
# pending, enrolled once one is accepted, failed when all were refused. Deleted is final.
ENROLLMENT_TRANSITIONS: dict[str, frozenset[str]] = {
    EnrollmentStatus.PENDING: frozenset({EnrollmentStatus.PROCESSING, EnrollmentStatus.DELETED}),
    EnrollmentStatus.PROCESSING: frozenset(
        {EnrollmentStatus.ENROLLED, EnrollmentStatus.FAILED, EnrollmentStatus.DELETED}
    ),
    EnrollmentStatus.ENROLLED: frozenset({EnrollmentStatus.PROCESSING, EnrollmentStatus.DELETED}),
    EnrollmentStatus.FAILED: frozenset({EnrollmentStatus.PROCESSING, EnrollmentStatus.DELETED}),
    EnrollmentStatus.DELETED: frozenset(),
}
ENROLLMENT_OPEN_STATUSES = (
    EnrollmentStatus.PENDING,
    EnrollmentStatus.PROCESSING,
    EnrollmentStatus.ENROLLED,
    EnrollmentStatus.FAILED,
)


class FaceEnrollment(models.Model):
    identity = models.ForeignKey(
        Identity,
        on_delete=models.CASCADE,
        related_name="enrollments",
        verbose_name=gettext_lazy("identity"),
    )
    consent = models.ForeignKey(
        BiometricConsent,
        on_delete=models.PROTECT,
        related_name="enrollments",
        verbose_name=gettext_lazy("consent"),
    )
    status = models.CharField(
        max_length=16,
        choices=EnrollmentStatus.choices,
        default=EnrollmentStatus.PENDING,
        verbose_name=gettext_lazy("status"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=gettext_lazy("updated at"))

    class Meta:
        verbose_name = gettext_lazy("face enrollment")
        verbose_name_plural = gettext_lazy("face enrollments")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=EnrollmentStatus.values), name="enrollment_status_valid"
            ),
            models.UniqueConstraint(
                fields=["identity"],
                condition=Q(status__in=ENROLLMENT_OPEN_STATUSES),
                name="one_open_enrollment_per_identity",
            ),
        ]

    def __str__(self) -> str:
        return f"enrollment #{self.pk} ({self.status})"


class TemplateStatus(models.TextChoices):
    ACTIVE = "active", gettext_lazy("Active")
    DELETED = "deleted", gettext_lazy("Deleted")


class FaceTemplate(models.Model):
    """A face embedding, encrypted at rest. Never shown in the admin, logs or the API."""

    identity = models.ForeignKey(
        Identity,
        on_delete=models.CASCADE,
        related_name="templates",
        verbose_name=gettext_lazy("identity"),
    )
    enrollment = models.ForeignKey(
        FaceEnrollment,
        on_delete=models.CASCADE,
        related_name="templates",
        verbose_name=gettext_lazy("enrollment"),
    )
    status = models.CharField(
        max_length=16,
        choices=TemplateStatus.choices,
        default=TemplateStatus.ACTIVE,
        verbose_name=gettext_lazy("status"),
    )
    model_name = models.CharField(max_length=64, verbose_name=gettext_lazy("model name"))
    # Weights, library and alignment, e.g. "face_recognition_models 0.3.0; dlib 20.0.1.post1;
    # landmarks large": encodings are comparable only within one version.
    model_version = models.CharField(max_length=128, verbose_name=gettext_lazy("model version"))
    embedding_encrypted = models.BinaryField(verbose_name=gettext_lazy("embedding encrypted"))
    quality = models.JSONField(default=dict, blank=True, verbose_name=gettext_lazy("quality"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))

    class Meta:
        verbose_name = gettext_lazy("face template")
        verbose_name_plural = gettext_lazy("face templates")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=TemplateStatus.values), name="template_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["identity", "status"])]

    def __str__(self) -> str:
        return f"template #{self.pk} ({self.model_name}, {self.status})"


class EnrollmentEvent(ActorFields):
    """Append-only audit row: one per enrollment status transition."""

    enrollment = models.ForeignKey(
        FaceEnrollment,
        on_delete=models.CASCADE,
        related_name="events",
        verbose_name=gettext_lazy("enrollment"),
    )
    from_status = models.CharField(
        max_length=16,
        choices=EnrollmentStatus.choices,
        blank=True,
        verbose_name=gettext_lazy("from status"),
    )
    to_status = models.CharField(
        max_length=16, choices=EnrollmentStatus.choices, verbose_name=gettext_lazy("to status")
    )
    reason = models.CharField(max_length=255, blank=True, verbose_name=gettext_lazy("reason"))
    data = models.JSONField(default=dict, blank=True, verbose_name=gettext_lazy("data"))
    at = models.DateTimeField(auto_now_add=True, db_index=True, verbose_name=gettext_lazy("at"))

    class Meta:
        verbose_name = gettext_lazy("enrollment event")
        verbose_name_plural = gettext_lazy("enrollment events")
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return event_row_str(
            f"enrollment {self.enrollment_id}",
            from_label=self.get_from_status_display() if self.from_status else "",
            to_label=self.get_to_status_display(),
            at=self.at,
            by=self.actor_label,
        )


class PhotoStatus(models.TextChoices):
    PENDING = "pending", gettext_lazy("Waiting for a worker")
    ACCEPTED = "accepted", gettext_lazy("Accepted")
    REFUSED = "refused", gettext_lazy("Refused")


class EnrollmentPhoto(models.Model):
    """A selfie waiting for, or done with, processing. The raw bytes live here only until a
    worker has processed them (plus FACE_PHOTO_RETENTION_S); never shown anywhere."""

    enrollment = models.ForeignKey(
        FaceEnrollment,
        on_delete=models.CASCADE,
        related_name="photos",
        verbose_name=gettext_lazy("enrollment"),
    )
    status = models.CharField(
        max_length=16,
        choices=PhotoStatus.choices,
        default=PhotoStatus.PENDING,
        verbose_name=gettext_lazy("status"),
    )
    data = models.BinaryField(
        null=True, blank=True, editable=False, verbose_name=gettext_lazy("data")
    )
    content_type = models.CharField(max_length=16, verbose_name=gettext_lazy("content type"))
    size_bytes = models.PositiveIntegerField(verbose_name=gettext_lazy("size bytes"))
    refusal_code = models.CharField(
        max_length=32, blank=True, verbose_name=gettext_lazy("refusal code")
    )
    refusal_message = models.CharField(
        max_length=255, blank=True, verbose_name=gettext_lazy("refusal message")
    )
    quality = models.JSONField(default=dict, blank=True, verbose_name=gettext_lazy("quality"))
    template = models.OneToOneField(
        FaceTemplate,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="photo",
        verbose_name=gettext_lazy("template"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))
    processed_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("processed at")
    )

    class Meta:
        verbose_name = gettext_lazy("enrollment photo")
        verbose_name_plural = gettext_lazy("enrollment photos")
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=PhotoStatus.values), name="photo_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(status=PhotoStatus.PENDING, processed_at__isnull=True)
                | (~Q(status=PhotoStatus.PENDING) & Q(processed_at__isnull=False)),
                name="photo_processed_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status=PhotoStatus.REFUSED) | ~Q(refusal_code=""),
                name="photo_refused_has_code",
            ),
            models.CheckConstraint(
                condition=~Q(status=PhotoStatus.PENDING) | Q(data__isnull=False),
                name="photo_pending_has_data",
            ),
        ]
        indexes = [models.Index(fields=["status", "processed_at"])]

    def __str__(self) -> str:
        return f"photo #{self.pk} ({self.status})"


class OneTimeCode(models.Model):
    """A login code sent by SMS, stored only as a keyed hash."""

    identity = models.ForeignKey(
        Identity,
        on_delete=models.CASCADE,
        related_name="login_codes",
        verbose_name=gettext_lazy("identity"),
    )
    code_hash = models.CharField(max_length=64, verbose_name=gettext_lazy("code hash"))
    attempts = models.PositiveSmallIntegerField(default=0, verbose_name=gettext_lazy("attempts"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))
    expires_at = models.DateTimeField(verbose_name=gettext_lazy("expires at"))
    used_at = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("used at"))

    class Meta:
        verbose_name = gettext_lazy("one time code")
        verbose_name_plural = gettext_lazy("one time codes")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["identity", "created_at"])]

    def __str__(self) -> str:
        return f"login code #{self.pk}"


class RealIdDecision(models.TextChoices):
    PENDING = "pending", gettext_lazy("Waiting for a worker")
    VERIFIED = "verified", gettext_lazy("Verified")
    NOT_VERIFIED = "not_verified", gettext_lazy("Not the same person")
    NO_REFERENCE = "no_reference", gettext_lazy("No enrolled face to compare with")
    REFUSED = "refused", gettext_lazy("Portrait photo unusable")


class RealIdCheck(models.Model):
    """One attempt at real-name verification: the decision and its figures. The ID number is
    kept only as its keyed hash, and the portrait only until a worker has compared it."""

    identity = models.ForeignKey(
        Identity,
        on_delete=models.CASCADE,
        related_name="real_id_checks",
        verbose_name=gettext_lazy("identity"),
    )
    id_number_hash = models.CharField(max_length=64, verbose_name=gettext_lazy("id number hash"))
    portrait = models.BinaryField(
        null=True, blank=True, editable=False, verbose_name=gettext_lazy("portrait")
    )
    decision = models.CharField(
        max_length=16,
        choices=RealIdDecision.choices,
        default=RealIdDecision.PENDING,
        verbose_name=gettext_lazy("decision"),
    )
    distance = models.FloatField(null=True, blank=True, verbose_name=gettext_lazy("distance"))
    threshold = models.FloatField(null=True, blank=True, verbose_name=gettext_lazy("threshold"))
    refusal_code = models.CharField(
        max_length=32, blank=True, verbose_name=gettext_lazy("refusal code")
    )
    refusal_message = models.CharField(
        max_length=255, blank=True, verbose_name=gettext_lazy("refusal message")
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))
    decided_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("decided at")
    )

    class Meta:
        verbose_name = gettext_lazy("real id check")
        verbose_name_plural = gettext_lazy("real id checks")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(decision__in=RealIdDecision.values), name="real_id_decision_valid"
            ),
            models.CheckConstraint(
                condition=Q(decision=RealIdDecision.PENDING, decided_at__isnull=True)
                | (~Q(decision=RealIdDecision.PENDING) & Q(decided_at__isnull=False)),
                name="real_id_decided_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(decision=RealIdDecision.VERIFIED)
                | (Q(distance__isnull=False) & Q(threshold__isnull=False)),
                name="real_id_verified_has_distance",
            ),
        ]

    def __str__(self) -> str:
        return f"real-ID check #{self.pk} ({self.decision})"


class AccessTokenPurpose(models.TextChoices):
    # Single use, redeemed by POST into a session that still needs the texted code.
    LINK = "link", gettext_lazy("Enrollment link")
    # The API credential returned by a phone login; usable until it expires or is revoked.
    API = "api", gettext_lazy("API token after phone login")


class AccessToken(models.Model):
    """A bearer token for a person, stored only as a keyed hash: enrollment links and the
    API token after a phone login. Revocable; a link is used once."""

    identity = models.ForeignKey(
        Identity,
        on_delete=models.CASCADE,
        related_name="tokens",
        verbose_name=gettext_lazy("identity"),
    )
    purpose = models.CharField(
        max_length=8, choices=AccessTokenPurpose.choices, verbose_name=gettext_lazy("purpose")
    )
    token_hash = models.CharField(
        max_length=64, unique=True, verbose_name=gettext_lazy("token hash")
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("created at"))
    expires_at = models.DateTimeField(verbose_name=gettext_lazy("expires at"))
    used_at = models.DateTimeField(null=True, blank=True, verbose_name=gettext_lazy("used at"))
    revoked_at = models.DateTimeField(
        null=True, blank=True, verbose_name=gettext_lazy("revoked at")
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(purpose__in=AccessTokenPurpose.values), name="token_purpose_valid"
            ),
        ]
        indexes = [models.Index(fields=["identity", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.purpose} token #{self.pk}"


class FacePhotoReceipt(models.Model):
    """One row per selfie received, kept when face data is deleted (it holds no image):
    the per-person photo limit counts these, so deleting and starting again does not
    reset it."""

    identity = models.ForeignKey(
        Identity,
        on_delete=models.CASCADE,
        related_name="photo_receipts",
        verbose_name=gettext_lazy("identity"),
    )
    at = models.DateTimeField(auto_now_add=True, verbose_name=gettext_lazy("at"))

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["identity", "at"])]

    def __str__(self) -> str:
        return f"photo receipt #{self.pk}"
