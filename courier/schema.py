"""OpenAPI description of the carrier API key (drf-spectacular extension)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class CarrierApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "courier.authentication.CarrierApiKeyAuthentication"
    name = "CarrierApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <prefix>.<secret>`, issued per carrier by platform staff.",
        }
