"""The schema states the form of every string the carrier and recipient APIs read, so that
a client (and schemathesis) never sends a string the schema allows and the API refuses."""

from __future__ import annotations

import re
from typing import Any

from cabinets.models import SERIAL_PATTERN
from courier.apis import TRACKING_NUMBER_PATTERN
from tests.api.openapi import served_schema


def _read_strings(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every string a request body or a query/path parameter holds, by where it is."""
    found = {}
    for name, component in schema["components"]["schemas"].items():
        if name.endswith("Request"):
            for prop, value in component.get("properties", {}).items():
                for option in value.get("oneOf", [value]):
                    found[f"{name}.{prop}"] = option
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                found[f"{method} {path} {parameter['name']}"] = parameter["schema"]
    return {where: value for where, value in found.items() if value.get("type") == "string"}


def test_every_string_the_api_reads_has_a_stated_form() -> None:
    strings = _read_strings(served_schema())
    assert "ParcelAnnounceInputRequest.cabinet" in strings
    for where, value in strings.items():
        stated = {"pattern", "enum", "format"} & set(value) or value.get("maxLength") == 0
        assert stated, f"{where}: any string ({value})"
        if "pattern" in value:
            assert not re.search(value["pattern"], "\x00"), f"{where} allows a NUL"


def test_serials_and_tracking_numbers_are_stated_as_the_api_checks_them() -> None:
    strings = _read_strings(served_schema())
    assert strings["ParcelAnnounceInputRequest.cabinet"]["pattern"] == SERIAL_PATTERN
    assert strings["ParcelAnnounceInputRequest.tracking_number"]["pattern"] == (
        TRACKING_NUMBER_PATTERN
    )
    detail = "get /api/v1/carrier/parcels/{tracking_number}/ tracking_number"
    assert strings[detail]["pattern"] == TRACKING_NUMBER_PATTERN
