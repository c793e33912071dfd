"""The benchmark seed, at a tiny size (the 1M-parcel seed is run by bench/admin.py only)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from cabinets.models import Cabinet, Compartment
from courier.models import Parcel, ParcelStatus
from courier.selectors import compartment_use

pytestmark = pytest.mark.django_db


def test_it_seeds_a_consistent_fleet_and_refuses_to_seed_twice() -> None:
    call_command("seed_fleet", cabinets=6, compartments_per_cabinet=4, parcels=120, quiet=True)

    assert Cabinet.objects.count() == 6 and Compartment.objects.count() == 24
    assert Parcel.objects.count() == 120
    ready = Parcel.objects.filter(status=ParcelStatus.READY)
    assert ready.count() == 6  # one in twenty, each in its own occupied compartment
    compartments = set(ready.values_list("compartment_id", flat=True))
    assert len(compartments) == 6
    assert {compartment_use(compartment_id=pk) for pk in compartments} == {"occupied"}
    assert not Parcel.objects.filter(status=ParcelStatus.PICKED_UP, picked_up_at=None).exists()
    with pytest.raises(CommandError, match="already seeded"):
        call_command("seed_fleet", cabinets=1, compartments_per_cabinet=1, parcels=1, quiet=True)
