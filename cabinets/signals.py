"""Hooks from the cabinet link to the parcel flows, so `cabinets` never imports `courier`.

Receivers run inside the transaction that recorded the event: a door event and the parcel
state it implies are committed together or not at all."""

from __future__ import annotations

from django.dispatch import Signal

# sender=Compartment class; kwargs: compartment, event ("opened"|"closed"|"forced"|"fault"), at
door_event = Signal()
# sender=CabinetCommand class; kwargs: command (after its final status is saved)
command_finished = Signal()
# sender=Cabinet class; kwargs: cabinet_id, scan_id, purpose, image (bytes), light_on, taken_at.
# Receivers schedule the matching work after commit; the image is never stored.
face_scan_received = Signal()
# sender=Cabinet class; kwargs: cabinet_id, entry_id, code, entered_at
code_entry_received = Signal()
# sender=Cabinet class; kwargs: cabinet_id, request_id, badge, pin, action, tracking_number, at
courier_request_received = Signal()
