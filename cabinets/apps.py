from __future__ import annotations

from django.apps import AppConfig


class CabinetsConfig(AppConfig):
    name = "cabinets"
    verbose_name = "Cabinets"
