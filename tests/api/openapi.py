"""The project's OpenAPI schema for schemathesis, as /api/schema/ serves it, with every
request (the checks' own probes included) sent to the Django WSGI app."""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from django.core.handlers.wsgi import WSGIHandler


def served_schema() -> dict[str, Any]:
    """What /api/schema/ serves (the same generator and hooks), built at collection time:
    schemathesis' lazy fixture loader does not run under pytest 9."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    spec = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(spec))


schema = schemathesis.openapi.from_dict(served_schema())
schema.config.update(base_url="http://testserver")
schema.app = WSGIHandler()
