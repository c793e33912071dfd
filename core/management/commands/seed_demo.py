from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from core.demo import demo_seed


class Command(BaseCommand):
    help = "Create demo carriers, cabinets, people and parcels. Safe to run again."

    def handle(self, *args: Any, **options: Any) -> None:
        result = demo_seed()
        created = ", ".join(f"{n} {k}" for k, n in sorted(result.created.items())) or "nothing"
        self.stdout.write(f"Demo data ready (created: {created}).")
        for tracking, code in result.pickup_codes.items():
            self.stdout.write(f"  parcel {tracking}: pickup code {code}")
        self.stdout.write(
            f"  courier at the cabinet screen: badge {result.courier_badge},"
            f" PIN {result.courier_pin}"
        )
        self.stdout.write(f"  carrier API key (Demo Express): {result.carrier_api_key}")
        self.stdout.write(
            self.style.SUCCESS(f"Staff login: {result.admin_username} / {result.admin_password}")
        )
