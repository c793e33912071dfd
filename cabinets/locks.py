"""Row locks of the cabinet link, in the one order every path takes them:

    command  ->  compartment  ->  parcel (courier.lock_objects)

A path that needs several of these rows takes them through these functions, top to bottom,
never the other way round: two transactions that lock in the same order cannot deadlock.
Only `select_for_update()` inside a transaction; on SQLite (no row locks) the single writer
serialises them."""

from __future__ import annotations

from cabinets.models import CabinetCommand, Compartment


def command_lock(*, cabinet_id: int, command_id: str) -> CabinetCommand | None:
    """Scoped to the cabinet, so one cabinet can never acknowledge another's command."""
    return (
        CabinetCommand.objects.select_for_update()
        .filter(pk=command_id, cabinet_id=cabinet_id)
        .first()
    )


def compartment_lock(*, compartment_id: int) -> Compartment:
    return (
        Compartment.objects.select_for_update(of=("self",))
        .select_related("cabinet")
        .get(pk=compartment_id)
    )


def compartment_lock_by_label(*, cabinet_id: int, label: str) -> Compartment | None:
    return (
        Compartment.objects.select_for_update(of=("self",))
        .select_related("cabinet")
        .filter(cabinet_id=cabinet_id, label=label)
        .first()
    )
