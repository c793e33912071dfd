"""The parcel flows' side of the cabinet link's hooks (see cabinets/signals.py)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from django.dispatch import receiver

from cabinets.models import CabinetCommand, Compartment
from cabinets.signals import (
    code_entry_received,
    command_finished,
    courier_request_received,
    door_event,
    face_scan_received,
)
from courier import access, services


@receiver(door_event)
def on_door_event(sender: Any, *, compartment: Compartment, event: str, **kwargs: Any) -> None:
    if event == "closed":
        services.compartment_door_closed(compartment=compartment)


@receiver(command_finished)
def on_command_finished(sender: Any, *, command: CabinetCommand, **kwargs: Any) -> None:
    services.unlock_failed(command=command)


@receiver(code_entry_received)
def on_code_entry(
    sender: Any,
    *,
    cabinet_id: int,
    entry_id: str,
    code: str,
    entered_at: datetime | None,
    **kwargs: Any,
) -> None:
    access.code_entry_answer(
        cabinet_id=cabinet_id, entry_id=entry_id, code=code, entered_at=entered_at
    )


@receiver(courier_request_received)
def on_courier_request(sender: Any, **kwargs: Any) -> None:
    kwargs.pop("signal", None)
    access.courier_request_answer(**kwargs)


@receiver(face_scan_received)
def on_face_scan(
    sender: Any,
    *,
    cabinet_id: int,
    scan_id: str,
    purpose: str,
    image: bytes,
    light_on: bool,
    taken_at: datetime | None,
    **kwargs: Any,
) -> None:
    from courier.tasks import face_scan_task

    # After commit: the worker must find the stored scan; the image travels only in the task
    # message and is never written to the database.
    face_scan_task.delay_on_commit(
        cabinet_id,
        scan_id,
        purpose,
        base64.b64encode(image).decode("ascii"),
        light_on,
        taken_at.isoformat() if taken_at else "",
    )
