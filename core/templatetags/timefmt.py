"""`{{ value|admin_time }}`, `{% time_zone_label %}`, `{% time_zone_name %}`: core.timefmt in
templates."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.conf import settings

from core import timefmt

register = template.Library()


@register.filter
def admin_time(value: datetime | None) -> str:
    return timefmt.admin_time(value)


@register.simple_tag
def time_zone_label() -> str:
    return timefmt.time_zone_label()


@register.simple_tag
def time_zone_name() -> str:
    return str(settings.TIME_ZONE)
