"""The API's one pagination: limit/offset with a ceiling, and a 400 for values out of range."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

MAX_LIMIT = 500
# Far beyond any carrier's parcels, far below a 64-bit column: a larger offset would
# overflow the database's integer (SQLite raises OverflowError) instead of returning nothing.
MAX_OFFSET = 10_000_000


def _bounded_int(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # `?limit=` (empty) is no integer: refused, as the changes feed refuses it.
    refusal = gettext("Must be an integer from %(low)d to %(high)d.") % {"low": low, "high": high}
    if not raw.isascii() or not raw.isdigit() or len(raw) > len(str(high)) or int(raw) < low:
        raise ValidationError({name: [refusal]})
    value = int(raw)
    if value > high:
        raise ValidationError({name: [refusal]})
    return value


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    max_limit = MAX_LIMIT

    def get_limit(self, request: Request) -> int:
        default = min(self.default_limit or MAX_LIMIT, MAX_LIMIT)
        return _bounded_int(request, self.limit_query_param, default=default, low=1, high=MAX_LIMIT)

    def get_offset(self, request: Request) -> int:
        return _bounded_int(request, self.offset_query_param, default=0, low=0, high=MAX_OFFSET)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        limit, offset = super().get_schema_operation_parameters(view)
        limit["schema"].update({"minimum": 1, "maximum": MAX_LIMIT})
        offset["schema"].update({"minimum": 0, "maximum": MAX_OFFSET})
        return [limit, offset]


def paginated(item: type[serializers.Serializer], name: str) -> serializers.Serializer:
    """The schema of one page: `{count, next, previous, results}`."""
    return inline_serializer(
        name,
        {
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item(many=True),
        },
    )


def paginated_parameters() -> list[OpenApiParameter]:
    return [
        OpenApiParameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            description=f"Results per page, 1 to {MAX_LIMIT}.",
        ),
        OpenApiParameter(
            "offset",
            {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
            description=f"Index of the first result, 0 to {MAX_OFFSET}.",
        ),
    ]
