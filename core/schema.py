"""What the OpenAPI schema says about every operation, beyond each view's own success answer:
the errors any API call may get (all in the one error shape) and which group it belongs to."""

from __future__ import annotations

from typing import Any

ERROR_COMPONENT = "ApiError"

# Answers every operation can give, whatever its view documents. 404 covers path
# parameters naming something that is not there (or belongs to another carrier).
_ALWAYS = {
    "400": "Invalid input or query parameters; `details` says which.",
    "401": "Missing or invalid credentials.",
    "403": "Authenticated, but not allowed.",
    "404": "Not found (or not yours).",
    "405": "Method not allowed.",
    "406": "The Accept header names no JSON type.",
    "429": "Too many requests.",
}
_WITH_BODY = {
    "409": "The current state does not allow this.",
    "413": "The request body is too large.",
    "415": "The body's media type is not accepted.",
}

# Path prefix -> tag: carriers and recipients are separate audiences.
TAGS = {
    "/api/v1/carrier/": "carrier",
    "/api/v1/identity/": "recipient",
}
TAG_DESCRIPTIONS = {
    "carrier": "For carriers: announce and follow parcels (`Authorization: Api-Key ...`).",
    "recipient": "For recipients: phone login, biometric consent, face enrollment, real ID.",
}


def _request_rules(component: dict[str, Any]) -> None:
    """What DRF refuses in a request body that drf-spectacular does not say: a required
    string (trimmed, not blank) must hold a non-space character, and an upload must not be
    empty."""
    for prop in component.get("properties", {}).values():
        if prop.get("type") != "string":
            continue
        if prop.get("format") == "binary":
            prop.setdefault("minLength", 1)
        elif prop.get("minLength") == 1 and "pattern" not in prop and "enum" not in prop:
            prop["pattern"] = r"\S"


def errors_and_tags_hook(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular post-processing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name, component in schemas.items():
        if name.endswith("Request"):  # request bodies (COMPONENT_SPLIT_REQUEST)
            _request_rules(component)
    schemas.setdefault(
        ERROR_COMPONENT,
        {
            "type": "object",
            "properties": {
                "error": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object", "additionalProperties": {}},
            },
            "required": ["error", "message", "details"],
        },
    )
    ref = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    for path, operations in result.get("paths", {}).items():
        tag = next((tag for prefix, tag in TAGS.items() if path.startswith(prefix)), None)
        for method, operation in operations.items():
            if tag is not None:
                operation["tags"] = [tag]
            errors = dict(_ALWAYS)
            if method in ("post", "put", "patch"):
                errors.update(_WITH_BODY)
            responses = operation.setdefault("responses", {})
            for status, description in errors.items():
                responses.setdefault(
                    status,
                    {"description": description, "content": {"application/json": {"schema": ref}}},
                )
    result["tags"] = [
        {"name": name, "description": text} for name, text in TAG_DESCRIPTIONS.items()
    ]
    return result
