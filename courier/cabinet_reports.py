"""What each cabinet message causes in the parcel flows: the implementation of
cabinets.reports.CabinetReportHandler, registered in CourierConfig.ready().

| cabinet message          | what happens here                                                |
|--------------------------|------------------------------------------------------------------|
| door_event closed        | a reserved compartment's parcel is stored (ready / dropped off); |
|                          | an authorised release completes (picked up / returned / collected)|
| door_event opened/forced/fault | nothing here (the link keeps the sensor state and alerts)  |
| command finished, unlock | did not open: a deposit is given back or moved, a release may be |
|                          | tried again; opened late: the release or the deposit goes on     |
| code_entry               | code checked, attempt recorded, code_result then the unlock      |
| courier_request          | badge and PIN checked, deposit / bigger / collect, courier_result|
| face_scan                | matching scheduled on a worker after commit (courier.access.faces)|
|                          | (use_code unless FACE_ALLOW_SINGLE_FRAME)                        |
| face_start (1.2)         | a liveness challenge drawn and sent (courier.access.face_bursts) |
| face_burst (1.2)         | liveness and matching scheduled on a worker after commit         |
| face_confirm (1.2)       | phone digits checked (one try), face_result then the unlock      |
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils.translation import gettext, gettext_noop

from cabinet_agent import protocol
from cabinets.models import CabinetCommand, CommandAction, CommandStatus
from cabinets.reports import (
    CodeEntry,
    CommandFinished,
    CourierRequest,
    DoorEvent,
    FaceBurst,
    FaceChallengeRequest,
    FaceConfirm,
    FaceScan,
)
from cabinets.services.commands import commands_push_after_commit
from core.actors import Actor, ActorKind
from courier.access.attempts import answer_then_open, in_cabinet_language
from courier.access.codes import code_entry_answer
from courier.access.couriers import courier_request_answer
from courier.access.face_bursts import (
    face_burst_schedule,
    face_challenge_issue,
    face_confirm_answer,
)
from courier.lock_objects import compartment_and_parcel_lock
from courier.models import PARCEL_HOLDS_COMPARTMENT, Parcel, ParcelStatus
from courier.services.deposits import deposit_late_open, deposit_unlock_finished, parcel_stored
from courier.services.releases import RELEASE_DONE, release_door_closed, release_unlock_finished
from courier.tasks import face_scan_task

logger = logging.getLogger(__name__)

_UNAVAILABLE = gettext_noop(
    "The cabinet cannot do this right now. Please try again or contact support."
)


class ParcelFlows:
    def door_event(self, report: DoorEvent) -> None:
        if report.event != "closed":
            return
        compartment, parcel = compartment_and_parcel_lock(compartment_id=report.compartment_id)
        if parcel is None:
            return
        actor = Actor(kind=ActorKind.CABINET, label=compartment.cabinet.serial)
        if parcel.status == ParcelStatus.ANNOUNCED and parcel.reserved_at is not None:
            parcel_stored(parcel=parcel, actor=actor, door=compartment.label)
        elif parcel.status in RELEASE_DONE and parcel.release_authorized_at is not None:
            release_door_closed(parcel=parcel, compartment=compartment, actor=actor)

    def command_finished(self, report: CommandFinished) -> None:
        if report.action != CommandAction.UNLOCK or report.compartment_id is None:
            return
        command = CabinetCommand.objects.get(pk=report.command_id)
        compartment, parcel = compartment_and_parcel_lock(compartment_id=report.compartment_id)
        if parcel is None:
            if report.late and report.status == CommandStatus.SUCCEEDED:
                deposit_late_open(command=command, compartment=compartment)
            return
        if parcel.status == ParcelStatus.ANNOUNCED:
            if report.status != CommandStatus.SUCCEEDED:
                retry = deposit_unlock_finished(
                    parcel=parcel, command=command, compartment=compartment
                )
                if retry is not None:
                    commands_push_after_commit([retry.command])
            return
        release_unlock_finished(parcel=parcel, command=command)

    def code_entry(self, report: CodeEntry) -> None:
        def unavailable() -> None:
            answer_then_open(
                report.cabinet_id,
                protocol.make_code_result(
                    entry_id=report.entry_id,
                    outcome=protocol.CodeOutcome.UNAVAILABLE,
                    message=gettext(_UNAVAILABLE),
                ),
            )

        _answering(lambda: code_entry_answer(entry=report), unavailable, report.entry_id)

    def courier_request(self, report: CourierRequest) -> None:
        def unavailable() -> None:
            answer_then_open(
                report.cabinet_id,
                protocol.make_courier_result(
                    request_id=report.request_id,
                    outcome=protocol.CourierOutcome.REFUSED,
                    compartments=[],
                    message=gettext(_UNAVAILABLE),
                ),
            )

        _answering(lambda: courier_request_answer(request=report), unavailable, report.request_id)

    def face_scan(self, report: FaceScan) -> None:
        # After commit: the worker must find the stored scan; the image travels only in the
        # task message and is never written to the database.
        face_scan_task.delay_on_commit(
            report.cabinet_id,
            report.scan_id,
            report.purpose,
            base64.b64encode(report.image).decode("ascii"),
            report.light_on,
            report.taken_at.isoformat() if report.taken_at else "",
        )

    def face_challenge_request(self, report: FaceChallengeRequest) -> None:
        _answering(
            lambda: face_challenge_issue(request=report),
            lambda: _face_unavailable(report.cabinet_id, report.start_id),
            report.start_id,
        )

    def face_burst(self, report: FaceBurst) -> None:
        _answering(
            lambda: face_burst_schedule(burst=report),
            lambda: _face_unavailable(report.cabinet_id, report.burst_id),
            report.burst_id,
        )

    def face_confirm(self, report: FaceConfirm) -> None:
        _answering(
            lambda: face_confirm_answer(confirm=report),
            lambda: _face_unavailable(report.cabinet_id, report.event_id),
            report.event_id,
        )

    def occupied_compartment_ids(self) -> QuerySet[Any]:
        return Parcel.objects.filter(PARCEL_HOLDS_COMPARTMENT, compartment__isnull=False).values(
            "compartment_id"
        )

    def tracking_numbers_in(self, compartment_ids: list[int]) -> dict[int, str]:
        rows = Parcel.objects.filter(
            PARCEL_HOLDS_COMPARTMENT, compartment_id__in=compartment_ids
        ).values_list("compartment_id", "tracking_number")
        return {compartment_id: number for compartment_id, number in rows}


def _face_unavailable(cabinet_id: int, event_id: str) -> None:
    answer_then_open(
        cabinet_id,
        protocol.make_face_result(
            scan_id=event_id, outcome=protocol.FaceOutcome.UNAVAILABLE, message=_UNAVAILABLE
        ),
    )


def _answering(work: Callable[[], object], unavailable: Callable[[], None], event_id: str) -> None:
    """A person is waiting: whatever goes wrong, they get an answer. The work runs in a
    savepoint, so a failure undoes it and leaves the stored message and the answer. The
    answer is in the cabinet screens' language."""
    with in_cabinet_language():
        try:
            with transaction.atomic():
                work()
        except Exception:
            logger.exception("answering cabinet event %s failed; answered unavailable", event_id)
            unavailable()
