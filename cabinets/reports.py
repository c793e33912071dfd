"""What a cabinet reports, and the interface the parcel flows implement to act on it.

This is the one boundary between the cabinet link (`cabinets`) and the domain (`courier`):
the link stores a cabinet's message, applies what belongs to the link itself (door sensor,
command status, failed-open count), and hands a frozen report to the registered
`CabinetReportHandler`. `cabinets` never imports `courier`; `courier` registers its handler in
`CourierConfig.ready()` (`courier/cabinet_reports.py` is the implementation, and the one file
to read to learn what each cabinet message causes).

Contract (also in docs/cabinet-protocol.md §13):

- Every method runs inside the transaction that stored the cabinet's message, after the link's
  own effect; anything the handler pushes to a cabinet goes after commit.
- Locks: the link has already locked the command row (`command_finished`) and the compartment
  (`door_event`, `command_finished` of an unlock). A handler that needs the parcel too takes it
  through `courier.lock_objects`, which keeps the one order: command, compartment, parcel.
- Handlers that answer a person (`code_entry`, `courier_request`, `face_scan`, and in 1.2
  `face_challenge_request`, `face_burst`, `face_confirm`) never raise:
  whatever goes wrong, the person gets an answer (`unavailable` at worst).
- A handler of a door event or a finished command raises `ApplicationError` to refuse: the link
  records the refusal on the stored message, acknowledges it and never asks for a replay.
- An unlock that expires unexecuted is reported as finished (`status="expired"`), so that
  whatever it reserved is released; a result arriving after the expiry is reported again with
  the real outcome (`late=True`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from django.db.models import QuerySet


@dataclass(frozen=True)
class DoorEvent:
    cabinet_id: int
    compartment_id: int
    label: str
    event: str  # "opened" | "closed" | "forced" | "fault"
    at: datetime | None


@dataclass(frozen=True)
class CommandFinished:
    command_id: str
    cabinet_id: int
    compartment_id: int | None
    action: str
    status: str  # a final CommandStatus: succeeded, failed, rejected, expired
    # True when the cabinet's result came after the server had already expired the command:
    # the door may really have opened, and this report says how it went.
    late: bool = False


@dataclass(frozen=True)
class CodeEntry:
    cabinet_id: int
    entry_id: str
    code: str
    entered_at: datetime | None


@dataclass(frozen=True)
class CourierRequest:
    cabinet_id: int
    request_id: str
    badge: str
    pin: str
    action: str  # "deposit" | "bigger" | "collect"
    tracking_number: str | None
    at: datetime | None
    carrier: str = ""  # the carrier's code, when the cabinet sent one


@dataclass(frozen=True)
class FaceScan:
    cabinet_id: int
    scan_id: str
    purpose: str  # "pickup" | "dropoff"
    image: bytes  # never stored; travels only to the worker that matches it
    light_on: bool
    taken_at: datetime | None


@dataclass(frozen=True)
class FaceChallengeRequest:
    """A person chose face at a 1.2 cabinet: it asks for a liveness challenge."""

    cabinet_id: int
    start_id: str
    purpose: str  # "pickup" | "dropoff"
    at: datetime | None


@dataclass(frozen=True)
class BurstFrame:
    t_ms: int
    jpeg: bytes  # never stored; only its hash is kept, to refuse its reuse


@dataclass(frozen=True)
class FaceBurst:
    """The cabinet's answer to a challenge: frames over one to three seconds."""

    cabinet_id: int
    burst_id: str
    challenge_id: str
    nonce: str
    frames: tuple[BurstFrame, ...]
    light_on: bool
    taken_at: datetime | None


@dataclass(frozen=True)
class FaceConfirm:
    """The last four digits of a phone number, typed after a face_result "confirm"."""

    cabinet_id: int
    event_id: str
    confirm_id: str
    digits: str  # never stored
    at: datetime | None


class CabinetReportHandler(Protocol):
    def door_event(self, report: DoorEvent) -> None: ...

    def command_finished(self, report: CommandFinished) -> None: ...

    def code_entry(self, report: CodeEntry) -> None: ...

    def courier_request(self, report: CourierRequest) -> None: ...

    def face_scan(self, report: FaceScan) -> None: ...

    def face_challenge_request(self, report: FaceChallengeRequest) -> None: ...

    def face_burst(self, report: FaceBurst) -> None: ...

    def face_confirm(self, report: FaceConfirm) -> None: ...

    def occupied_compartment_ids(self) -> QuerySet[Any]:
        """Ids of compartments something is in or reserved for (a values queryset usable as
        a subquery): occupancy is a fact of the parcels, stored once, never on the
        compartment."""
        ...

    def tracking_numbers_in(self, compartment_ids: list[int]) -> dict[int, str]:
        """The tracking number of the parcel in (or reserved for) each of these compartments
        that holds one: what the admin's door grid shows."""
        ...


_handler: CabinetReportHandler | None = None


def report_handler_register(handler: CabinetReportHandler) -> None:
    global _handler
    _handler = handler


def report_handler() -> CabinetReportHandler:
    if _handler is None:  # pragma: no cover - a misconfiguration, surfaced loudly
        raise RuntimeError("no CabinetReportHandler registered (is `courier` installed?)")
    return _handler
