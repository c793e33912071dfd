from __future__ import annotations

from django.apps import AppConfig


class CourierConfig(AppConfig):
    name = "courier"
    verbose_name = "Carriers and parcels"

    def ready(self) -> None:
        from courier import (  # noqa: F401  (signal receivers; OpenAPI extension)
            receivers,
            schema,
        )
