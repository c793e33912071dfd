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


# DRF's CharField refuses a NUL character (PostgreSQL cannot store one) and trims spaces
# before it checks for blanks; a string without its own pattern gets one that says so.
_NO_NUL = r"^[^\x00]*$"
_NOT_BLANK = r"^[^\x00]*[^\x00\s][^\x00]*$"


def _string_rules(schema: dict[str, Any]) -> None:
    if schema.get("type") != "string" or "enum" in schema or "pattern" in schema:
        return
    if schema.get("format") == "binary":
        schema.setdefault("minLength", 1)  # an upload must not be empty
    elif "format" not in schema:
        schema["pattern"] = _NOT_BLANK if schema.get("minLength", 0) >= 1 else _NO_NUL


def _request_rules(component: dict[str, Any]) -> None:
    """What DRF refuses in a request body that drf-spectacular does not say."""
    for prop in component.get("properties", {}).values():
        _string_rules(prop)


def _parameter_rules(operation: dict[str, Any]) -> None:
    """The same for query and path parameters: the API reads them through serializers."""
    for parameter in operation.get("parameters", []):
        _string_rules(parameter.get("schema", {}))


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
            _parameter_rules(operation)
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
