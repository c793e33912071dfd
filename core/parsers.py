"""The API's JSON parser: bounded in size and nesting before `json.loads` sees the body."""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from django.utils.translation import gettext, gettext_lazy
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser

from cabinet_agent.protocol import MAX_NESTING_DEPTH, nests_deeper_than


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = gettext_lazy("The request body is too large.")
    default_code = "request_too_large"


class BoundedJSONParser(JSONParser):
    """`json.loads` recurses: a 1,000-deep body would raise RecursionError (a 500), so the
    nesting is counted first, with the same bound and code as the cabinet link's frames. DRF
    reads the body from the stream, past Django's DATA_UPLOAD_MAX_MEMORY_SIZE check, so the
    size is bounded here too."""

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if limit is not None else stream.read()
        if limit is not None and len(raw) > limit:
            raise RequestTooLarge(
                gettext("The request body exceeds %(limit)d bytes.") % {"limit": limit}
            )
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.decode(raw, encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(gettext("The request body is not valid text.")) from exc
        if nests_deeper_than(text):
            raise ParseError(
                gettext("JSON nests deeper than %(depth)d levels.") % {"depth": MAX_NESTING_DEPTH}
            )
        try:
            return json.loads(text, parse_constant=_refuse_constant)
        except ValueError as exc:
            raise ParseError(gettext("JSON parse error - %(error)s") % {"error": exc}) from exc


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259); Python accepts them by default.
    raise ValueError(f"{name} is not valid JSON")
