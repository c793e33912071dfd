"""A recipient types a pickup code at the cabinet."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from cabinet_agent import protocol
from cabinets.models import CabinetCommand
from cabinets.reports import CodeEntry
from core.actors import Actor, ActorKind
from courier.access.attempts import answer_then_open, attempt_record, doors, locked_out, stale
from courier.codes import pickup_code_matches
from courier.models import AttemptMethod
from courier.selectors import parcels_ready_at
from courier.services.releases import parcels_release

Outcome = protocol.CodeOutcome


def code_entry_answer(*, entry: CodeEntry) -> str:
    """Inside the transaction that stored the code entry."""
    cabinet_id = entry.cabinet_id

    def answer(outcome: str, message: str, commands: list[CabinetCommand] | None = None) -> str:
        answer_then_open(
            cabinet_id,
            protocol.make_code_result(entry_id=entry.entry_id, outcome=outcome, message=message),
            commands or [],
        )
        return outcome

    def refuse(outcome: str, message: str, **fields: Any) -> str:
        attempt_record(
            cabinet_id=cabinet_id,
            method=AttemptMethod.CODE,
            event_id=entry.entry_id,
            success=False,
            outcome=fields.pop("recorded", outcome),
            **fields,
        )
        return answer(outcome, message)

    if locked_out(cabinet_id=cabinet_id, method=AttemptMethod.CODE):
        return refuse(
            Outcome.LOCKED_OUT, _("Too many wrong codes here. Try again later or contact support.")
        )
    if stale(entry.entered_at):
        return refuse(
            Outcome.NO_MATCH,
            _("That took too long: please type the code again."),
            recorded="stale",
            detail="entry arrived too late",
        )
    match = next(
        (
            parcel
            for parcel in parcels_ready_at(cabinet_id=cabinet_id)
            if pickup_code_matches(
                parcel_id=parcel.pk, code=entry.code, code_hash=parcel.pickup_code_hash
            )
        ),
        None,
    )
    if match is None:
        return refuse(Outcome.NO_MATCH, _("This code is not valid."))
    released = parcels_release(
        parcels=[match], actor=Actor(kind=ActorKind.RECIPIENT, label="pickup code"), reason="pickup"
    )
    attempt_record(
        cabinet_id=cabinet_id,
        method=AttemptMethod.CODE,
        event_id=entry.entry_id,
        success=True,
        outcome=Outcome.UNLOCKING,
        identity_id=match.recipient_id,
        parcels=[match],
    )
    if not released.parcels:
        return answer(Outcome.UNLOCKING, _("Your compartment is already opening."))
    return answer(
        Outcome.UNLOCKING,
        _("Compartment %(doors)s is opening.") % {"doors": doors(released.parcels)},
        released.commands,
    )
