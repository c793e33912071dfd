from __future__ import annotations

from django.apps import AppConfig


class CabinetsConfig(AppConfig):
    name = "cabinets"
    verbose_name = "Cabinets"

    def ready(self) -> None:
        # Registers the rollout tasks: Celery's autodiscovery imports `cabinets.tasks` only.
        from cabinets.rollouts import tasks  # noqa: F401
