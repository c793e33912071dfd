"""Who did something: recorded on every audit/event row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


class ActorKind(models.TextChoices):
    SYSTEM = "system", gettext_lazy("System")
    STAFF = "staff", gettext_lazy("Platform staff")
    CARRIER = "carrier", gettext_lazy("Carrier (API)")
    COURIER = "courier", gettext_lazy("Courier")
    RECIPIENT = "recipient", gettext_lazy("Recipient")
    SENDER = "sender", gettext_lazy("Sender")
    CABINET = "cabinet", gettext_lazy("Cabinet")


@dataclass(frozen=True)
class Actor:
    kind: str
    label: str = ""
    user: AbstractBaseUser | None = None

    @classmethod
    def system(cls, label: str = "") -> Actor:
        return cls(kind=ActorKind.SYSTEM, label=label)

    @classmethod
    def staff(cls, user: AbstractBaseUser) -> Actor:
        return cls(kind=ActorKind.STAFF, label=user.get_username(), user=user)

    def event_fields(self) -> dict[str, object]:
        return {"actor_kind": self.kind, "actor_label": self.label[:150], "actor_user": self.user}


class ActorFields(models.Model):
    """Abstract: who caused an event row."""

    actor_kind = models.CharField(
        max_length=16, choices=ActorKind.choices, verbose_name=gettext_lazy("actor kind")
    )
    actor_label = models.CharField(
        max_length=150, blank=True, verbose_name=gettext_lazy("actor label")
    )
    actor_user = models.ForeignKey(
        "auth.User",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=gettext_lazy("actor user"),
    )

    class Meta:
        abstract = True


def shown_time(at: datetime | None) -> str:
    """An audit time as the admin shows it: local time with its zone, to the second."""
    return f"{timezone.localtime(at):%Y-%m-%d %H:%M:%S %Z}" if at else "—"


def event_row_str(
    subject: str, *, from_label: str, to_label: str, at: datetime | None, by: str
) -> str:
    """How an audit row reads in the admin (history, deletes, links): what moved, from
    where to where, when and by whom; never "ParcelEvent object (7)"."""
    when = f", {shown_time(at)}" if at else ""
    moved = f"{from_label} → {to_label}" if from_label else to_label
    return f"{subject}: {moved}{when}{f', by {by}' if by else ''}"
