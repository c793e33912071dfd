"""Who did something: recorded on every audit/event row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import models

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


class ActorKind(models.TextChoices):
    SYSTEM = "system", "System"
    STAFF = "staff", "Platform staff"
    CARRIER = "carrier", "Carrier (API)"
    COURIER = "courier", "Courier"
    RECIPIENT = "recipient", "Recipient"
    SENDER = "sender", "Sender"
    CABINET = "cabinet", "Cabinet"


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

    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor_label = models.CharField(max_length=150, blank=True)
    actor_user = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        abstract = True
