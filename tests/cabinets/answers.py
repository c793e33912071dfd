"""A cabinet answering a command through the link's own services, as its frames would."""

from __future__ import annotations

from cabinets.models import CabinetCommand
from cabinets.services.commands import command_receipt_record, command_result_record


def command_answer(command: CabinetCommand, status: str, *, detail: str = "") -> None:
    """Receipt, then the result (`succeeded` or `failed`)."""
    command_receipt_record(cabinet_id=command.cabinet_id, command_id=str(command.pk))
    command_result_record(
        cabinet_id=command.cabinet_id,
        command_id=str(command.pk),
        status=status,
        door=None,
        detail=detail,
    )
