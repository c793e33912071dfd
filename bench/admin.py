"""Admin response times on a fleet of benchmark size, in PostgreSQL.

Creates (once) the database `cabinets_bench`, migrates it, seeds it with
`seed_fleet` (10,000 cabinets, 200,000 compartments, 1,000,000 parcels by default), then
requests each admin page REPEAT times through the test client and prints the median time and
the query count as a Markdown table. Bounded: a fixed number of requests, and an alarm stops
the whole run after BENCH_ADMIN_MAX_S seconds.

    .venv/bin/python bench/admin.py [--cabinets N --compartments-per-cabinet M --parcels P]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cabinets_bench")
os.environ["DATABASE_URL"] = BENCH_DB
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
REPEAT = int(os.environ.get("BENCH_ADMIN_REPEAT", "7"))
MAX_S = int(os.environ.get("BENCH_ADMIN_MAX_S", "1800"))


def ensure_database() -> None:
    import psycopg

    base, name = BENCH_DB.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def machine() -> str:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
    mem = (
        subprocess.run(["free", "-g"], capture_output=True, text=True)
        .stdout.split("\n")[1]
        .split()[1]
    )
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {mem} GB RAM, Python {platform.python_version()}, "
        f"PostgreSQL {pg}, Django settings {os.environ['DJANGO_SETTINGS_MODULE']}"
    )


def bench_rollout() -> Any:
    """A firmware rollout over the whole fleet, planned and with its first wave sent (as the
    worker leaves it after Start), created once."""
    from cabinets.models import Rollout
    from cabinets.rollouts.driver import rollout_advance
    from cabinets.rollouts.services import rollout_create, rollout_start
    from core.actors import Actor

    existing = Rollout.objects.filter(name="bench rollout").first()
    if existing is not None:
        return existing
    actor = Actor.system("bench")
    rollout = rollout_create(
        name="bench rollout", kind="firmware", version="9.9.9", wave_plan="5,1%,10%,100%",
        actor=actor,
    )  # fmt: skip
    rollout_start(rollout_id=rollout.pk, actor=actor)
    rollout_advance(rollout_id=rollout.pk)
    return rollout


def city_bbox(cabinet: Any) -> str:
    lat, lng = float(cabinet.latitude), float(cabinet.longitude)
    return f"{lat - 0.15:.5f},{lng - 0.2:.5f},{lat + 0.15:.5f},{lng + 0.2:.5f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cabinets", type=int, default=10_000)
    parser.add_argument("--compartments-per-cabinet", type=int, default=20)
    parser.add_argument("--parcels", type=int, default=1_000_000)
    args = parser.parse_args()
    signal.alarm(MAX_S)  # never runs away

    ensure_database()
    import django

    django.setup()
    from django.contrib.auth.models import Permission, User
    from django.core.management import call_command
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from cabinets.models import Cabinet
    from courier.models import Carrier, CarrierStaff, Parcel

    call_command("migrate", verbosity=0)
    if not Cabinet.objects.filter(serial__startswith="SEED-").exists():
        started = time.monotonic()
        call_command(
            "seed_fleet",
            cabinets=args.cabinets,
            compartments_per_cabinet=args.compartments_per_cabinet,
            parcels=args.parcels,
        )
        print(f"seeded in {time.monotonic() - started:.0f} s", file=sys.stderr)
    admin, _ = User.objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    carrier = Carrier.objects.order_by("pk").first()
    staff_user, _ = User.objects.get_or_create(
        username="bench-carrier", defaults={"is_staff": True}
    )
    CarrierStaff.objects.get_or_create(user=staff_user, defaults={"carrier": carrier})
    staff_user.user_permissions.add(*Permission.objects.filter(codename="view_parcel"))

    cabinet = Cabinet.objects.filter(serial__startswith="SEED-").order_by("serial").first()
    assert cabinet is not None
    rollout = bench_rollout()
    pages = [
        ("cabinet changelist", admin, reverse("admin:cabinets_cabinet_changelist")),
        (
            "cabinet changelist, filtered (region + online)",
            admin,
            reverse("admin:cabinets_cabinet_changelist")
            + "?region=Zhejiang&connection_state=online",
        ),
        (
            "cabinet changelist, search by serial",
            admin,
            reverse("admin:cabinets_cabinet_changelist") + f"?q={cabinet.serial}",
        ),
        (
            "cabinet change page (20 compartments)",
            admin,
            reverse("admin:cabinets_cabinet_change", args=[cabinet.pk]),
        ),
        ("compartment changelist", admin, reverse("admin:cabinets_compartment_changelist")),
        ("parcel changelist (platform staff)", admin, reverse("admin:courier_parcel_changelist")),
        (
            "parcel changelist, status=ready",
            admin,
            reverse("admin:courier_parcel_changelist") + "?status__exact=ready",
        ),
        (
            "parcel changelist (carrier staff)",
            staff_user,
            reverse("admin:courier_parcel_changelist"),
        ),
        ("fleet dashboard", admin, reverse("admin:cabinets_fleet_dashboard")),
        (
            "dashboard map data (whole fleet at zoom 4: clustered)",
            admin,
            reverse("admin:cabinets_fleet_map"),
        ),
        ("rollout changelist", admin, reverse("admin:cabinets_rollout_changelist")),
        (
            "door grid JSON (20 compartments, polled every 3 s)",
            admin,
            reverse("admin:cabinets_cabinet_doors", args=[cabinet.pk]),
        ),
        (
            f"rollout page ({rollout.targets.count():,} targets, live)",
            admin,
            reverse("admin:cabinets_rollout_change", args=[rollout.pk]),
        ),
        (
            "rollout progress JSON (polled every 3 s)",
            admin,
            reverse("admin:cabinets_rollout_progress", args=[rollout.pk]),
        ),
        (
            "dashboard map, zoom 11 over one city",
            admin,
            reverse("admin:cabinets_fleet_map") + f"?zoom=11&bbox={city_bbox(cabinet)}",
        ),
    ]
    print(f"Machine: {machine()}\n")
    print(
        f"Data: {Cabinet.objects.count():,} cabinets, "
        f"{Cabinet.compartments.rel.related_model.objects.count():,} compartments, "  # type: ignore[attr-defined]
        f"{Parcel.objects.count():,} parcels. Median of {REPEAT} requests after one warm-up.\n"
    )
    print("| page | median ms | min ms | max ms | queries | bytes |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, user, url in pages:
        client = Client()
        client.force_login(user)
        response = client.get(url)
        assert response.status_code == 200, (label, response.status_code)
        timings = []
        for _ in range(REPEAT):
            reset_queries()
            with CaptureQueriesContext(connection) as ctx:
                started = time.perf_counter()
                response = client.get(url)
                timings.append((time.perf_counter() - started) * 1000)
        print(
            f"| {label} | {statistics.median(timings):.0f} | {min(timings):.0f} | "
            f"{max(timings):.0f} | {len(ctx.captured_queries)} | {len(response.content):,} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
