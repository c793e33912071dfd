"""Taking parcels out: a face, a code or a courier authorises opening a door; the door's
close completes the pickup, the return or the collection. An unlock that did not open the
door lets the person try again."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from cabinets.models import CabinetCommand, CommandStatus, Compartment
from cabinets.services.commands import compartment_unlock
from core.actors import Actor
from courier.lock_objects import parcels_lock
from courier.models import Parcel, ParcelStatus
from courier.services.parcels import parcel_transition

# How long one authorisation to open a parcel's door lasts; a new face or code after that
# may open it again (the person walked away before opening).
RELEASE_WINDOW = timedelta(seconds=60)

# What closing the door completes, per status of the parcel inside.
RELEASE_DONE: dict[str, str] = {
    ParcelStatus.READY: ParcelStatus.PICKED_UP,
    ParcelStatus.EXPIRED: ParcelStatus.RETURNED,
    ParcelStatus.DROPPED_OFF: ParcelStatus.COLLECTED,
}


@dataclass(frozen=True)
class Released:
    parcels: list[Parcel] = field(default_factory=list)
    # Unlocks not yet pushed: the caller pushes them after its answer to the person
    # (cabinets.services.commands.commands_push_after_commit).
    commands: list[CabinetCommand] = field(default_factory=list)


def parcels_release(*, parcels: list[Parcel], actor: Actor, reason: str) -> Released:
    """Authorise opening the doors of these parcels, each in the status the caller saw. Under
    the compartment and parcel locks: two people (or a face and a code) at once open a door
    once; the door's close completes the release."""
    expected = {parcel.pk: parcel.status for parcel in parcels}
    now = timezone.now()
    released, commands = [], []
    with transaction.atomic():
        for parcel in parcels_lock(parcel_ids=expected):
            if parcel.status != expected[parcel.pk] or parcel.status not in RELEASE_DONE:
                continue
            if parcel.compartment is None:
                continue
            claimed = parcel.release_authorized_at
            if claimed is not None and claimed >= now - RELEASE_WINDOW:
                continue  # already opening for someone
            parcel.release_authorized_at = now
            parcel.save(update_fields=["release_authorized_at", "updated_at"])
            commands.append(
                compartment_unlock(
                    compartment=parcel.compartment,
                    actor=actor,
                    reason=reason,
                    payload={"parcel": parcel.tracking_number, "purpose": reason},
                    push=False,
                )
            )
            released.append(parcel)
    return Released(parcels=released, commands=commands)


def release_door_closed(*, parcel: Parcel, compartment: Compartment, actor: Actor) -> Parcel:
    """The door closed after an authorised opening (compartment and parcel locked by the
    caller). The parcel keeps its compartment as history; it no longer holds it."""
    changes: dict[str, object] = {"release_authorized_at": None}
    if parcel.status == ParcelStatus.READY:
        changes["picked_up_at"] = timezone.now()
    return parcel_transition(
        parcel_id=parcel.pk,
        to_status=RELEASE_DONE[parcel.status],
        actor=actor,
        reason=f"door {compartment.label} closed",
        changes=changes,
        data={"compartment": compartment.label},
    )


def release_unlock_finished(*, parcel: Parcel, command: CabinetCommand) -> None:
    """An unlock for a release finished (parcel locked by the caller). One that did not open
    the door lets the next face or code try at once; one whose success was reported after it
    had expired means the door did open, so its close completes the release."""
    if parcel.status not in RELEASE_DONE:
        return
    if command.status == CommandStatus.SUCCEEDED:
        if parcel.release_authorized_at is None:
            parcel.release_authorized_at = timezone.now()
            parcel.save(update_fields=["release_authorized_at", "updated_at"])
        return
    if parcel.release_authorized_at is not None:
        parcel.release_authorized_at = None
        parcel.save(update_fields=["release_authorized_at", "updated_at"])
