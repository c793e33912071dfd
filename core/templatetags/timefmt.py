"""`{{ value|admin_time }}` and `{% time_zone_label %}`: core.timefmt in templates."""

from __future__ import annotations

from datetime import datetime

from django import template

from core import timefmt

register = template.Library()


@register.filter
def admin_time(value: datetime | None) -> str:
    return timefmt.admin_time(value)


@register.simple_tag
def time_zone_label() -> str:
    return timefmt.time_zone_label()
