"""Simulated fleets (`manage.py simulate_fleet`, the fleet benchmark): thousands of cabinets
provisioned in bulk with four compartments each."""

from __future__ import annotations

import random
from decimal import Decimal

from django.db import transaction

from cabinets.models import Cabinet, CabinetState, Compartment
from cabinets.services.credentials import IssuedCredential, cabinet_credentials_issue_bulk
from core.actors import Actor

SIMULATED_LAYOUT: tuple[tuple[str, str], ...] = (
    ("A01", "S"),
    ("A02", "S"),
    ("B01", "M"),
    ("C01", "L"),
)

# Simulated cabinets are placed around Shanghai (People's Square), within about 25 km, so the
# fleet map shows a city rather than one dot at 0,0. Seeded by serial: the same cabinet lands
# on the same spot on every run.
SIMULATED_CENTRE = (31.2304, 121.4737)
SIMULATED_RADIUS_DEG = 0.22


def simulated_location(serial: str) -> tuple[Decimal, Decimal]:
    rng = random.Random(f"simulated-cabinet:{serial}")
    lat, lng = SIMULATED_CENTRE
    return (
        Decimal(f"{lat + rng.uniform(-1, 1) * SIMULATED_RADIUS_DEG:.6f}"),
        Decimal(f"{lng + rng.uniform(-1, 1) * SIMULATED_RADIUS_DEG:.6f}"),
    )


def simulated_fleet_provision(
    *, prefix: str, count: int, create: bool, actor: Actor
) -> list[IssuedCredential]:
    """Credentials for the cabinets `<prefix>00001`..`<prefix>NNNNN` of a fleet simulation,
    created first (with four compartments each) when `create` is set. Issuing rotates: the
    previous credentials stop working and their sockets are closed. In bulk, for 10,000."""
    serials = [f"{prefix}{n:05d}" for n in range(1, count + 1)]
    with transaction.atomic():
        existing = set(Cabinet.objects.filter(serial__in=serials).values_list("serial", flat=True))
        if create:
            Cabinet.objects.bulk_create(
                [_simulated_cabinet(serial) for serial in serials if serial not in existing],
                batch_size=1000,
            )
        cabinets = list(Cabinet.objects.filter(serial__in=serials).order_by("serial"))
        if len(cabinets) < count:
            missing = count - len(cabinets)
            raise ValueError(f"{missing} of {count} cabinets {prefix}… do not exist (use --create)")
        ids = [cabinet.pk for cabinet in cabinets]
        have_compartments = set(
            Compartment.objects.filter(cabinet_id__in=ids).values_list("cabinet_id", flat=True)
        )
        compartments = []
        for cabinet in cabinets:
            if cabinet.pk in have_compartments:
                continue
            for label, size in SIMULATED_LAYOUT:
                compartment = Compartment(cabinet=cabinet, label=label, size=size)
                compartment.apply_size_spec()
                compartments.append(compartment)
        Compartment.objects.bulk_create(compartments, batch_size=1000)
        issued = cabinet_credentials_issue_bulk(cabinets=cabinets, actor=actor)
    return issued


def _simulated_cabinet(serial: str) -> Cabinet:
    latitude, longitude = simulated_location(serial)
    return Cabinet(
        serial=serial,
        name=f"Simulated {serial}",
        address="Fleet simulator",
        city="Shanghai",
        region="Simulation",
        latitude=latitude,
        longitude=longitude,
        hardware_model="SIM",
        state=CabinetState.ACTIVE,
    )
