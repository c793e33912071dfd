from __future__ import annotations

from django.apps import AppConfig


class CourierConfig(AppConfig):
    name = "courier"
    verbose_name = "Carriers and parcels"
