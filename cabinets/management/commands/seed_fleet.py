"""`manage.py seed_fleet`: a synthetic fleet for benchmarks (10,000 cabinets, 200,000
compartments, 1,000,000 parcels by default). PostgreSQL loads it with COPY; other databases
with bulk inserts (for small seeds). Refuses to seed twice."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, models, transaction
from django.utils import timezone

from cabinets.management.commands.import_cabinets import progress_bar
from cabinets.models import (
    SIZE_SPECS,
    Cabinet,
    CabinetState,
    Compartment,
    CompartmentSize,
    ConnectionState,
    DoorState,
    ServiceState,
)
from courier.models import Carrier, Parcel, ParcelStatus
from identity.models import Identity

PREFIX = "SEED-"
REGIONS = [
    ("Shanghai", 31.23, 121.47),
    ("Zhejiang", 30.27, 120.15),
    ("Jiangsu", 32.06, 118.80),
    ("Guangdong", 23.13, 113.26),
    ("Beijing", 39.90, 116.40),
    ("Sichuan", 30.57, 104.07),
    ("Hubei", 30.59, 114.31),
    ("Shandong", 36.67, 117.00),
    ("Fujian", 26.07, 119.30),
    ("Henan", 34.75, 113.62),
]
BATCH = 20_000


def _column_values(model: type[models.Model], row: dict[str, Any]) -> list[Any]:
    values = []
    for f in _fields(model):
        if f.attname in row:
            value = row[f.attname]
        elif getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            value = timezone.now()
        else:
            value = f.get_default()
        values.append(f.get_db_prep_save(value, connection))
    return values


def _fields(model: type[models.Model]) -> list[Any]:
    # Every concrete column but the primary key; columns the seed does not set (including
    # ones added later) get the field's default, so the seed survives model changes.
    return [f for f in model._meta.concrete_fields if not f.primary_key]


def load(
    model: type[models.Model],
    rows: Iterable[dict[str, Any]],
    *,
    total: int,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    done = 0
    if connection.vendor == "postgresql":
        columns = ", ".join(connection.ops.quote_name(f.column) for f in _fields(model))
        sql = f"COPY {connection.ops.quote_name(model._meta.db_table)} ({columns}) FROM STDIN"
        with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(_column_values(model, row))
                done += 1
                if progress and done % BATCH == 0:
                    progress(done, total)
    else:
        batch: list[models.Model] = []
        for row in rows:
            batch.append(model(**row))
            if len(batch) == BATCH:
                model.objects.bulk_create(batch)  # type: ignore[attr-defined]
                done += len(batch)
                batch = []
                if progress:
                    progress(done, total)
        model.objects.bulk_create(batch)  # type: ignore[attr-defined]
        done += len(batch)
    if progress:
        progress(done, total)


class Command(BaseCommand):
    help = "Seed a synthetic fleet for benchmarks (refuses when a seed is already there)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--cabinets", type=int, default=10_000)
        parser.add_argument("--compartments-per-cabinet", type=int, default=20)
        parser.add_argument("--parcels", type=int, default=1_000_000)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--quiet", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if Cabinet.objects.filter(serial__startswith=PREFIX).exists():
            raise CommandError(
                "This database is already seeded (cabinets SEED-…); not seeding twice."
            )
        n_cab, per, n_parcels = (
            options["cabinets"],
            options["compartments_per_cabinet"],
            options["parcels"],
        )
        if n_cab < 1 or per < 1 or per > 99 or n_parcels < 0:
            raise CommandError("Need at least one cabinet and 1-99 compartments per cabinet.")
        rng = random.Random(options["seed"])
        bar = None if options["quiet"] else progress_bar(sys.stderr)
        started = time.monotonic()
        now = timezone.now()

        def say(text: str) -> None:
            if not options["quiet"]:
                self.stderr.write(text)

        with transaction.atomic():
            carriers = [
                Carrier.objects.get_or_create(
                    code=f"seed-carrier-{i}", defaults={"name": f"Seed Carrier {i}"}
                )[0]
                for i in range(5)
            ]
            say(f"cabinets: {n_cab}")
            load(Cabinet, self._cabinets(n_cab, rng, now), total=n_cab, progress=bar)
            cabinet_ids = list(
                Cabinet.objects.filter(serial__startswith=PREFIX)
                .order_by("serial")
                .values_list("pk", flat=True)
            )
            # The first compartment of a share of cabinets holds a ready parcel.
            n_ready = min(n_parcels // 20, len(cabinet_ids) * per // 3)
            say(f"compartments: {n_cab * per}")
            load(
                Compartment,
                self._compartments(cabinet_ids, per, n_ready, rng, now),
                total=n_cab * per,
                progress=bar,
            )
            n_people = max(1, n_parcels // 10)
            say(f"people: {n_people}")
            load(
                Identity,
                (
                    {"phone": f"+8619{i:09d}", "name": f"Seed Person {i}", "created_at": now}
                    for i in range(n_people)
                ),
                total=n_people,
                progress=bar,
            )
            first_person = (
                Identity.objects.filter(phone__startswith="+8619")
                .order_by("pk")
                .values_list("pk", flat=True)
                .first()
            )
            # The first two compartments of each cabinet take its ready parcels (occupancy is
            # the parcel's fact: these compartments are occupied once the parcels exist).
            occupied = list(
                Compartment.objects.filter(cabinet_id__in=cabinet_ids, label__in=("A01", "A02"))
                .order_by("pk")
                .values_list("pk", "cabinet_id")[:n_ready]
            )
            say(f"parcels: {n_parcels}")
            load(
                Parcel,
                self._parcels(
                    n_parcels,
                    carriers,
                    cabinet_ids,
                    occupied,
                    first_person or 0,
                    n_people,
                    rng,
                    now,
                ),
                total=n_parcels,
                progress=bar,
            )
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                # VACUUM too (outside the load's transaction): the visibility map lets counts
                # and per-day series be index-only scans, as they are once autovacuum has
                # passed over a live table; measuring right after a bulk load would not be.
                # Called inside a transaction (a test), VACUUM is not allowed: ANALYZE only.
                verb = "ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)"
                for model in (Cabinet, Compartment, Identity, Parcel):
                    table = connection.ops.quote_name(model._meta.db_table)
                    cursor.execute(f"{verb} {table}")
        say(f"seeded in {time.monotonic() - started:.0f} s")

    def _cabinets(self, n: int, rng: random.Random, now: Any) -> Iterator[dict[str, Any]]:
        for i in range(n):
            region, lat, lng = REGIONS[i % len(REGIONS)]
            roll = rng.random()
            state = CabinetState.MAINTENANCE if roll < 0.02 else CabinetState.ACTIVE
            connection_state = ConnectionState.OFFLINE if roll < 0.05 else ConnectionState.ONLINE
            yield {
                "serial": f"{PREFIX}{i:06d}",
                "name": f"{region} cabinet {i}",
                "address": f"{i} Seed Road",
                "city": region,
                "region": region,
                "latitude": Decimal(f"{lat + rng.uniform(-0.6, 0.6):.6f}"),
                "longitude": Decimal(f"{lng + rng.uniform(-0.6, 0.6):.6f}"),
                "time_zone": "Asia/Shanghai",
                "hardware_model": rng.choice(["CB-12", "CB-24", "CB-36"]),
                "firmware_version": rng.choice(["1.0.0", "1.1.0", "1.2.0"]),
                "config_version": "1",
                "state": state,
                "connection_state": connection_state,
                "last_seen_at": now - timedelta(seconds=rng.randint(0, 7200)),
                "telemetry": {"temperature_c": 21, "power": "mains"},
                "telemetry_at": now,
                "created_at": now,
                "updated_at": now,
            }

    def _compartments(
        self, cabinet_ids: list[int], per: int, n_ready: int, rng: random.Random, now: Any
    ) -> Iterator[dict[str, Any]]:
        sizes = [CompartmentSize.S] * (per // 2) + [CompartmentSize.M] * (per // 3)
        sizes += [CompartmentSize.L] * (per - len(sizes))
        letters = {CompartmentSize.S: "A", CompartmentSize.M: "B", CompartmentSize.L: "C"}
        ready_left = n_ready
        for cabinet_id in cabinet_ids:
            counters = {size: 0 for size in letters}
            for j, size in enumerate(sizes):
                counters[size] += 1
                spec = SIZE_SPECS[size]
                state = ServiceState.IN_SERVICE
                if j < 2 and ready_left > 0:
                    ready_left -= 1
                elif rng.random() < 0.003:
                    state = ServiceState.OUT_OF_SERVICE
                yield {
                    "cabinet_id": cabinet_id,
                    "label": f"{letters[size]}{counters[size]:02d}",
                    "size": size,
                    "width_mm": spec.width_mm,
                    "height_mm": spec.height_mm,
                    "depth_mm": spec.depth_mm,
                    "max_weight_g": spec.max_weight_g,
                    "service_state": state,
                    "door_state": DoorState.CLOSED,
                    "service_changed_at": now,
                    "failed_open_count": 0,
                }

    def _parcels(
        self,
        n: int,
        carriers: list[Carrier],
        cabinet_ids: list[int],
        occupied: list[tuple[int, int]],
        first_person: int,
        n_people: int,
        rng: random.Random,
        now: Any,
    ) -> Iterator[dict[str, Any]]:
        for i in range(n):
            created = now - timedelta(seconds=rng.randint(0, 60 * 86_400))
            row: dict[str, Any] = {
                "carrier_id": carriers[i % len(carriers)].pk,
                "tracking_number": f"SEED{i:010d}",
                "recipient_id": first_person + rng.randrange(n_people),
                "size": rng.choice(["S", "S", "M", "L"]),
                "cabinet_id": cabinet_ids[i % len(cabinet_ids)],
                "created_at": created,
                "updated_at": created,
                "pickup_code_hash": "",
            }
            if i < len(occupied):
                compartment_id, cabinet_id = occupied[i]
                deposited = now - timedelta(hours=rng.randint(1, 70))
                row.update(
                    status=ParcelStatus.READY,
                    cabinet_id=cabinet_id,
                    compartment_id=compartment_id,
                    deposited_at=deposited,
                    pickup_deadline=deposited + timedelta(days=3),
                    created_at=deposited - timedelta(hours=2),
                )
            else:
                roll = rng.random()
                if roll < 0.85:
                    row.update(
                        status=ParcelStatus.PICKED_UP,
                        deposited_at=created + timedelta(hours=3),
                        pickup_deadline=created + timedelta(days=3, hours=3),
                        picked_up_at=min(now, created + timedelta(hours=rng.randint(4, 70))),
                    )
                elif roll < 0.95:
                    row.update(status=ParcelStatus.CANCELLED)
                else:
                    row.update(status=ParcelStatus.ANNOUNCED)
            yield row
