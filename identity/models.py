from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

phone_validator = RegexValidator(
    r"^\+[1-9]\d{6,14}$", "Enter the phone number in international form, e.g. +8613800138000."
)


class Identity(models.Model):
    """A person: a recipient, a sender, or both."""

    phone = models.CharField(max_length=16, unique=True, validators=[phone_validator])
    name = models.CharField(max_length=120)
    email = models.EmailField(blank=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="identity",
    )
    # Keyed hash (HMAC) of the resident ID number; the number itself is never stored.
    id_number_hash = models.CharField(max_length=64, null=True, blank=True, unique=True)
    real_name_verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "identities"
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(real_name_verified_at__isnull=True) | Q(id_number_hash__isnull=False),
                name="identity_verified_needs_id_number",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.phone[:-4]}****)"


class ConsentStatus(models.TextChoices):
    GIVEN = "given", "Given"
    WITHDRAWN = "withdrawn", "Withdrawn"


class BiometricConsent(models.Model):
    """Separate, explicit consent to biometric processing. Withdrawal is a new state, not a
    deletion, so the record of what was agreed survives."""

    identity = models.ForeignKey(Identity, on_delete=models.CASCADE, related_name="consents")
    status = models.CharField(max_length=16, choices=ConsentStatus.choices)
    policy_version = models.CharField(max_length=16)
    given_at = models.DateTimeField()
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=16, default="web")

    class Meta:
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
    PENDING = "pending", "Waiting for photos"
    PROCESSING = "processing", "Processing"
    ENROLLED = "enrolled", "Enrolled"
    FAILED = "failed", "Failed: retake"
    DELETED = "deleted", "Deleted"


class FaceEnrollment(models.Model):
    identity = models.ForeignKey(Identity, on_delete=models.CASCADE, related_name="enrollments")
    consent = models.ForeignKey(
        BiometricConsent, on_delete=models.PROTECT, related_name="enrollments"
    )
    status = models.CharField(
        max_length=16, choices=EnrollmentStatus.choices, default=EnrollmentStatus.PENDING
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=EnrollmentStatus.values), name="enrollment_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"enrollment #{self.pk} ({self.status})"


class TemplateStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DELETED = "deleted", "Deleted"


class FaceTemplate(models.Model):
    """A face embedding, encrypted at rest. Never shown in the admin, logs or the API."""

    identity = models.ForeignKey(Identity, on_delete=models.CASCADE, related_name="templates")
    enrollment = models.ForeignKey(
        FaceEnrollment, on_delete=models.CASCADE, related_name="templates"
    )
    status = models.CharField(
        max_length=16, choices=TemplateStatus.choices, default=TemplateStatus.ACTIVE
    )
    model_name = models.CharField(max_length=64)
    model_version = models.CharField(max_length=32)
    embedding_encrypted = models.BinaryField()
    quality = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=TemplateStatus.values), name="template_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["identity", "status"])]

    def __str__(self) -> str:
        return f"template #{self.pk} ({self.model_name}, {self.status})"
