"""Fast fleet builders for tests that need thousands of rows (bulk inserts, no factories)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from cabinets.models import Cabinet, CabinetState, Compartment, ConnectionState
from courier.models import Carrier, Parcel, ParcelStatus
from identity.models import Identity


def bulk_fleet(n: int, *, compartments: int = 4, prefix: str = "BULK") -> list[Cabinet]:
    states = [ConnectionState.ONLINE, ConnectionState.OFFLINE, ConnectionState.NEVER]
    regions = ["Shanghai", "Zhejiang", "Jiangsu", "Guangdong"]
    cabinets = Cabinet.objects.bulk_create(
        Cabinet(
            serial=f"{prefix}-{i:05d}",
            name=f"Cabinet {i}",
            address=f"{i} Test Road",
            city="City",
            region=regions[i % len(regions)],
            latitude=Decimal("30.0") + Decimal(i % 100) / 50,
            longitude=Decimal("120.0") + Decimal(i // 100 % 100) / 50,
            hardware_model="CB-12",
            firmware_version="1.0.0",
            state=CabinetState.MAINTENANCE if i % 17 == 0 else CabinetState.ACTIVE,
            connection_state=states[i % 3],
            last_seen_at=timezone.now() - timedelta(hours=i % 5),
        )
        for i in range(n)
    )
    rows = []
    for cabinet in cabinets:
        for j in range(compartments):
            c = Compartment(
                cabinet=cabinet,
                label=f"A{j + 1:02d}",
                size="S",
            )
            c.apply_size_spec()
            rows.append(c)
    Compartment.objects.bulk_create(rows, batch_size=5000)
    return cabinets


_batches = itertools.count(1)


def bulk_parcels(n: int, *, carriers: list[Carrier], cabinets: list[Cabinet]) -> None:
    batch = next(_batches)
    people = Identity.objects.bulk_create(
        Identity(phone=f"+861{batch:02d}{i:08d}", name=f"P{i}") for i in range(max(1, n // 20))
    )
    now = timezone.now()
    Parcel.objects.bulk_create(
        (
            Parcel(
                carrier=carriers[i % len(carriers)],
                tracking_number=f"BULK{batch:02d}-{i:08d}",
                recipient=people[i % len(people)],
                size="S",
                cabinet=cabinets[i % len(cabinets)],
                status=ParcelStatus.ANNOUNCED if i % 2 else ParcelStatus.CANCELLED,
            )
            for i in range(n)
        ),
        batch_size=5000,
    )
    Parcel.objects.filter(tracking_number__startswith="BULK").update(created_at=now)
