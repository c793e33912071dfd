from __future__ import annotations

from django.apps import AppConfig


class CabinetsConfig(AppConfig):
    name = "cabinets"
    verbose_name = "Cabinets"

    def ready(self) -> None:
        # Registers the rollout tasks (Celery autodiscovery looks for `tasks` modules only).
        from cabinets import rollout_tasks  # noqa: F401
