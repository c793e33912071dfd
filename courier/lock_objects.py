"""Row locks of the parcel flows, in the platform's one order (cabinets.locks):

    command  ->  compartment  ->  parcel

Every path that touches a compartment and the parcel in it takes both through these
functions: a face pickup, a code pickup, a door event, a finished unlock and a deposit lock the
compartment first, so two of them on one compartment queue instead of deadlocking."""

from __future__ import annotations

from collections.abc import Iterable

from django.utils.translation import gettext

from cabinets.locks import compartment_lock
from cabinets.models import Compartment
from core.errors import Conflict
from courier.models import PARCEL_HOLDS_COMPARTMENT, Parcel


def compartment_and_parcel_lock(*, compartment_id: int) -> tuple[Compartment, Parcel | None]:
    """The compartment, then the parcel that holds it (if any)."""
    compartment = compartment_lock(compartment_id=compartment_id)
    parcel = (
        Parcel.objects.select_for_update(of=("self",))
        .filter(PARCEL_HOLDS_COMPARTMENT, compartment_id=compartment_id)
        .select_related("compartment", "cabinet")
        .first()
    )
    return compartment, parcel


def parcel_lock(*, parcel_id: int) -> Parcel:
    """A parcel and, before it, the compartment it holds. The compartment is read first
    without a lock; if the parcel moved meanwhile, the locks are taken again."""
    for _ in range(3):
        compartment_id = (
            Parcel.objects.filter(pk=parcel_id).values_list("compartment_id", flat=True).get()
        )
        if compartment_id is not None:
            compartment_lock(compartment_id=compartment_id)
        parcel = (
            Parcel.objects.select_for_update(of=("self",))
            .select_related("compartment", "cabinet")
            .get(pk=parcel_id)
        )
        if parcel.compartment_id == compartment_id:
            return parcel
    raise Conflict(
        gettext("The parcel is moving between compartments; try again."), code="parcel_busy"
    )


def parcels_lock(*, parcel_ids: Iterable[int]) -> list[Parcel]:
    """Several parcels (a courier collecting): all their compartments in primary-key order,
    then the parcels in primary-key order."""
    ids = sorted(set(parcel_ids))
    compartment_ids = sorted(
        {
            pk
            for pk in Parcel.objects.filter(pk__in=ids).values_list("compartment_id", flat=True)
            if pk is not None
        }
    )
    for compartment_id in compartment_ids:
        compartment_lock(compartment_id=compartment_id)
    parcels = list(
        Parcel.objects.select_for_update(of=("self",))
        .filter(pk__in=ids)
        .select_related("compartment", "cabinet")
        .order_by("pk")
    )
    if any(
        p.compartment_id is not None and p.compartment_id not in compartment_ids for p in parcels
    ):
        raise Conflict(
            gettext("A parcel moved between compartments; try again."), code="parcel_busy"
        )
    return parcels
