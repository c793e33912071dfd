"""A courier logs in at the cabinet's screen with badge and PIN, to deposit or collect."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from cabinet_agent import protocol
from cabinets.models import Cabinet, CabinetCommand
from cabinets.reports import CourierRequest
from core.actors import Actor, ActorKind
from core.errors import ApplicationError
from courier.access.attempts import (
    answer_then_open,
    attempt_record,
    doors,
    locked_out,
    lockout_subject_badge,
    lockout_subject_courier,
    stale,
)
from courier.models import AttemptMethod, Parcel, ParcelStatus
from courier.selectors import couriers_with_badge
from courier.services.deposits import parcel_deposit_bigger, parcel_deposit_start
from courier.services.releases import parcels_release

Outcome = protocol.CourierOutcome


def courier_request_answer(*, request: CourierRequest) -> str:
    """Inside the transaction that stored the request."""
    cabinet_id, action = request.cabinet_id, request.action

    def answer(
        outcome: str,
        message: str,
        parcels: list[Parcel] | None = None,
        commands: list[CabinetCommand] | None = None,
    ) -> str:
        labels = sorted(p.compartment.label for p in parcels or [] if p.compartment is not None)
        answer_then_open(
            cabinet_id,
            protocol.make_courier_result(
                request_id=request.request_id,
                outcome=outcome,
                compartments=labels,
                message=message,
            ),
            commands or [],
        )
        return outcome

    def record(outcome: str, *, success: bool, **fields: Any) -> None:
        attempt_record(
            cabinet_id=cabinet_id,
            method=AttemptMethod.COURIER,
            event_id=request.request_id,
            success=success,
            outcome=outcome,
            purpose=action,
            **fields,
        )

    def refuse(outcome: str, message: str, *, answered: str | None = None, **fields: Any) -> str:
        """A failed attempt (it counts towards the lockout), answered."""
        record(outcome, success=False, **fields)
        return answer(answered or outcome, message)

    # Every badge has its own lockout; a cabinet-wide one, far higher, bounds a guesser who
    # tries many badges. Neither locks other couriers out after one courier's typos.
    if locked_out(
        cabinet_id=cabinet_id,
        method=AttemptMethod.COURIER,
        attempts=settings.COURIER_LOCKOUT_CABINET_ATTEMPTS,
    ):
        return refuse(Outcome.LOCKED_OUT, _("Too many wrong PINs here. Try again later."))
    badge_holders = couriers_with_badge(badge=request.badge, carrier_code=request.carrier)
    subject = (
        lockout_subject_courier(courier_id=badge_holders[0].pk)
        if len(badge_holders) == 1
        else lockout_subject_badge(carrier=request.carrier, badge=request.badge)
    )
    if locked_out(cabinet_id=cabinet_id, method=AttemptMethod.COURIER, subject=subject):
        return refuse(
            Outcome.LOCKED_OUT,
            "Too many wrong PINs for this badge. Try again later.",
            lockout_subject=subject,
        )
    if len(badge_holders) > 1:
        # Two carriers issued this badge number and the screen did not say which carrier.
        return refuse(
            "carrier_required",
            "Choose your company on the screen, then log in again.",
            answered=Outcome.NOT_AUTHORIZED,
            lockout_subject=subject,
        )
    courier = badge_holders[0] if badge_holders else None
    if courier is None or not courier.pin_hash or not check_password(request.pin, courier.pin_hash):
        return refuse(
            Outcome.NOT_AUTHORIZED, _("Badge or PIN not recognised."), lockout_subject=subject
        )
    if stale(request.at):
        return refuse(
            "stale",
            _("That took too long: please try again."),
            answered=Outcome.REFUSED,
            courier=courier,
        )

    cabinet = Cabinet.objects.get(pk=cabinet_id)
    actor = Actor(kind=ActorKind.COURIER, label=courier.badge_number)
    commands: list[CabinetCommand] = []
    try:
        # A savepoint: a refused request must not undo the stored event and its audit row.
        with transaction.atomic():
            if action == protocol.CourierAction.COLLECT:
                parcels = _collectable(cabinet_id=cabinet_id, carrier_id=courier.carrier_id)
                if not parcels:
                    outcome, message, opened = (
                        Outcome.NOTHING_TO_COLLECT,
                        _("Nothing to collect here."),
                        [],
                    )
                else:
                    released = parcels_release(parcels=parcels, actor=actor, reason="collection")
                    opened, commands = released.parcels, released.commands
                    outcome = Outcome.UNLOCKING
                    message = ngettext(
                        "Opening %(count)d compartment: %(doors)s.",
                        "Opening %(count)d compartments: %(doors)s.",
                        len(opened),
                    ) % {"count": len(opened), "doors": doors(opened)}
            else:
                start = (
                    parcel_deposit_bigger
                    if action == protocol.CourierAction.BIGGER
                    else parcel_deposit_start
                )
                opening = start(
                    cabinet=cabinet,
                    carrier=courier.carrier,
                    tracking_number=request.tracking_number or "",
                    actor=actor,
                )
                opened, commands = [opening.parcel], [opening.command]
                outcome = Outcome.UNLOCKING
                message = _(
                    "Compartment %(doors)s is opening: put parcel %(parcel)s in and close the door."
                ) % {"doors": doors(opened), "parcel": opening.parcel.tracking_number}
    except ApplicationError as exc:
        outcome = {
            "unknown_parcel": Outcome.UNKNOWN_PARCEL,
            "no_compartment": Outcome.NO_COMPARTMENT,
        }.get(exc.code, Outcome.REFUSED)
        record(outcome, success=True, courier=courier, detail=exc.message[:255])
        return answer(outcome, exc.message)
    record(outcome, success=True, courier=courier, parcels=opened)
    return answer(outcome, message, opened, commands)


def _collectable(*, cabinet_id: int, carrier_id: int) -> list[Parcel]:
    return list(
        Parcel.objects.filter(
            cabinet_id=cabinet_id,
            carrier_id=carrier_id,
            status__in=[ParcelStatus.EXPIRED, ParcelStatus.DROPPED_OFF],
            compartment__isnull=False,
        ).select_related("compartment")
    )
