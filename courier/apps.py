from __future__ import annotations

from django.apps import AppConfig


class CourierConfig(AppConfig):
    name = "courier"
    verbose_name = "Carriers and parcels"

    def ready(self) -> None:
        from cabinets.reports import report_handler_register
        from courier import schema  # noqa: F401  (OpenAPI extension)
        from courier.cabinet_reports import ParcelFlows

        # The parcel flows act on what cabinets report (cabinets.reports).
        report_handler_register(ParcelFlows())
