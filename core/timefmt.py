"""One time-zone policy for what operators read: every time in the operator's TIME_ZONE
(Asia/Shanghai by default), in the one DATETIME_FORMAT of config/formats/ with its offset,
e.g. "2026-12-02 21:38:20 +0800"; column headers say the zone, e.g. "issued (UTC+08:00)".
Django's own rendering of datetime fields uses the same format; this module is for the
places that build text themselves (command log, audit tables).

Admin code calls `admin_time`, `time_column` and `with_zone`; templates use the `admin_time`
filter (`{% load timefmt %}`)."""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.utils import formats, timezone
from django.utils.functional import lazy

EMPTY = "—"


def _zone() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def _offset(delta: timedelta | None) -> str:
    minutes = int((delta or timedelta()).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def admin_time(value: datetime | None) -> str:
    """`value` in the operator's zone, in the one format, with its offset."""
    if value is None:
        return EMPTY
    return formats.date_format(timezone.localtime(value, _zone()), "DATETIME_FORMAT")


def time_zone_label(at: datetime | None = None) -> str:
    """ "UTC+08:00": the operator's zone as column headers name it."""
    return "UTC" + _offset(timezone.localtime(at or timezone.now(), _zone()).utcoffset())


def _with_zone(label: str) -> str:
    return f"{label} ({time_zone_label()})"


with_zone: Callable[[Any], str] = lazy(_with_zone, str)


def time_column(field: str, label: Any) -> Callable[[Any, Any], str]:
    """A list_display / readonly_fields entry showing `field` by the policy, sortable by it:
    `issued_shown = time_column("issued_at", _("issued"))` in a ModelAdmin."""

    @admin.display(description=with_zone(label), ordering=field)
    def show(model_admin: Any, obj: Any) -> str:
        return admin_time(getattr(obj, field))

    return show
